"""Read a notebook file and pick the cells that belong to the service.

The first stage of the pipeline: file -> :class:`ParsedNotebook`, plain data. Nothing here
runs notebook code. A cell belongs to the service when it is marked ``setup`` or ``api``, by a
cell tag or by a ``#| setup`` / ``#| api`` directive among its first comment lines.

Saved outputs are dropped here: a :class:`ParsedNotebook` keeps sources only, so a notebook
with a large saved plot or table costs no more to serve than the same notebook cleared. Cells
marked ``example`` keep their results (:mod:`.examples`), which ``nb2api test --against-saved``
compares with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    CellRef,
    CellSyntaxError,
    DirectiveError,
    NoMarkedCellsError,
    NotebookReadError,
)
from .clean import LeftOut, PythonSource, to_python
from .directives import (
    CellKind,
    Directive,
    DirectiveProblem,
    cell_kind,
    check_directives,
    directive_warnings,
    is_directive,
    is_example_cell,
    notebook_options,
    parse_directives,
)
from .examples import ExampleCell, saved_outputs


@dataclass(frozen=True)
class Cell:
    """A marked cell, ready to run."""

    index: int  # 1-based, every cell counted
    kind: CellKind
    source: str  # as the author wrote it
    code: str  # plain Python (IPython-only lines made ``pass``, line numbers kept)
    left_out: tuple[LeftOut, ...]  # the IPython-only lines left out
    directives: tuple[Directive, ...]
    description: str | None  # the markdown cell directly above, if any

    @property
    def ref(self) -> CellRef:
        return CellRef(self.index, first_code_line(self.source))

    @property
    def dropped(self) -> tuple[tuple[int, str], ...]:
        """``(line, text)`` of each line left out."""
        return tuple((item.line, item.text) for item in self.left_out)


@dataclass(frozen=True)
class ParsedNotebook:
    path: Path
    name: str
    cells: tuple[Cell, ...]
    title: str | None = None
    description: str | None = None
    # (index, source) of the code cells that are not marked: never run, but a name a marked
    # cell misses is looked up there, to say which cell to mark.
    unmarked: tuple[tuple[int, str], ...] = ()
    # Read-time warnings: IPython-only lines left out, misplaced or misspelt marks.
    warnings: tuple[str, ...] = ()
    # Cells marked ``example``: read for their calls, never run.
    examples: tuple[ExampleCell, ...] = ()
    # ``#| max-workers: N`` in a marked cell: this notebook's thread pool size.
    max_workers: int | None = None


def first_code_line(source: str) -> str:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    for line in lines:
        if not is_directive(line):
            return line
    return lines[0] if lines else ""


def read_notebook(path: str | Path) -> ParsedNotebook:
    """Read ``path`` and return its marked cells. Raises :class:`NotebookError` subclasses."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookReadError("no such notebook file", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NotebookReadError(f"cannot read the notebook: {exc}", path=str(path)) from None
    return parse_notebook(text, path)


def parse_notebook(text: str, path: str | Path = "notebook.ipynb") -> ParsedNotebook:
    """Parse a notebook's JSON text (the file's content) into a :class:`ParsedNotebook`."""
    path = Path(path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookReadError(
            f"not a Jupyter notebook: invalid JSON at line {exc.lineno} column {exc.colno} "
            f"({exc.msg})",
            path=str(path),
        ) from None
    if not isinstance(raw, dict) or "nbformat" not in raw or not (
        "cells" in raw or "worksheets" in raw  # format 4, or 3 and older
    ):
        raise NotebookReadError(
            "not a Jupyter notebook: the JSON has no 'cells' and 'nbformat' keys", path=str(path)
        )
    del text  # from here on, only the parsed cells: the file's text holds every saved output
    nb = _as_v4(raw, path)

    cells: list[Cell] = []
    examples: list[ExampleCell] = []
    unmarked: list[tuple[int, str]] = []
    warnings: list[str] = []
    previous_markdown: str | None = None
    for index, nbcell in enumerate(nb["cells"], start=1):
        source = nbcell["source"]
        if nbcell["cell_type"] == "markdown":
            previous_markdown = source.strip() or None
            continue
        above, previous_markdown = previous_markdown, None
        if nbcell["cell_type"] != "code":
            continue
        outputs, nbcell["outputs"] = nbcell.get("outputs") or [], []  # drop them early
        tags = nbcell["metadata"]["tags"]
        directives = parse_directives(source)
        kind = cell_kind(tags, directives)
        ref = CellRef(index, first_code_line(source))
        warnings += [f"{path}, {ref}, line {line}: {message}"
                     for line, message in directive_warnings(directives)]
        if is_example_cell(tags, directives):
            examples.append(_example_cell(path, index, source, kind, outputs))
            continue
        if kind is None:
            unmarked.append((index, source))
            continue
        try:
            check_directives(directives)
        except DirectiveProblem as problem:
            raise DirectiveError(
                problem.reason, path=str(path), cell=ref, line=problem.line
            ) from None
        python: PythonSource = to_python(source)
        if python.error is not None:
            line, message = python.error
            raise CellSyntaxError(
                f"syntax error: {message}", path=str(path), cell=ref, line=line
            )
        cells.append(
            Cell(
                index=index,
                kind=kind,
                source=source,
                code=python.code,
                left_out=python.left_out,
                directives=directives,
                description=above if kind == "api" else None,
            )
        )
        warnings += [f"{path}, {ref}, line {item.line}: left out '{item.text}' ({item.kind}; "
                     f"{_left_out_because(item)})" for item in python.left_out]
    if not cells:
        raise NoMarkedCellsError(
            "no marked cells: mark cells with the tag 'setup' or 'api', or start them with "
            "'#| setup' or '#| api'",
            path=str(path),
        )
    try:
        options = notebook_options([cell.directives for cell in cells])
    except DirectiveProblem as problem:
        raise DirectiveError(problem.reason, path=str(path),
                             cell=cells[problem.cell].ref,  # type: ignore[attr-defined]
                             line=problem.line) from None
    max_workers = options.get("max-workers")
    title = nb["metadata"].get("title")
    title = title if isinstance(title, str) and title else _front_matter_title(nb["cells"]) or None
    return ParsedNotebook(
        path=path,
        name=path.stem,
        cells=tuple(cells),
        title=title,
        unmarked=tuple(unmarked),
        warnings=tuple(warnings),
        examples=tuple(examples),
        max_workers=int(max_workers[0]) if max_workers else None,
    )


def _example_cell(path: Path, index: int, source: str, kind: CellKind | None,
                  outputs: list) -> ExampleCell:
    ref = CellRef(index, first_code_line(source))
    if kind is not None:
        raise DirectiveError(f"a cell marked example never runs, so it cannot also be marked "
                             f"{kind}; put the calls in a cell of their own", path=str(path),
                             cell=ref)
    python = to_python(source)
    if python.error is not None:
        line, message = python.error
        raise CellSyntaxError(f"syntax error: {message}", path=str(path), cell=ref, line=line)
    return ExampleCell(index, source, python.code, saved_outputs(outputs), ref.first_line)


_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)


def _front_matter_title(cells: list[dict]) -> str | None:
    """The ``title:`` of a Quarto document's YAML front matter (a first raw cell between
    ``---`` lines), read without a YAML parser: a one-line, top-level title only."""
    if not cells or cells[0]["cell_type"] != "raw":
        return None
    source = cells[0]["source"].strip()
    if not source.startswith("---"):
        return None
    header = source[3:].split("\n---", 1)[0]
    match = _TITLE.search(header)
    if match is None:
        return None
    title = match.group(1)
    if len(title) >= 2 and title[0] == title[-1] and title[0] in "'\"":
        title = title[1:-1]
    return title or None


def _left_out_because(item: LeftOut) -> str:
    if item.body_runs:
        return "the cell's code runs without it"
    if item.kind == "an IPython shell escape":
        return "there is no shell at serve time: run it before serving, or call subprocess"
    return "a service has no IPython shell to run it"


def without_outputs(text: str) -> str:
    """A notebook's JSON text with the code cells' saved outputs removed: what to ship to a
    process that parses it again (a Ray replica). Text that is not a notebook is returned as is,
    for :func:`parse_notebook` to refuse."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return text
    if not isinstance(raw, dict):
        return text
    for cell in raw.get("cells") or []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"] = []
    return json.dumps(raw, ensure_ascii=False)


def _as_v4(raw: dict, path: Path) -> dict:
    """The notebook in format 4 with every cell's source a string and its tags a list.

    Format 4 is read as plain JSON: importing nbformat costs about a second of start-up (its
    JSON-schema validator), so it is used only to convert older formats.
    """
    if raw.get("nbformat") != 4:
        try:
            import nbformat

            raw = json.loads(nbformat.writes(nbformat.reads(json.dumps(raw), as_version=4)))
        except Exception as exc:  # nbformat raises several unrelated types for bad input
            raise NotebookReadError(f"not a Jupyter notebook: {exc}", path=str(path)) from None
    cells = raw.get("cells")
    if not isinstance(cells, list) or not all(
        isinstance(c, dict) and isinstance(c.get("cell_type"), str) for c in cells
    ):
        raise NotebookReadError("not a Jupyter notebook: 'cells' is not a list of cells",
                                path=str(path))
    for index, cell in enumerate(cells, start=1):
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise NotebookReadError(f"not a Jupyter notebook: cell {index}'s 'source' is not "
                                    "text", path=str(path))
        cell["source"] = source
        metadata = cell.get("metadata")
        cell["metadata"] = metadata = metadata if isinstance(metadata, dict) else {}
        tags = metadata.get("tags")
        metadata["tags"] = [str(t) for t in tags] if isinstance(tags, list) else []
    if not isinstance(raw.get("metadata"), dict):
        raw["metadata"] = {}
    return raw
