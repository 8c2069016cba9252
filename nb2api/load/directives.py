"""Every ``#|`` directive, parsed in one place.

A directive is a comment line ``#| key`` or ``#| key: value``, as Quarto and nbdev write them
(also ``# | key``, as black reformats it, and ``#|key``). Keys and tags are case-insensitive.
Marks (``#| setup``, ``#| api``) say which cells belong to the service; function options
(``#| route:``, ``#| timeout:``, ...) apply to the function defined next below them, or, written
in the cell's header, to every function of the cell.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

CellKind = Literal["setup", "api"]
MARKS: tuple[CellKind, ...] = ("setup", "api")
EXAMPLE = "example"  # a cell of calls that document the API; never run at serve time
# `#| example: false` (a value) on a function; `#| example` alone marks an example cell.
FUNCTION_OPTIONS = (
    "route", "timeout", "max-concurrency", "executor", "batch", "job", "mcp", EXAMPLE,
)
NOTEBOOK_OPTIONS = ("max-workers",)  # on any line of a marked cell: the whole notebook's
KNOWN_KEYS = (*MARKS, *FUNCTION_OPTIONS, *NOTEBOOK_OPTIONS)

# `#| key` or `#| key: value`, as in Quarto and nbdev; `# | key` is how black rewrites it.
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*([A-Za-z][\w-]*)\s*(?::\s*(.*?))?\s*$")
_ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE)\s+(/\S*)$", re.IGNORECASE)
BATCH_DEFAULTS = {"max_size": 64, "max_wait_ms": 5.0}  # what a bare '#| batch' means
_JOB = re.compile(r"^(?:retries\s*=\s*(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Directive:
    """One ``#| key: value`` line; ``line`` is 1-based within the cell."""

    key: str
    value: str
    line: int
    in_header: bool  # among the cell's leading comment lines, before any code


class DirectiveProblem(ValueError):
    """A directive that cannot apply; ``line`` is the directive's line within its cell."""

    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def is_directive(line: str) -> bool:
    return _DIRECTIVE.match(line) is not None


def parse_directives(source: str) -> tuple[Directive, ...]:
    directives = []
    in_header = True
    seen_code = False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        match = _DIRECTIVE.match(line)
        if match:
            key = match.group(1).lower()
            directives.append(Directive(key, (match.group(2) or "").strip(), number, in_header))
        elif stripped.startswith("%%") and not seen_code:
            seen_code = True  # a leading cell magic (%%time) comes before the cell's header
        elif stripped and not stripped.startswith("#"):
            in_header = False
            seen_code = True
    return tuple(directives)


def cell_kind(tags: Sequence[str], directives: Sequence[Directive]) -> CellKind | None:
    """``api`` or ``setup`` (by tag or header directive), or None for an unmarked cell."""
    marks = {t.lower() for t in tags if t.lower() in MARKS}
    marks |= {d.key for d in directives if d.in_header and d.key in MARKS and not d.value}
    if "api" in marks:
        return "api"
    if "setup" in marks:
        return "setup"
    return None


def is_example_cell(tags: Sequence[str], directives: Sequence[Directive]) -> bool:
    """A cell marked ``example`` by tag or header directive."""
    return any(t.lower() == EXAMPLE for t in tags) or any(
        d.in_header and d.key == EXAMPLE and not d.value for d in directives
    )


def directive_warnings(directives: Sequence[Directive]) -> list[tuple[int, str]]:
    """``(line, message)`` for a mark below the cell's first code line, which marks nothing, and
    for a key that is a typo of a known one (``#| apii``). Other keys belong to other tools
    (Quarto's ``#| echo``, nbdev's ``#| export``) and are left alone."""
    found = []
    for d in directives:
        if (d.key in MARKS or d.key == EXAMPLE) and not d.value and not d.in_header:
            found.append((d.line, f"'#| {d.key}' comes after code, so it does not mark the cell; "
                                  "move it to the cell's first lines"))
        elif d.key not in KNOWN_KEYS:
            close = difflib.get_close_matches(d.key, KNOWN_KEYS, n=1, cutoff=0.75)
            if close:
                found.append((d.line, f"unknown directive '#| {d.key}'; did you mean "
                                      f"'#| {close[0]}'?"))
    return found


def check_directives(directives: Sequence[Directive]) -> None:
    """Refuse a directive whose value cannot be understood; raises :class:`DirectiveProblem`."""
    for d in directives:
        if d.key == "route" and not _ROUTE.match(d.value):
            raise DirectiveProblem(
                f"'#| route: {d.value}' is not 'METHOD /path' "
                "(for example '#| route: GET /species/{name}')",
                d.line,
            )
        if d.key == EXAMPLE and d.value and d.value.lower() not in ("true", "false"):
            raise DirectiveProblem(
                f"'#| example: {d.value}' must be 'false' (never call the function at load) "
                "or 'true'",
                d.line,
            )
        if d.key == "batch":
            try:
                parse_batch(d.value)
            except ValueError as exc:
                raise DirectiveProblem(f"'#| batch: {d.value}' {exc}", d.line) from None
        if d.key == "job" and not _JOB.match(d.value):
            raise DirectiveProblem(
                f"'#| job: {d.value}' is not '#| job' or '#| job: retries=N' "
                "(for example '#| job: retries=2')",
                d.line,
            )
        if d.key == "max-workers" and not (d.value.isdigit() and int(d.value) >= 1):
            raise DirectiveProblem(
                f"'#| max-workers: {d.value}' is not a whole number of at least 1 "
                "(for example '#| max-workers: 4')",
                d.line,
            )
        if d.key == "mcp" and d.value.lower() not in _FLAGS:
            raise DirectiveProblem(
                f"'#| mcp: {d.value}' is not 'true' or 'false' ('#| mcp: false' keeps the "
                "function out of the MCP tools)",
                d.line,
            )


def parse_batch(value: str) -> tuple[int, float]:
    """``'max_size=64, max_wait_ms=5'`` -> ``(64, 5.0)``; a key left out keeps its default
    (:data:`BATCH_DEFAULTS`). Raises ValueError saying what is wrong."""
    settings = dict(BATCH_DEFAULTS)
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        key, equals, text = (s.strip() for s in part.partition("="))
        key = key.lower().replace("-", "_")
        if not equals or key not in settings:
            raise ValueError(f"has '{part}'; write 'max_size=N, max_wait_ms=M' "
                             "(for example '#| batch: max_size=64, max_wait_ms=5')")
        try:
            number = float(text) if key == "max_wait_ms" else int(text)
        except ValueError:
            number = -1
        if key == "max_size" and not number >= 1:
            raise ValueError(f"has max_size={text}, which must be a whole number >= 1")
        if key == "max_wait_ms" and not 0 <= number <= 60_000:
            raise ValueError(f"has max_wait_ms={text}, which must be milliseconds from 0 to "
                             "60000")
        settings[key] = number
    return int(settings["max_size"]), float(settings["max_wait_ms"])


def notebook_options(cells: Sequence[Sequence[Directive]]) -> dict[str, tuple[str, int, int]]:
    """The notebook-level options of the marked cells' directives (``cells``, in notebook
    order): key -> ``(value, cell position in cells, line)``. Raises :class:`DirectiveProblem`
    (with the cell's position in ``.cell``) for a key given twice with different values."""
    found: dict[str, tuple[str, int, int]] = {}
    for position, directives in enumerate(cells):
        for d in directives:
            if d.key not in NOTEBOOK_OPTIONS:
                continue
            earlier = found.get(d.key)
            if earlier is not None and earlier[0] != d.value:
                problem = DirectiveProblem(
                    f"'#| {d.key}: {d.value}' contradicts '#| {d.key}: {earlier[0]}' given "
                    "earlier; a notebook has one", d.line)
                problem.cell = position  # type: ignore[attr-defined]
                raise problem
            found.setdefault(d.key, (d.value, position, d.line))
    return found


def parse_job(value: str) -> int:
    """``'#| job'`` -> 0 retries, ``'#| job: retries=2'`` -> 2."""
    match = _JOB.match(value.strip())
    if not match:
        raise ValueError(value)
    return int(match.group(1) or 0)


_FLAGS = {"true": True, "false": False}


def option_flag(value: str | None, default: bool = True) -> bool:
    """A yes/no function option (``#| mcp: false``) as a bool; ``default`` when it is absent."""
    return default if value is None else _FLAGS[value.strip().lower()]


def parse_route(value: str) -> tuple[str, str]:
    """``'GET /species/{name}'`` -> ``('GET', '/species/{name}')``."""
    match = _ROUTE.match(value.strip())
    if not match:
        raise ValueError(value)
    return match.group(1).upper(), match.group(2)


def function_options(
    directives: Sequence[Directive], defs: Sequence[tuple[int, str]]
) -> dict[str, dict[str, str]]:
    """Which function options apply to which function of a cell.

    ``defs`` are the cell's top-level functions as ``(line, name)``, the line being that of the
    ``def`` or its first decorator. Raises :class:`DirectiveProblem` for an option with no
    function below it, or two options of one key on one function.
    """
    options: dict[str, dict[str, str]] = {name: {} for _, name in defs}
    for directive in directives:
        if directive.key not in FUNCTION_OPTIONS or (directive.key == EXAMPLE
                                                     and not directive.value):
            continue
        following = [name for line, name in defs if line > directive.line]
        if not following:
            raise DirectiveProblem(
                f"'#| {directive.key}: {directive.value}' has no function below it to apply to",
                directive.line,
            )
        targets = following if directive.in_header and directive.key != "route" else following[:1]
        for name in targets:
            if directive.key in options[name] and not directive.in_header:
                raise DirectiveProblem(
                    f"two '#| {directive.key}' lines apply to {name}()", directive.line
                )
            options[name][directive.key] = directive.value
    return options
