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
FUNCTION_OPTIONS = ("route", "timeout", "max-concurrency", "executor", "mcp")
KNOWN_KEYS = (*MARKS, *FUNCTION_OPTIONS)

# `#| key` or `#| key: value`, as in Quarto and nbdev; `# | key` is how black rewrites it.
_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*([A-Za-z][\w-]*)\s*(?::\s*(.*?))?\s*$")
_ROUTE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE)\s+(/\S*)$", re.IGNORECASE)


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


def directive_warnings(directives: Sequence[Directive]) -> list[tuple[int, str]]:
    """``(line, message)`` for a mark below the cell's first code line, which marks nothing, and
    for a key that is a typo of a known one (``#| apii``). Other keys belong to other tools
    (Quarto's ``#| echo``, nbdev's ``#| export``) and are left alone."""
    found = []
    for d in directives:
        if d.key in MARKS and not d.value and not d.in_header:
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
        if d.key == "mcp" and d.value.lower() not in _FLAGS:
            raise DirectiveProblem(
                f"'#| mcp: {d.value}' is not 'true' or 'false' ('#| mcp: false' keeps the "
                "function out of the MCP tools)",
                d.line,
            )


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
        if directive.key not in FUNCTION_OPTIONS:
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
