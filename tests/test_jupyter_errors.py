"""The errors the API panel shows, read from a served notebook's JSON log lines."""

import json

from hypothesis import given
from hypothesis import strategies as st

from nb2api.jupyter.manager import RouteError, _error_cell

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/site-packages/nb2api/serve/pools.py", line 80, in run\n'
    "    return func(*args)\n"
    '  File "<pricing cell 5>", line 7, in quote\n'
    "    return _price(city) * 2\n"
    '  File "<pricing cell 4>", line 2, in _price\n'
    "    return PRICES[city]\n"
    "KeyError: 'oslo'"
)


def log_line(**fields):
    entry = {"time": "2026-11-30T22:00:00.000Z", "level": "error", "logger": "nb2api",
             "message": "quote() raised KeyError [error_id=abc]", "error_id": "abc",
             "route": "quote", "traceback": TRACEBACK, **fields}
    return json.dumps(entry)


def test_an_error_line_gives_the_innermost_notebook_frame():
    error = RouteError.from_log_line(log_line())
    assert error is not None
    assert (error.cell, error.line, error.message) == (4, 2, "KeyError: 'oslo'")
    assert error.error_id == "abc" and error.traceback == TRACEBACK


def test_an_error_outside_notebook_code_has_no_cell():
    error = RouteError.from_log_line(log_line(traceback="Traceback:\nMemoryError"))
    assert error is not None and (error.cell, error.line) == (None, None)


def test_other_lines_are_not_errors():
    assert RouteError.from_log_line(log_line(level="warning")) is None
    assert RouteError.from_log_line('{"level": "info", "message": "POST /quote 200"}') is None
    assert RouteError.from_log_line("12:00:01 ERROR quote() raised [error_id=x]") is None
    assert RouteError.from_log_line('{"error_id": ') is None
    assert RouteError.from_log_line(log_line(traceback=None)) is None


@given(st.text())
def test_any_line_is_read_without_raising(text):
    RouteError.from_log_line(text)
    RouteError.from_log_line("{" + text)
    _error_cell(text)


def test_the_cell_of_a_load_error():
    message = 'error: nb.ipynb, cell 2 ("def f(x: Foo) -> int:"), line 1: name \'Foo\' is not defined'
    assert _error_cell(message) == {"cell": 2, "line": 1}
    assert _error_cell('error: nb.ipynb, cell 3 ("import x"): No module named x') == {
        "cell": 3, "line": None}
    assert _error_cell("nb2api serve exited with code 1") is None
    assert _error_cell(None) is None
