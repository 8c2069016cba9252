"""Errors raised while reading, loading or mounting a notebook.

Each error carries the facts a user needs as fields (cell, line, function, parameter), and
``str()`` turns them into one line that quotes what the user wrote. The CLI prints that line and
exits 2; nothing else in nb2api prints.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CellRef:
    """A cell as people count them: 1-based, every cell counted, markdown included."""

    index: int
    first_line: str

    def __str__(self) -> str:
        first = self.first_line if len(self.first_line) <= 60 else self.first_line[:57] + "..."
        return f'cell {self.index} ("{first}")'


class NotebookError(Exception):
    """A notebook that cannot be served. ``str(error)`` is one line naming the cell.

    Fields (``None`` where they do not apply): ``reason`` (what is wrong and how to fix it),
    ``path`` (the notebook), ``cell`` (a [`CellRef`][nb2api.errors.CellRef]), ``line`` (1-based,
    within the cell), ``function`` and ``parameter`` (the route function and parameter at fault).
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        cell: CellRef | None = None,
        line: int | None = None,
        function: str | None = None,
        parameter: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = path
        self.cell = cell
        self.line = line
        self.function = function
        self.parameter = parameter
        super().__init__(reason)

    def __str__(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.cell is not None:
            where.append(str(self.cell))
        if self.line is not None:
            where.append(f"line {self.line}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class NotebookReadError(NotebookError):
    """The file is missing, not JSON, or not a Jupyter notebook."""


class NoMarkedCellsError(NotebookError):
    """No cell is marked ``setup`` or ``api``, so there is nothing to serve."""


class CellSyntaxError(NotebookError):
    """A marked cell is not valid Python."""


class CellExecutionError(NotebookError):
    """A marked cell raised while it ran at start-up.

    ``ename``/``evalue`` are the exception's name and message; ``traceback`` keeps the full text
    for the log.
    """

    def __init__(self, reason: str, *, ename: str, evalue: str, traceback: str, **kw) -> None:
        super().__init__(reason, **kw)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


class SignatureError(NotebookError):
    """A route function's signature breaks a rule (``*args``, path parameter missing, ...)."""


class UndefinedNameError(SignatureError):
    """An annotation names something the notebook does not define."""


class AnnotationError(SignatureError):
    """An annotation cannot become a JSON schema."""


class RouteConflictError(NotebookError):
    """Two functions claim the same method and path."""


class ReservedPathError(RouteConflictError):
    """A function's route is on a path nb2api serves itself (``/healthz``, ``/docs``, ...)."""


class DirectiveError(NotebookError):
    """A ``#|`` directive line cannot be understood."""


class NoRoutesError(NotebookError):
    """The notebook loads, but no api cell defines a public function: nothing to serve."""


class ExampleError(NotebookError):
    """An example call does not fit its route: it cannot bind to the function's parameters, or
    its arguments fail the route's validation. The notebook's own usage must fit its API."""
