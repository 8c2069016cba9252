"""Example cells: the notebook's own calls become named examples in /docs, checked at load."""

from __future__ import annotations

import logging

import pytest
from conftest import code
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from nb2api import create_app, load_notebook
from nb2api.cli import app as cli
from nb2api.errors import CellSyntaxError, DirectiveError, ExampleError

SETUP = code("#| setup\nimport numpy as np\nimport pandas as pd\nfrom dataclasses import dataclass\n"
             "from pydantic import BaseModel, Field\nfrom typing import Annotated\n"
             "CALLS = []\nCOEF = 3.0")
API = code(
    "#| api\n"
    "class House(BaseModel):\n"
    "    area: float\n"
    "\n"
    "@dataclass\n"
    "class Point:\n"
    "    x: float\n"
    "    y: float\n"
    "\n"
    "def predict(area: Annotated[float, Field(gt=0)], rooms: int = 1, city: str = 'paris') -> dict:\n"
    "    CALLS.append('predict')\n"
    "    return {'price': area * COEF + rooms, 'city': city}\n"
    "\n"
    "#| route: GET /double/{x}\n"
    "def double(x: int, times: int = 2) -> int:\n"
    "    return x * times\n"
    "\n"
    "def house(h: House, p: Point) -> float:\n"
    "    return h.area + p.x + p.y\n"
    "\n"
    "def total(df: pd.DataFrame, weights: np.ndarray) -> float:\n"
    "    return float(df['a'].sum() + weights.sum())\n"
)


def _examples(path):
    app = create_app(path, examples=True)
    return app, {e.name: e for e in app.state.examples}


def test_example_cells_by_tag_or_directive_never_run_and_their_calls_bind_as_python_does(
        make_notebook, tmp_path):
    path = make_notebook(
        SETUP, API,
        code("open('ran-1', 'w')\nparis_flat = predict(80.0, 3, 'paris')\npredict(area=10)",
             tags=["example"]),
        code("# | example\nopen('ran-2', 'w')\ndouble(4, times=3)\nprint('not a route')"),
    )
    app, examples = _examples(path)
    assert not (tmp_path / "ran-1").exists() and not (tmp_path / "ran-2").exists()
    assert list(examples) == ["paris_flat", "predict cell 3 #2", "double cell 4 #1"]
    # positional and keyword arguments by name; defaults are the route's, so not sent
    assert examples["paris_flat"].body == {"area": 80.0, "rooms": 3, "city": "paris"}
    assert examples["predict cell 3 #2"].body == {"area": 10}
    assert examples["double cell 4 #1"].path == "/double/4"
    assert examples["double cell 4 #1"].query == {"times": 3}
    assert examples["double cell 4 #1"].body is None


def test_literal_arguments_include_the_notebooks_models_dataclasses_frames_and_arrays(
        make_notebook):
    path = make_notebook(SETUP, API, code(
        "#| example\n"
        "house(House(area=5), Point(1, y=2))\n"
        "total(pd.DataFrame({'a': [1, 2]}), np.array([0.5, -1.5]))\n"
        "double(-3)\n"))
    _, examples = _examples(path)
    assert examples["house cell 3 #1"].body == {"h": {"area": 5.0}, "p": {"x": 1, "y": 2}}
    assert examples["total cell 3 #1"].body == {"df": [{"a": 1}, {"a": 2}],
                                                 "weights": [0.5, -1.5]}
    assert examples["double cell 3 #1"].path == "/double/-3"


def test_a_call_that_is_not_literal_is_left_out_with_a_warning_naming_cell_and_line(
        make_notebook):
    path = make_notebook(SETUP, API, code(
        "#| example\n"
        "area = 80.0\n"
        "predict(area)\n"
        "predict(float('3'))\n"
        "predict(1 + 2)\n"
        "predict(*[1])\n"
        "ok = predict(2.0)\n"))
    loaded = load_notebook(path)
    assert [e.name for e in loaded.examples] == ["ok"]
    skipped = [w for w in loaded.warnings if "is not an example" in w]
    assert len(skipped) == 4
    assert 'cell 3 ("area = 80.0"), line 3: predict() is not an example: \'area\' is a ' \
           'variable' in skipped[0]
    assert "line 4" in skipped[1] and "'float(...)' is a call" in skipped[1]
    assert "line 5" in skipped[2] and "an operation" in skipped[2]
    assert "line 6" in skipped[3]


def test_names_come_from_the_variable_or_function_cell_and_count(make_notebook):
    path = make_notebook(SETUP, API,
                         code("#| example\nbig = predict(200.0)\npredict(1.0)\npredict(2.0)"),
                         code("#| example\nbig = predict(300.0)\ndouble(1)"))
    loaded = load_notebook(path)
    assert [e.name for e in loaded.examples] == [
        "big", "predict cell 3 #2", "predict cell 3 #3", "big #2", "double cell 4 #1"]


def test_examples_show_in_openapi_with_their_answers_for_body_query_and_path(make_notebook):
    path = make_notebook(SETUP, API, code(
        "#| example\nparis_flat = predict(80.0, 3, 'paris')\ndouble(4, times=3)"))
    app = create_app(path)
    document = TestClient(app).get("/openapi.json").json()
    post = document["paths"]["/predict"]["post"]
    request = post["requestBody"]["content"]["application/json"]["examples"]
    assert request == {"paris_flat": {"summary": "predict(80.0, 3, 'paris')",
                                      "value": {"area": 80.0, "rooms": 3, "city": "paris"}}}
    answer = post["responses"]["200"]["content"]["application/json"]["examples"]
    assert answer["paris_flat"]["value"] == {"price": 243.0, "city": "paris"}
    get = document["paths"]["/double/{x}"]["get"]
    parameters = {p["name"]: p["examples"] for p in get["parameters"]}
    assert parameters == {"x": {"double cell 3 #1": {"summary": "double(4, times=3)",
                                                      "value": 4}},
                          "times": {"double cell 3 #1": {"summary": "double(4, times=3)",
                                                          "value": 3}}}
    assert get["responses"]["200"]["content"]["application/json"]["examples"][
        "double cell 3 #1"]["value"] == 12


def test_no_examples_and_example_false_show_requests_without_calling(make_notebook):
    api = API.source.replace("def predict(", "#| example: false\ndef predict(")
    path = make_notebook(SETUP, code(api), code(
        "#| example\nparis = predict(80.0)\ndouble(4)"))
    app = create_app(path)
    assert app.state.notebook.module.CALLS == []  # never called at load
    post = app.openapi()["paths"]["/predict"]["post"]
    assert "paris" in post["requestBody"]["content"]["application/json"]["examples"]
    assert "examples" not in post["responses"]["200"]["content"]["application/json"]
    get = app.openapi()["paths"]["/double/{x}"]["get"]
    assert "examples" in get["responses"]["200"]["content"]["application/json"]

    quiet = create_app(path, examples=False).openapi()["paths"]["/double/{x}"]["get"]
    assert "examples" not in quiet["responses"]["200"]["content"]["application/json"]
    assert "examples" in quiet["parameters"][0]


def test_answering_at_load_stops_at_the_time_budget(make_notebook, caplog):
    # slow() waits for an event the test sets only after the budget ran out: no race with it
    api = API.source + "\nimport threading\nRELEASE = threading.Event()\n\n" \
                       "def slow(x: float) -> float:\n    RELEASE.wait(60)\n    return x\n"
    path = make_notebook(SETUP, code(api), code("#| example\nslow(1.0)\ndouble(4)"))
    with caplog.at_level(logging.WARNING, logger="nb2api"):
        app = create_app(path, examples_budget=0.05)
    app.state.notebook.module.RELEASE.set()
    assert any("budget" in r.getMessage() for r in caplog.records)
    get = app.openapi()["paths"]["/double/{x}"]["get"]
    assert "examples" not in get["responses"]["200"]["content"]["application/json"]
    assert "examples" in get["parameters"][0]


def test_an_example_that_does_not_fit_its_route_is_a_load_error_naming_cell_and_line(
        make_notebook):
    path = make_notebook(SETUP, API, code("#| example\npredict(-1)"))
    with pytest.raises(ExampleError) as caught:
        create_app(path)
    assert str(caught.value).endswith(
        'cell 3 ("predict(-1)"), line 2: example does not fit POST /predict: area: Input '
        "should be greater than 0")
    assert caught.value.parameter == "area" and caught.value.function == "predict"


@pytest.mark.parametrize(("call", "reason"), [
    ("predict()", "missing a required argument: 'area'"),
    ("predict(1.0, 2, 'x', 4)", "too many positional arguments"),
    ("double('four')", "x: Input should be a valid integer"),
    ("house(House(area=1), {'x': 'a', 'y': 1})", "p.x: Input should be a valid number"),
])
def test_examples_that_cannot_bind_or_validate_are_load_errors(make_notebook, call, reason):
    path = make_notebook(SETUP, API, code(f"#| example\n{call}"))
    with pytest.raises(ExampleError, match="example does not fit") as caught:
        create_app(path)
    assert reason in str(caught.value)


def test_check_exits_2_and_serve_refuses_on_an_example_that_does_not_fit(make_notebook):
    path = make_notebook(SETUP, API, code("#| example\npredict(-1)"))
    runner = CliRunner()
    for command in (["check", str(path)], ["serve", str(path), "--port", "0"]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 2, result.output
        assert "example does not fit POST /predict: area: Input should be greater than 0" in \
            result.output
        assert "Traceback" not in result.output


def test_example_marks_and_options_that_cannot_apply_are_errors(make_notebook, tmp_path):
    both = make_notebook(SETUP, code("#| api\n#| example\ndef f(x: int) -> int:\n    return x"),
                         name="both.ipynb")
    with pytest.raises(DirectiveError, match="cannot also be marked api"):
        load_notebook(both)
    value = make_notebook(SETUP, code("#| api\n#| example: maybe\ndef f(x: int) -> int:\n"
                                      "    return x"), name="value.ipynb")
    with pytest.raises(DirectiveError, match="must be 'false'"):
        load_notebook(value)
    broken = make_notebook(SETUP, API, code("#| example\npredict(1.0"), name="broken.ipynb")
    with pytest.raises(CellSyntaxError) as caught:
        load_notebook(broken)
    assert caught.value.cell.index == 3


def test_a_misplaced_example_mark_is_a_warning(make_notebook):
    path = make_notebook(SETUP, API, code("predict(1.0)\n#| example"))
    loaded = load_notebook(path)
    assert loaded.examples == ()
    assert any("'#| example' comes after code" in w for w in loaded.warnings)


def test_a_notebook_model_that_refuses_the_examples_values_is_a_load_error(make_notebook):
    api = API.source.replace("    area: float\n", "    area: Annotated[float, Field(gt=0)]\n")
    path = make_notebook(SETUP, code(api), code("#| example\nhouse(House(area=-5), Point(1, 2))"))
    with pytest.raises(ExampleError) as caught:
        create_app(path)
    assert str(caught.value).endswith(
        "line 2: example does not fit POST /house: House(...) raised ValidationError: area: "
        "Input should be greater than 0")


def test_an_example_that_raises_at_load_shows_its_request_only(make_notebook, caplog):
    api = API.source + "\ndef crash(x: int) -> int:\n    return 1 // x\n"
    path = make_notebook(SETUP, code(api), code("#| example\nzero = crash(0)\ndouble(2)"))
    with caplog.at_level(logging.WARNING, logger="nb2api"):
        app = create_app(path)
    assert any("example zero did not answer at load" in r.getMessage() for r in caplog.records)
    post = app.openapi()["paths"]["/crash"]["post"]
    assert "zero" in post["requestBody"]["content"]["application/json"]["examples"]
    assert "examples" not in post["responses"]["200"]["content"]["application/json"]
