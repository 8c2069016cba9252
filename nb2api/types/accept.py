"""The ``Accept`` header (RFC 9110, section 12.5.1): its media ranges and the q-value each gives
a media type. Display results and tables both choose their representation with it."""

from __future__ import annotations


def accepted(header: str | None) -> list[tuple[str, float]]:
    """The media ranges of an ``Accept`` header, lower-cased, with their q-values, in the order
    written."""
    ranges = []
    for part in (header or "").split(","):
        kind, *params = part.split(";")
        kind = kind.strip().lower()
        if not kind:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0  # a q-value that is no number accepts nothing
        ranges.append((kind, q))
    return ranges


def quality(media_type: str, ranges: list[tuple[str, float]]) -> tuple[float, int, int]:
    """How much ``ranges`` want ``media_type`` (lower-case): the q-value of the most specific
    range that matches it (``type/sub`` over ``type/*`` over ``*/*``; 0 when none does), then
    that specificity, then how early the client wrote that range."""
    main = media_type.split("/")[0]
    best = (0.0, -1, 0)
    for position, (kind, q) in enumerate(ranges):
        rank = 2 if kind == media_type else 1 if kind == f"{main}/*" else 0 if kind == "*/*" else -1
        if rank > best[1]:
            best = (q, rank, -position)
    return best
