"""Read example cells: the notebook's own calls of its route functions, as plain data.

A cell marked ``example`` never runs at serve time. Its source is read with ``ast``: each
top-level call of a route function (``predict(80.0, 3, "paris")``, ``paris = predict(...)``,
``await forecast(...)``) whose arguments are all literals becomes an :class:`Example`. Literals
are what ``ast.literal_eval`` reads (numbers, strings, lists, dicts, tuples, sets, None, True,
False), plus constructors with literal arguments of the models, dataclasses and enums the marked
cells define, and ``pd.DataFrame(...)`` / ``np.array(...)`` of literals. Nothing is executed but
those constructors, with values already read.

The output Jupyter saved for an example (the cell's ``execute_result`` when the call, or the
variable it assigned, is the cell's last expression; a ``display(variable)``) is kept with it,
for ``nb2api test --against-saved``.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CellRef


@dataclass(frozen=True)
class ExampleCell:
    """A cell marked ``example``; ``outputs`` are its saved ``execute_result`` and
    ``display_data`` outputs, in order, as ``(output_type, data)``."""

    index: int  # 1-based, every cell counted
    source: str
    code: str  # plain Python, line numbers kept
    outputs: tuple[tuple[str, dict[str, Any]], ...] = ()
    first_line: str = ""  # its first line of code, to name it in messages

    @property
    def ref(self) -> CellRef:
        return CellRef(self.index, self.first_line)


@dataclass(frozen=True)
class ExampleCall:
    """A top-level call in an example cell, not yet evaluated."""

    function: str
    line: int  # 1-based within the cell
    target: str | None  # the variable assigned, if any
    args: tuple[ast.expr, ...]
    keywords: tuple[tuple[str | None, ast.expr], ...]  # None: a ``**mapping``
    text: str  # the call as written
    saved: dict[str, Any] | None = None  # the mime bundle Jupyter saved for it


@dataclass(frozen=True)
class Example:
    """One example: a literal call of a route function, evaluated."""

    name: str
    function: str
    cell: ExampleCell
    line: int
    text: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    saved: dict[str, Any] | None = None
    # Why the call cannot be made, when the notebook's own constructor refused its values
    # (``House(area=-1)``): the example does not fit, which the route stage reports.
    problem: str | None = None


class NotLiteral(ValueError):
    """An argument that is not a literal; ``line`` is where it is."""

    def __init__(self, reason: str, line: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


class RefusedValue(NotLiteral):
    """A constructor of literals that raised: the call would fail in the notebook too."""


def saved_outputs(outputs: Iterable[dict[str, Any]]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The ``execute_result`` and ``display_data`` outputs of a notebook cell, in order."""
    kept = []
    for output in outputs:
        kind = output.get("output_type") if isinstance(output, dict) else None
        data = output.get("data") if kind in ("execute_result", "display_data") else None
        if isinstance(data, dict):
            kept.append((kind, {k: "".join(v) if isinstance(v, list) and k.startswith("text/")
                                else v for k, v in data.items()}))
    return tuple(kept)


def parse_example_cell(code: str,
                       outputs: tuple[tuple[str, dict[str, Any]], ...] = ()) -> list[ExampleCall]:
    """Every top-level call of a plain name in ``code`` (the caller keeps those of route
    functions), with the saved output that belongs to each."""
    tree = ast.parse(code)
    calls: list[ExampleCall] = []
    for statement in tree.body:
        target, value = None, None
        if isinstance(statement, ast.Expr):
            value = statement.value
        elif (isinstance(statement, ast.Assign) and len(statement.targets) == 1
              and isinstance(statement.targets[0], ast.Name)):
            target, value = statement.targets[0].id, statement.value
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            target, value = statement.target.id, statement.value
        if isinstance(value, ast.Await):
            value = value.value
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)):
            continue
        calls.append(ExampleCall(
            function=value.func.id,
            line=value.lineno,
            target=target,
            args=tuple(value.args),
            keywords=tuple((k.arg, k.value) for k in value.keywords),
            text=ast.get_source_segment(code, value) or value.func.id + "(...)",
        ))
    return _with_saved(tree, calls, outputs)


def _with_saved(tree: ast.Module, calls: list[ExampleCall],
                outputs: tuple[tuple[str, dict[str, Any]], ...]) -> list[ExampleCall]:
    """Give each call the output Jupyter saved for it: the ``execute_result`` of the cell's last
    expression (the call, or its variable), or the ``display_data`` of ``display(variable)``."""
    saved: dict[str, dict[str, Any]] = {}  # variable (or "" for the last call) -> mime bundle
    results = [data for kind, data in outputs if kind == "execute_result"]
    last = tree.body[-1] if tree.body else None
    if results and isinstance(last, ast.Expr):
        value = last.value.value if isinstance(last.value, ast.Await) else last.value
        if isinstance(value, ast.Name):
            saved[value.id] = results[-1]
        elif calls and calls[-1].target is None and isinstance(value, ast.Call) \
                and value.lineno == calls[-1].line:
            saved[""] = results[-1]
    displayed = [
        argument.id
        for statement in tree.body
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Name) and statement.value.func.id == "display"
        for argument in statement.value.args
        if isinstance(argument, ast.Name)
    ]
    displays = [data for kind, data in outputs if kind == "display_data"]
    if displayed and len(displayed) == len(displays):  # else which is which cannot be told
        for name, data in zip(displayed, displays, strict=True):
            saved.setdefault(name, data)
    found = []
    for number, call in enumerate(calls):
        key = call.target if call.target is not None else (
            "" if number == len(calls) - 1 else None)
        bundle = saved.get(key) if key is not None else None
        # A variable assigned again later in the cell no longer holds this call's result.
        if call.target is not None and any(c.target == call.target for c in calls[number + 1:]):
            bundle = None
        found.append(dataclasses.replace(call, saved=bundle))
    return found


def evaluate(node: ast.expr, namespace: dict[str, Any]) -> Any:
    """The value of a literal ``node``; :class:`NotLiteral` for anything else.

    Calls are allowed only of a model, dataclass or enum defined in the marked cells (their
    ``__module__`` is the notebook's), ``pandas.DataFrame`` and ``numpy.array``.
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = evaluate(node.operand, namespace)
        if isinstance(operand, int | float | complex) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        if any(isinstance(item, ast.Starred) for item in node.elts):
            raise NotLiteral("a starred item is not a literal", node.lineno)
        items = [evaluate(item, namespace) for item in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    elif isinstance(node, ast.Dict):
        if any(key is None for key in node.keys):
            raise NotLiteral("a '**' in a dict is not a literal", node.lineno)
        return {evaluate(k, namespace): evaluate(v, namespace)  # type: ignore[arg-type]
                for k, v in zip(node.keys, node.values, strict=True)}
    elif isinstance(node, ast.Call):
        constructor = _constructor(node.func, namespace)
        args = [evaluate(a, namespace) for a in node.args if not isinstance(a, ast.Starred)]
        if len(args) != len(node.args) or any(k.arg is None for k in node.keywords):
            raise NotLiteral("'*' and '**' arguments are not literals", node.lineno)
        kwargs = {k.arg: evaluate(k.value, namespace) for k in node.keywords}
        try:
            return constructor(*args, **kwargs)
        except Exception as exc:  # the notebook's own constructor refused the values
            raise RefusedValue(f"{ast.unparse(node.func)}(...) raised {_reason(exc)}",
                               node.lineno) from None
    elif isinstance(node, ast.Attribute):
        member = _resolve(node, namespace)
        if isinstance(member, enum.Enum) and _is_notebook_class(type(member), namespace):
            return member
    what = {ast.Name: "a variable", ast.Attribute: "an attribute", ast.BinOp: "an operation",
            ast.Subscript: "a subscript", ast.JoinedStr: "an f-string"}.get(type(node))
    text = ast.unparse(node)
    text = text if len(text) <= 40 else text[:37] + "..."
    raise NotLiteral(f"'{text}' is {what or 'not a literal'}", getattr(node, "lineno", 1))


def _reason(exc: Exception) -> str:
    """``ValidationError: area: Input should be greater than 0``: pydantic's first error."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return f"{type(exc).__name__}: {where + ': ' if where else ''}{first['msg']}"
        except (TypeError, LookupError):
            pass
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _resolve(node: ast.expr, namespace: dict[str, Any]) -> Any:
    """What a dotted name (``Sale``, ``pd.DataFrame``) means in the notebook, or None. Only
    modules and classes are looked into, so no property of a notebook object runs."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, namespace)
        if isinstance(owner, types.ModuleType | type):
            return getattr(owner, node.attr, None)
    return None


def _constructor(func: ast.expr, namespace: dict[str, Any]) -> Callable[..., Any]:
    target = _resolve(func, namespace)
    if target is not None and (_is_notebook_class(target, namespace)
                               or _is_data_constructor(target)):
        return target
    raise NotLiteral(f"'{ast.unparse(func)}(...)' is a call, not a literal (calls of the "
                     "notebook's models, dataclasses and enums, pd.DataFrame and np.array are)",
                     func.lineno)


def _is_notebook_class(target: Any, namespace: dict[str, Any]) -> bool:
    # Cells run as __main__ (as in a kernel), so their classes say __main__.
    if not isinstance(target, type) or target.__module__ != namespace.get("__name__"):
        return False
    if dataclasses.is_dataclass(target) or issubclass(target, enum.Enum):
        return True
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(target, pydantic.BaseModel)


def _is_data_constructor(target: Any) -> bool:
    pandas, numpy = sys.modules.get("pandas"), sys.modules.get("numpy")
    return (pandas is not None and target is pandas.DataFrame) or (
        numpy is not None and target is numpy.array)


def collect_examples(cells: Iterable[ExampleCell], namespace: dict[str, Any],
                     functions: Iterable[str],
                     warn: Callable[[ExampleCell, int, str], None]) -> tuple[Example, ...]:
    """The examples of ``cells`` that call one of ``functions``, evaluated in ``namespace`` (the
    module the marked cells ran in). A call that is not literal is left out with
    ``warn(cell, line, message)``."""
    routes = set(functions)
    examples: list[Example] = []
    taken: set[str] = set()
    for cell in cells:
        counts: dict[str, int] = {}
        for call in parse_example_cell(cell.code, cell.outputs):
            if call.function not in routes:
                continue
            counts[call.function] = number = counts.get(call.function, 0) + 1
            try:
                if any(name is None for name, _ in call.keywords) or any(
                        isinstance(a, ast.Starred) for a in call.args):
                    raise NotLiteral("'*' and '**' arguments are not literals", call.line)
                args = tuple(evaluate(a, namespace) for a in call.args)
                kwargs = {name: evaluate(v, namespace) for name, v in call.keywords if name}
                refused = None
            except RefusedValue as problem:
                args, kwargs, refused = (), {}, problem.reason
            except NotLiteral as problem:
                warn(cell, problem.line, f"{call.function}() is not an example: {problem.reason}; "
                     "only literal arguments make an example")
                continue
            name = call.target or f"{call.function} cell {cell.index} #{number}"
            unique, again = name, 2
            while unique in taken:
                unique, again = f"{name} #{again}", again + 1
            taken.add(unique)
            examples.append(Example(unique, call.function, cell, call.line, call.text, args,
                                    kwargs, call.saved, refused))
    return tuple(examples)


class NoSavedValue(ValueError):
    """An example has no saved output, or one that is neither JSON nor a Python literal."""


def saved_value(bundle: dict[str, Any] | None) -> Any:
    """The value Jupyter saved for an example: its ``application/json``, else its
    ``text/plain`` read as a Python literal. Reprs of numpy scalars (``np.float64(2.5)``) read as
    their number, and ``Name(field=literal, ...)`` (a dataclass's or a model's repr) as a dict.
    Raises :class:`NoSavedValue`."""
    if not bundle:
        raise NoSavedValue("no saved output")
    if "application/json" in bundle:
        return bundle["application/json"]
    text = bundle.get("text/plain")
    if not isinstance(text, str):
        raise NoSavedValue("the saved output has no text")
    try:
        return _saved_literal(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, RecursionError):
        raise NoSavedValue("the saved output is not JSON or a Python literal") from None


def _saved_literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Call) and not node.args and node.keywords and all(
            k.arg for k in node.keywords) and isinstance(node.func, ast.Name):
        return {k.arg: _saved_literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords and isinstance(
            node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) and (
            node.func.value.id in ("np", "numpy")):
        return _saved_literal(node.args[0])  # np.float64(2.5), np.int64(3), np.str_('a')
    if isinstance(node, ast.List | ast.Tuple):
        return [_saved_literal(item) for item in node.elts]
    if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
        return {_saved_literal(k): _saved_literal(v)  # type: ignore[arg-type]
                for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Name) and node.id in ("nan", "inf"):
        return float(node.id)
    return ast.literal_eval(node)
