"""The example-cell parser, the saved-output reader and the JSON comparison, alone."""

from __future__ import annotations

import ast
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nb2api.load.examples import (
    NoSavedValue,
    NotLiteral,
    evaluate,
    parse_example_cell,
    saved_value,
)
from nb2api.types.compare import differences

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"if", "in", "is", "or", "as", "def", "for", "and", "not", "del", "try",
                        "with", "else", "elif", "from", "pass", "while", "class", "break",
                        "raise", "yield", "async", "await", "global", "lambda", "assert",
                        "import", "return", "except", "finally", "continue", "nonlocal"})
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
LITERALS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
CALLS = st.tuples(
    NAMES,  # the function
    st.none() | NAMES,  # the variable assigned
    st.lists(LITERALS, max_size=3),
    st.dictionaries(NAMES, LITERALS, max_size=3),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(CALLS, min_size=1, max_size=5), st.lists(st.sampled_from(
    ["print('x')", "x = 1", "import math", "obj.method(1)", "# a comment", "for i in []: pass"]),
    max_size=3))
def test_every_literal_call_reads_back_as_written(calls, noise):
    lines, expected = [], []
    for function, target, args, kwargs in calls:
        text = f"{function}({', '.join([*map(repr, args), *(f'{k}={v!r}' for k, v in kwargs.items())])})"
        lines.append(f"{target} = {text}" if target else text)
        expected.append((function, target, len(lines), args, kwargs))
        lines += noise  # statements that are not calls of a plain name are passed over
    source = "\n".join(lines)
    parsed = [c for c in parse_example_cell(source) if c.function != "print"]
    assert len(parsed) == len(expected)
    for call, (function, target, line, args, kwargs) in zip(parsed, expected, strict=True):
        assert (call.function, call.target, call.line) == (function, target, line)
        assert [evaluate(a, {}) for a in call.args] == args
        assert {k: evaluate(v, {}) for k, v in call.keywords} == kwargs
        assert call.text == lines[line - 1].split(" = ", 1)[-1] if target else lines[line - 1]


@settings(max_examples=100, deadline=None)
@given(LITERALS)
def test_a_saved_text_plain_repr_reads_as_the_value(value):
    read = saved_value({"text/plain": repr(value)})

    def plain(v):  # tuples are saved as lists: JSON has no tuple
        if isinstance(v, tuple | list):
            return [plain(i) for i in v]
        if isinstance(v, dict):
            return {k: plain(i) for k, i in v.items()}
        return v

    assert plain(read) == plain(value)


@pytest.mark.parametrize("source", ["f(x)", "f(g(1))", "f(1 + 2)", "f([*a])", "f({**a})",
                                    "f(a.b)", "f(a[0])", "f(f'{a}')", "f(lambda: 1)"])
def test_what_is_not_a_literal(source):
    call = parse_example_cell(source)[0]
    with pytest.raises(NotLiteral):
        evaluate(call.args[0], {"__name__": "__main__"})


def test_await_and_annotated_assignments_are_calls_too():
    calls = parse_example_cell("r: dict = f(1)\nawait g(2)\nx = [h(3)]\nprint(i(4))")
    assert [(c.function, c.target) for c in calls] == [("f", "r"), ("g", None), ("print", None)]


def test_saved_outputs_belong_to_the_last_call_or_the_variable_shown():
    outputs = (("display_data", {"text/plain": "1"}), ("execute_result", {"text/plain": "2"}))
    calls = parse_example_cell("a = f(1)\nb = f(2)\ndisplay(a)\nb", outputs)
    assert [c.saved for c in calls if c.function == "f"] == [{"text/plain": "1"},
                                                              {"text/plain": "2"}]
    last = parse_example_cell("a = f(1)\nf(2)", (("execute_result", {"text/plain": "3"}),))
    assert [c.saved for c in last] == [None, {"text/plain": "3"}]
    reassigned = parse_example_cell("a = f(1)\na = f(2)\na",
                                    (("execute_result", {"text/plain": "3"}),))
    assert [c.saved for c in reassigned] == [None, {"text/plain": "3"}]


def test_saved_value_prefers_json_and_reads_numpy_and_dataclass_reprs():
    assert saved_value({"text/plain": "'no'", "application/json": {"a": 1}}) == {"a": 1}
    assert saved_value({"text/plain": "np.float64(2.5)"}) == 2.5
    assert saved_value({"text/plain": "Sale(price=np.float64(1.5), items=[1, 2])"}) == {
        "price": 1.5, "items": [1, 2]}
    assert math.isnan(saved_value({"text/plain": "nan"}))
    for bundle in (None, {}, {"text/plain": "<Figure size 640x480>"}, {"image/png": "..."}):
        with pytest.raises(NoSavedValue):
            saved_value(bundle)


def test_differences_say_where_and_respect_rtol():
    assert differences({"a": [1.0, 2.0]}, {"a": [1.0, 2.0 * (1 + 1e-12)]}) == []
    assert differences({"a": [1.0, 2.0]}, {"a": [1.0, 2.1]}) == ["$.a[1]: expected 2.0, got 2.1"]
    assert differences([1, 2], [1]) == ["$: expected 2 items, got 1"]
    assert differences({"a": 1}, {"b": 1}) == ["$.a: expected 1, got nothing",
                                               "$.b: expected nothing, got 1"]
    assert differences(True, 1) == ["$: expected True, got 1"]
    assert differences(float("nan"), float("nan")) == []
    assert len(differences(list(range(20)), [i + 1 for i in range(20)], limit=3)) == 4


def test_the_parser_reads_ast_only():
    # a cell that would fail or have effects if it ran still parses
    calls = parse_example_cell("import os\nos.remove('x')\n1/0\nf(1)")
    assert [c.function for c in calls] == ["f"]
    assert isinstance(calls[0].args[0], ast.Constant)
