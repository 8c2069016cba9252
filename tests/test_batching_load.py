"""``#| batch`` at load: the directive's value, the signature rules, ``check`` and ``export``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nb2api.errors import DirectiveError, NotebookError, SignatureError
from nb2api.export import export_notebook
from nb2api.load import load_notebook, parse_batch
from nb2api.routes import build_routes

SETUP = "#| setup\nimport numpy as np\nimport pandas as pd"


def specs(path):
    return {spec.name: spec for spec in build_routes(load_notebook(path))}


def test_batch_directive_gives_the_route_its_settings(make_notebook):
    path = make_notebook(SETUP, (
        "#| api\n"
        "#| batch: max_size=32, max_wait_ms=2.5\n"
        "def predict(X: pd.DataFrame, threshold: float = 0.5) -> pd.Series:\n"
        "    return X.sum(axis=1) > threshold"
    ), (
        "#| api\n"
        "#| batch\n"
        "def scale(a: np.ndarray, b: list[float], factor: int) -> np.ndarray:\n"
        "    return a * factor"
    ), "#| api\ndef plain(x: list[int]) -> list[int]:\n    return x")
    routes = specs(path)
    predict = routes["predict"].batch
    assert (predict.max_size, predict.max_wait) == (32, 0.0025)
    assert predict.batched == (("X", "frame"),) and predict.grouped == ("threshold",)
    scale = routes["scale"].batch
    assert (scale.max_size, scale.max_wait) == (64, 0.005)  # a bare '#| batch': the defaults
    assert scale.batched == (("a", "array"), ("b", "list")) and scale.grouped == ("factor",)
    assert routes["plain"].batch is None
    # the request and response schemas stay the function's own
    assert set(routes["predict"].body_model.model_fields) == {"X", "threshold"}


@pytest.mark.parametrize(("source", "reason"), [
    ("def f(x: int) -> list[int]:\n    return [x]", "needs a parameter to merge"),
    ("def f(x: list[int], options: dict) -> list[int]:\n    return x",
     "parameter 'options: dict' is neither merged"),
    ("def f(x: list[int]) -> int:\n    return len(x)", "needs a result with one item per input"),
    ("def f(x: list[int]) -> dict[str, int]:\n    return {}", "returns dict[str, int]"),
    ("async def f(x: list[int]) -> list[int]:\n    return x", "needs a plain 'def' function"),
    ("def f(x: list[int] | None) -> list[int]:\n    return x", "needs a parameter to merge"),
])
def test_a_function_that_cannot_be_batched_is_a_load_error_naming_the_cell(
        make_notebook, source, reason):
    path = make_notebook(SETUP, "#| api\n#| batch: max_size=8\n" + source)
    with pytest.raises(SignatureError) as caught:
        specs(path)
    error = caught.value
    assert reason in error.reason and "'#| batch: max_size=8'" in error.reason
    assert error.cell.index == 2 and error.function == "f"
    assert str(error).startswith(f"{path}, cell 2 (")


@pytest.mark.parametrize("value", ["max_size=0", "max_size=many", "max_wait_ms=-1",
                                   "size=3", "max_size", "max_wait_ms=nan"])
def test_a_batch_value_that_cannot_be_read_is_a_load_error(make_notebook, value):
    path = make_notebook(f"#| api\n#| batch: {value}\ndef f(x: list[int]) -> list[int]:\n"
                         "    return x")
    with pytest.raises(DirectiveError) as caught:
        load_notebook(path)
    assert f"'#| batch: {value}'" in caught.value.reason
    assert caught.value.cell.index == 1 and caught.value.line == 2


@given(st.integers(1, 10_000), st.floats(0, 60_000, allow_nan=False),
       st.sampled_from(["max_size={s}, max_wait_ms={w}", "max_wait_ms={w},max_size={s}",
                        " MAX-SIZE = {s} , max_wait_ms={w} ,"]))
def test_parse_batch_reads_what_it_is_given(size, wait, template):
    assert parse_batch(template.format(s=size, w=repr(wait))) == (size, wait)


@given(st.text(max_size=30))
def test_parse_batch_answers_any_text_with_settings_or_a_reason(text):
    try:
        size, wait = parse_batch(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert size >= 1 and 0 <= wait <= 60_000


def test_check_lists_batched_routes_with_their_settings(make_notebook):
    path = make_notebook(SETUP, (
        "#| api\n#| batch: max_size=16, max_wait_ms=3\n"
        "def predict(X: pd.DataFrame, model: str = 'a') -> list[float]:\n"
        "    return [0.0] * len(X)"
    ), "#| api\ndef other(x: list[int]) -> list[int]:\n    return x")
    result = subprocess.run([sys.executable, "-m", "nb2api", "check", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "POST /predict" in line)
    assert lines[at + 1].split() == ["batch:", "max_size=16,", "max_wait_ms=3;", "merges", "X;",
                                     "groups", "by", "model"]
    assert not any("batch:" in line for line in lines[at + 2:])


def test_export_refuses_batching_with_a_clear_message(make_notebook, tmp_path):
    path = make_notebook(SETUP, (
        "#| api\n#| batch\ndef predict(X: np.ndarray) -> np.ndarray:\n    return X"
    ))
    with pytest.raises(NotebookError) as caught:
        export_notebook(path, tmp_path / "out")
    assert "predict() has '#| batch'" in caught.value.reason
    assert "remove the '#| batch' line" in caught.value.reason
    assert caught.value.cell.index == 2
    assert not (tmp_path / "out" / "app.py").exists()
