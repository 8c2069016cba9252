"""Run a parsed notebook's marked cells into a fresh module and collect its route functions.

Second stage of the pipeline: :class:`ParsedNotebook` -> :class:`LoadedNotebook`. Setup and api
cells run once, in notebook order, in one module namespace, as Jupyter would run them (with
``__name__ == "__main__"``, ``display``, ``get_ipython`` and top-level ``await``: see
:mod:`.kernel`). Each cell is compiled under its own file name, so tracebacks in the log say which
cell and line raised.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import linecache
import os
import re
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    CellExecutionError,
    CellRef,
    CellSyntaxError,
    DirectiveError,
    NoRoutesError,
    UndefinedNameError,
)
from .clean import defined_names
from .directives import DirectiveProblem, function_options
from .examples import Example, ExampleCell, collect_examples
from .kernel import kernel_namespace, quiet_display, run_code
from .read import Cell, ParsedNotebook, first_code_line, read_notebook

Progress = Callable[[Cell, "float | None"], None]
"""Called with ``(cell, None)`` before a cell runs and ``(cell, seconds)`` after."""

_module_ids = itertools.count(1)


@dataclass(frozen=True)
class NotebookFunction:
    """A public top-level function defined by an ``api`` cell."""

    name: str
    func: Callable[..., Any]
    cell: Cell
    line: int  # line of the ``def`` (or its first decorator) within the cell
    options: dict[str, str]  # function directives: route, timeout, max-concurrency, executor


@dataclass
class LoadedNotebook:
    notebook: ParsedNotebook
    module: types.ModuleType
    functions: tuple[NotebookFunction, ...]
    timings: tuple[tuple[Cell, float], ...]
    warnings: list[str] = field(default_factory=list)
    examples: tuple[Example, ...] = ()  # the example cells' literal calls of route functions

    @property
    def load_seconds(self) -> float:
        return sum(seconds for _, seconds in self.timings)


def load_notebook(path: str | Path, *, progress: Progress | None = None,
                  warn: Callable[[str], None] | None = None) -> LoadedNotebook:
    """Read ``path``, run its setup and api cells, and return what they define."""
    return load_parsed(read_notebook(path), progress=progress, warn=warn)


def load_parsed(notebook: ParsedNotebook, *, progress: Progress | None = None,
                warn: Callable[[str], None] | None = None) -> LoadedNotebook:
    """Run ``notebook``'s marked cells. ``warn`` is called with each warning as it arises, the
    read-time ones before any cell runs, so they are seen even when a cell then fails; all of
    them are also kept in :attr:`LoadedNotebook.warnings`. Raises :class:`NoRoutesError` when no
    api cell defines a public function."""
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    for message in notebook.warnings:
        note(message)
    module = _fresh_module(notebook)
    functions: list[NotebookFunction] = []
    timings: list[tuple[Cell, float]] = []
    with _in_folder(notebook.path.resolve().parent):
        for cell in notebook.cells:
            if progress:
                progress(cell, None)
            started = time.perf_counter()
            _run_cell(notebook, cell, module)
            seconds = time.perf_counter() - started
            timings.append((cell, seconds))
            if progress:
                progress(cell, seconds)
            if cell.kind == "api":
                for function in _collect_functions(notebook, cell, module):
                    earlier = [f for f in functions if f.name == function.name]
                    if earlier:
                        # As in Jupyter, the later definition replaces the earlier one.
                        note(
                            f"{notebook.path}, {function.cell.ref}: {function.name}() redefines "
                            f"the function from {earlier[0].cell.ref}; serving the later one"
                        )
                        functions.remove(earlier[0])
                    functions.append(function)
    if not functions:
        raise _no_routes(notebook)

    def not_an_example(cell: ExampleCell, line: int, message: str) -> None:
        note(f"{notebook.path}, {cell.ref}, line {line}: {message}")

    examples = collect_examples(notebook.examples, module.__dict__,
                                [f.name for f in functions], not_an_example)
    return LoadedNotebook(notebook, module, tuple(functions), tuple(timings), warnings, examples)


def cell_filename(notebook: ParsedNotebook, cell: Cell) -> str:
    return f"<{notebook.name} cell {cell.index}>"


def _fresh_module(notebook: ParsedNotebook) -> types.ModuleType:
    # A real entry in sys.modules lets pydantic, dataclasses and pickle find classes defined in
    # the notebook by their ``__module__``.
    name = f"nb2api_notebook_{next(_module_ids)}"
    module = types.ModuleType(name, f"Marked cells of {notebook.path}")
    module.__file__ = str(notebook.path)
    sys.modules[name] = module
    kernel_namespace(module)  # from here on the module calls itself __main__, as in a kernel
    return module


def _no_routes(notebook: ParsedNotebook) -> NoRoutesError:
    api = [cell for cell in notebook.cells if cell.kind == "api"]
    if not api:
        return NoRoutesError(
            "no route functions: no cell is marked api; mark the cell that defines them with "
            "the tag 'api' or a first line '#| api'",
            path=str(notebook.path),
        )
    return NoRoutesError(
        f"no route functions: {'the api cells define' if len(api) > 1 else 'it defines'} no "
        "public function (a top-level 'def' whose name does not start with '_')",
        path=str(notebook.path),
        cell=api[0].ref,
    )


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    """Run cells from the notebook's folder, as Jupyter does, so relative paths resolve."""
    previous = os.getcwd()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _run_cell(notebook: ParsedNotebook, cell: Cell, module: types.ModuleType) -> None:
    filename = cell_filename(notebook, cell)
    linecache.cache[filename] = (len(cell.code), None, cell.code.splitlines(True), filename)
    # dont_inherit: the cell gets no __future__ flags from this module, exactly as in Jupyter.
    try:
        code = compile(cell.code, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                       dont_inherit=True)
    except SyntaxError as exc:  # parses, but cannot compile: a top-level return or yield
        text = (exc.text or "").strip()
        raise CellSyntaxError(
            f"syntax error: {exc.msg}" + (f": {text}" if text else ""),
            path=str(notebook.path), cell=cell.ref, line=exc.lineno,
        ) from None
    try:
        run_code(code, module.__dict__)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
        line = frames[-1].lineno if frames else None
        ename, evalue = type(exc).__name__, str(exc)
        hint = missing_name_hint(notebook, cell, exc) if isinstance(exc, NameError) else ""
        signature_of = _signature_at(cell, line) if isinstance(exc, NameError) else None
        if signature_of is not None:
            raise UndefinedNameError(
                f"{evalue} (in the signature of {signature_of}())"
                + (hint or "; define or import it in a setup or api cell above"),
                path=str(notebook.path),
                cell=cell.ref,
                line=line,
                function=signature_of,
            ) from None
        raise CellExecutionError(
            (f"{cell.kind} cell raised {ename}: {evalue}" if evalue else f"{cell.kind} cell raised "
             f"{ename}") + hint,
            path=str(notebook.path),
            cell=cell.ref,
            line=line,
            ename=ename,
            evalue=evalue,
            traceback="".join(traceback.format_exception(exc)),
        ) from None
    quiet_display(module.__dict__)


_NOT_DEFINED = re.compile(r"name '(\w+)' is not defined")


def missing_name_hint(notebook: ParsedNotebook, failed: Cell, exc: NameError) -> str:
    """Where the missing name would have come from: a line nb2api left out, or a cell that is
    not marked (the nearest above the failing cell, else the nearest below). Empty when neither.

    For a cell that fails at load and, at request time, for a route function its cell defines.
    """
    name = getattr(exc, "name", None)
    if not name:  # lost when the error crossed from a worker process by pickle
        match = _NOT_DEFINED.search(str(exc))
        name = match.group(1) if match else None
    if not name:
        return ""
    for cell in notebook.cells:
        if cell.index > failed.index:
            break
        for item in cell.left_out:
            if name in item.names:
                return (f"; cell {cell.index}, line {item.line} assigned it with {item.kind} "
                        f"('{item.text}') that nb2api leaves out: compute it in Python instead")
    above = [(i, s) for i, s in reversed(notebook.unmarked) if i < failed.index]
    below = [(i, s) for i, s in notebook.unmarked if i > failed.index]
    for index, source in above + below:
        if name in defined_names(source):
            ref = CellRef(index, first_code_line(source))
            return f"; {ref} defines it but is not marked setup"
    return ""


def _signature_at(cell: Cell, line: int | None) -> str | None:
    """The function whose ``def`` line(s) hold ``line``, if any: its annotations failed."""
    if line is None:
        return None
    for node in ast.parse(cell.code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if first <= line < node.body[0].lineno:
                return node.name
    return None


def _collect_functions(
    notebook: ParsedNotebook, cell: Cell, module: types.ModuleType
) -> list[NotebookFunction]:
    tree = ast.parse(cell.code)
    defs = [
        (min([node.lineno] + [d.lineno for d in node.decorator_list]), node.name)
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    try:
        options = function_options(cell.directives, defs)
    except DirectiveProblem as problem:
        raise DirectiveError(
            problem.reason, path=str(notebook.path), cell=cell.ref, line=problem.line
        ) from None
    found = []
    for line, name in defs:
        if name.startswith("_"):
            continue
        func = module.__dict__.get(name)
        if not callable(func):
            continue
        found.append(NotebookFunction(name, func, cell, line, options[name]))
    return found
