"""Turn a cell's source into plain Python that runs outside Jupyter.

Marked cells may hold IPython-only lines (``%matplotlib inline``, ``!pip install x``,
``display(df)``). A service has no IPython shell, so those statements are left out and reported,
keeping every other line at its line number so errors still point at the right line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

# Cell magics whose body is ordinary Python worth keeping.
_TRANSPARENT_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")
_IPYTHON_ONLY_NAMES = {"get_ipython", "display"}


@dataclass(frozen=True)
class PythonSource:
    code: str
    dropped: tuple[tuple[int, str], ...] = ()
    error: tuple[int | None, str] | None = None  # (line, message) when it is not Python


def to_python(source: str) -> PythonSource:
    lines = source.splitlines()
    dropped: list[tuple[int, str]] = []
    if lines and lines[0].strip().split(" ")[0] in _TRANSPARENT_CELL_MAGICS:
        dropped.append((1, lines[0]))
        lines[0] = ""
    code = "\n".join(lines) + "\n"
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        transformed = _ipython_transform(code)
        if transformed is None:
            return PythonSource(code, tuple(dropped), (exc.lineno, _syntax_message(exc)))
        try:
            tree = ast.parse(transformed)
        except SyntaxError:
            return PythonSource(code, tuple(dropped), (exc.lineno, _syntax_message(exc)))
        code = transformed
    # Drop top-level statements that need an IPython shell, blanking their lines.
    out = code.splitlines()
    for node in tree.body:
        if _uses_ipython(node):
            start, end = node.lineno, node.end_lineno or node.lineno
            original = source.splitlines()
            text = original[start - 1] if start - 1 < len(original) else out[start - 1]
            dropped.append((start, text.strip()))
            for i in range(start - 1, end):
                out[i] = ""
    return PythonSource("\n".join(out) + "\n", tuple(sorted(dropped)))


def _syntax_message(exc: SyntaxError) -> str:
    text = (exc.text or "").strip()
    return f"{exc.msg}: {text}" if text else str(exc.msg)


def _uses_ipython(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False  # a call inside a body runs only if called; leave definitions whole
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            if sub.func.id in _IPYTHON_ONLY_NAMES:
                return True
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            value = sub.func.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
                if value.func.id == "get_ipython":
                    return True
    return False


def _ipython_transform(code: str) -> str | None:
    """IPython's own translation of magics, or None when IPython is not installed."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return None
    transformed = TransformerManager().transform_cell(code)
    # IPython keeps one line per input line for line magics and shell escapes; refuse anything
    # that changed the line count, so line numbers in errors stay true.
    if transformed.count("\n") != code.count("\n"):
        return None
    return transformed
