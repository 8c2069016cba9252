"""Turn a cell's source into plain Python that runs outside Jupyter.

IPython is the reference for notebook syntax, so its own transformer translates the cell
(``%matplotlib inline`` becomes ``get_ipython().run_line_magic(...)``); each translated line is
then decided here, because a service has no IPython shell:

- a leading transparent cell magic (``%%time``, ``%%capture``, ...) is blanked and its body runs;
  any other cell magic (``%%bash``, ``%%writefile``) leaves the whole cell out;
- ``%time stmt`` and ``%timeit stmt`` run ``stmt``;
- shell escapes (``!ls``, ``x = !ls``) and every other magic become ``pass``, reported as left out.

Every line keeps its line number, so errors still point at the line the author wrote.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass

# Cell magics that only time, profile or capture their body: the body runs as plain Python.
TRANSPARENT_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
# Line magics that run the statement they are given.
_STATEMENT_LINE_MAGICS = frozenset({"time", "timeit"})
# %timeit's options, with or without their value: -n 10, -r3, -t, -c, -p 3, -q, -o.
_TIMEIT_OPTIONS = re.compile(r"^(?:-[nrp]\s*\d+\s+|-[tcqo]\s+)+")
_IPYTHON_CALLS = {
    "system": "an IPython shell escape",
    "getoutput": "an IPython shell escape",
    "run_line_magic": "an IPython magic",
    "run_cell_magic": "an IPython cell magic",
}


@dataclass(frozen=True)
class LeftOut:
    """An IPython-only line left out of the cell: where, what, and the names it assigned."""

    line: int  # 1-based within the cell
    text: str  # the line as written
    kind: str  # "an IPython shell escape", "an IPython magic", "an IPython cell magic"
    names: tuple[str, ...] = ()  # `files = !ls` assigns files
    body_runs: bool = False  # a transparent cell magic: only the magic line is left out


@dataclass(frozen=True)
class PythonSource:
    code: str
    left_out: tuple[LeftOut, ...] = ()
    error: tuple[int | None, str] | None = None  # (line, message) when it is not Python


def to_python(source: str) -> PythonSource:
    lines = source.splitlines()
    magic = _leading_cell_magic(lines)
    header: tuple[LeftOut, ...] = ()
    if magic is not None:
        number, name = magic
        transparent = name in TRANSPARENT_CELL_MAGICS
        header = (LeftOut(number, lines[number - 1].strip(), _IPYTHON_CALLS["run_cell_magic"],
                          body_runs=transparent),)
        if not transparent:
            return PythonSource("\n" * len(lines), header)
        lines[number - 1] = ""
    code = "\n".join(lines) + "\n"
    try:
        ast.parse(code)
        return PythonSource(code, header)  # plain Python: nothing for IPython to translate
    except SyntaxError:
        pass
    transformed = _same_line_count(code, _transform(code))
    try:
        tree = ast.parse(transformed)
    except SyntaxError as exc:
        return PythonSource(code, (), (exc.lineno, _syntax_message(exc, lines)))
    # Decide each line that IPython translated (and only those: a cell may call get_ipython()
    # itself, which the namespace's stand-in answers).
    pairs = zip(code.splitlines(), transformed.splitlines(), strict=False)
    changed = {number for number, (a, b) in enumerate(pairs, start=1) if a != b}
    out = transformed.splitlines()
    left_out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expr, ast.Assign)) or node.lineno not in changed:
            continue
        call = _ipython_call(node.value)
        if call is None:
            continue
        method, args = call
        indent = out[node.lineno - 1][: len(out[node.lineno - 1]) - len(
            out[node.lineno - 1].lstrip())]
        targets = [ast.get_source_segment(transformed, t) or "" for t in getattr(
            node, "targets", [])]
        if method == "run_line_magic" and args[0] in _STATEMENT_LINE_MAGICS:
            statement = args[1].strip()
            if args[0] == "timeit":
                statement = _TIMEIT_OPTIONS.sub("", statement + " ").strip()
            out[node.lineno - 1] = indent + "".join(f"{t} = " for t in targets) + statement
            continue
        out[node.lineno - 1] = indent + "pass"
        names = tuple(n.id for t in getattr(node, "targets", []) for n in ast.walk(t)
                      if isinstance(n, ast.Name))
        text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
        left_out.append(LeftOut(node.lineno, text, _IPYTHON_CALLS[method], names))
    code = "\n".join(out) + "\n"
    try:
        ast.parse(code)
    except SyntaxError as exc:  # a %time statement that is not Python
        return PythonSource(code, (), (exc.lineno, _syntax_message(exc, lines)))
    return PythonSource(code, header + tuple(sorted(left_out, key=lambda x: x.line)))


def defined_names(source: str) -> set[str]:
    """Names a cell's top-level code binds: assignments, def, class, import, for, with-as."""
    python = to_python(source)
    if python.error is not None:
        return set()
    names: set[str] = set()
    for node in ast.walk(ast.parse(python.code)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
    return names


def _leading_cell_magic(lines: list[str]) -> tuple[int, str] | None:
    """``(line, name)`` of a ``%%name`` cell magic on the cell's first non-blank line."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            if line.startswith("%%"):
                return number, line[2:].split(maxsplit=1)[0] if line[2:].strip() else ""
            return None
    return None


def _transform(code: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(code)
    except Exception:  # input IPython cannot read either: reported as Python's syntax error
        return code


def _same_line_count(code: str, transformed: str) -> str:
    """``transformed`` padded with blank lines where IPython joined continued lines (``!a \\``),
    so that every line after keeps its number."""
    before, after = code.splitlines(), transformed.splitlines()
    if len(after) >= len(before):
        return transformed
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        out += after[j1:j2] + [""] * max(0, (i2 - i1) - (j2 - j1))
    return "\n".join(out) + "\n"


def _ipython_call(value: ast.expr) -> tuple[str, list[str]] | None:
    """``get_ipython().run_line_magic('time', 'f()')`` -> ``("run_line_magic", ["time", "f()"])``"""
    if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
            and value.func.attr in _IPYTHON_CALLS):
        return None
    owner = value.func.value
    if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
            and owner.func.id == "get_ipython"):
        return None
    args = [a.value for a in value.args if isinstance(a, ast.Constant)]
    return value.func.attr, [str(a) for a in args] + ["", ""]


def _syntax_message(exc: SyntaxError, lines: list[str]) -> str:
    number = exc.lineno or 0
    text = lines[number - 1].strip() if 0 < number <= len(lines) else (exc.text or "").strip()
    return f"{exc.msg}: {text}" if text else str(exc.msg)
