import json
import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES, NOTEBOOKS, md


def nb2api(*args):
    return subprocess.run([sys.executable, "-m", "nb2api", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


SETUP_RAISES = ("#| setup\nimport math",
                '#| setup\nmodel_path = "model.pkl"\ntable = {"a": 1}\nvalue = table["missing"]')


@pytest.mark.parametrize(("cells", "expected"), [
    (["def f(x: int) -> int:\n    return x"], "no marked cells"),
    ([md("Heading"), "#| setup\nimport math", "#| api\ndef f(x: int) -> int:\n    return x +"],
     'cell 3 ("def f(x: int) -> int:"), line 3: syntax error'),
    (SETUP_RAISES, "cell 2 (\"model_path = \"model.pkl\"\"), line 4: setup cell raised KeyError"),
    (["#| api\nclass Model:\n    \"\"\"A plain class: pydantic cannot make a schema for it.\"\"\"\n\n"
      "    def __init__(self, weights):\n        self.weights = weights\n\n\n"
      "def score(model: Model) -> float:\n    return 0.0"],
     'cell 1 ("class Model:"), line 9: score() parameter \'model: Model\''),
    (["#| api\ndef total(*numbers: float) -> float:\n    return sum(numbers)"],
     "cell 1 (\"def total(*numbers: float) -> float:\"), line 2: total() must not have *numbers"),
    (["#| api\ndef configure(name: str, **options: str) -> dict:\n    return options"],
     "configure() must not have **options"),
    (["#| api\n#| route: GET /items/{key}\ndef first(key: str) -> str:\n    return key",
      "#| api\n#| route: GET /items/{name}\ndef second(name: str) -> str:\n    return name"],
     "cell 2 (\"def second(name: str) -> str:\"), line 3: second() and first()"),
    (["#| api\nfrom __future__ import annotations\n\n\ndef predict(sample: Sample) -> float:\n    return 0.0"],
     "cell 1 (\"from __future__ import annotations\"), line 5: name 'Sample' is not defined"),
    (["#| setup\nimport math", "#| api\ndef predict(sample: Sample) -> float:\n    return 0.0"],
     "cell 2 (\"def predict(sample: Sample) -> float:\"), line 2: name 'Sample' is not defined"),
    (["#| api\n#| route: GET /users/{user_id}\ndef user(name: str) -> str:\n    return name"],
     "has '{user_id}' but user() has no parameter 'user_id'"),
])
def test_unservable_notebook_gives_one_line_and_exit_2(make_notebook, cells, expected):
    assert_one_line_error(nb2api("check", make_notebook(*cells)), expected)


# Files that are not notebooks at all: real files are the point here.
@pytest.mark.parametrize(("name", "expected"), [
    ("err_invalid_json", "invalid JSON"),
    ("err_not_notebook", "not a Jupyter notebook"),
])
def test_a_file_that_is_not_a_notebook_gives_one_line_and_exit_2(name, expected):
    assert_one_line_error(nb2api("check", NOTEBOOKS / f"{name}.ipynb"), expected)


@pytest.mark.parametrize("command", ["serve", "openapi"])
def test_serve_and_openapi_refuse_the_same_way(make_notebook, command):
    result = nb2api(command, make_notebook(*SETUP_RAISES))
    assert_one_line_error(result, "cell 2")


def assert_one_line_error(result, expected):
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_missing_file():
    result = nb2api("check", NOTEBOOKS / "does_not_exist.ipynb")
    assert result.returncode == 2 and "no such notebook file" in result.stderr


def test_check_lists_routes_with_signatures():
    result = nb2api("check", EXAMPLES / "quickstart.ipynb")
    assert result.returncode == 0, result.stderr
    assert "POST /predict" in result.stdout
    assert "predict(flower: Flower) -> Prediction" in result.stdout
    assert "GET /species/{name}" in result.stdout


def test_check_warns_about_unannotated_parameters():
    result = nb2api("check", NOTEBOOKS / "core_types.ipynb")
    assert result.returncode == 0
    assert "anything() parameter 'payload' has no annotation" in result.stderr


def test_openapi_prints_the_document():
    result = nb2api("openapi", EXAMPLES / "quickstart.ipynb")
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert set(spec["paths"]) == {"/predict", "/species/{name}", "/species", "/jobs",
                                  "/jobs/{job_id}", "/jobs/{job_id}/result",
                                  "/jobs/{job_id}/events"}
    assert "PredictRequest" in spec["components"]["schemas"]


def test_serve_help_lists_the_options():
    result = nb2api("serve", "--help")
    for option in ["--host", "--port", "--reload", "--workers", "--max-workers", "--debug",
                   "--log-level"]:
        assert option in result.stdout


@pytest.mark.parametrize(("cells", "expected"), [
    (["#| setup\nx = 1\nreturn x", "#| api\ndef f() -> int:\n    return 1"],
     "line 3: syntax error: 'return' outside function"),
    (["#| setup\nyield 1", "#| api\ndef f() -> int:\n    return 1"],
     "line 2: syntax error: 'yield' outside function"),
    (["#| setup\nx = 1"], "no route functions: no cell is marked api"),
    (["#| api\ndef _private() -> int:\n    return 1"], "defines no public function"),
])
def test_cells_that_cannot_run_exit_2_with_one_line(make_notebook, cells, expected):
    path = make_notebook(*cells)
    for command in ("check", "serve"):
        assert_one_line_error(nb2api(command, path), expected)


def test_left_out_lines_warn_even_when_the_load_fails(make_notebook):
    result = nb2api("check", make_notebook("#| setup\nfiles = !ls\nfiles[0]",
                                           "#| api\ndef f() -> int:\n    return 1"))
    assert_one_line_error(result, "assigned it with an IPython shell escape")
    assert "warning: " in result.stderr and "left out 'files = !ls'" in result.stderr
    assert "WARNING" not in result.stderr


def test_check_counts_in_words(make_notebook):
    result = nb2api("check", make_notebook("#| api\ndef f() -> int:\n    return 1"))
    assert result.returncode == 0, result.stderr
    assert ": 1 route, 1 marked cell run in" in result.stdout


def test_openapi_writes_only_json_to_stdout_or_to_a_file(make_notebook, tmp_path):
    path = make_notebook("#| setup\nprint('loading the model')",
                         "#| api\ndef f() -> int:\n    return 1")
    result = nb2api("openapi", path)
    assert result.returncode == 0, result.stderr
    notebook_paths = {"/f", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result",
                      "/jobs/{job_id}/events"}
    assert set(json.loads(result.stdout)["paths"]) == notebook_paths
    assert "loading the model" in result.stderr
    result = nb2api("openapi", path, "-o", tmp_path / "openapi.json")
    assert result.returncode == 0 and result.stdout == ""
    assert set(json.loads((tmp_path / "openapi.json").read_text())["paths"]) == notebook_paths


def test_version_and_argument_help():
    from nb2api import __version__

    assert nb2api("--version").stdout.strip() == f"nb2api {__version__}"
    shown = nb2api("openapi", "--help").stdout
    assert "to serve" not in shown and "whose OpenAPI" in shown


@pytest.mark.parametrize(("args", "env", "expected"), [
    ([], {"NB2API_TOKEN": ""}, "the token is empty"),
    (["--token", ""], {}, "the token is empty"),
    (["--token", "naïve☃"], {}, "outside ASCII"),
    (["--token", "café"], {}, "outside ASCII"),
    (["--token", "two words"], {}, "a space or a control character"),
    (["--token", "bell\a"], {}, "a space or a control character"),
    (["--token", "t", "--token-file", "x"], {}, "not both"),
    (["--token-file", "no-such-file"], {}, "cannot read the token file"),
])
def test_a_token_that_cannot_work_stops_serve_with_one_line(make_notebook, args, env, expected):
    notebook = make_notebook("#| api\ndef ping() -> str:\n    return 'pong'")
    result = subprocess.run([sys.executable, "-m", "nb2api", "serve", str(notebook), *args],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert_one_line_error(result, expected)


@pytest.mark.parametrize("command", ["check", "openapi"])
def test_a_bad_variable_stops_check_and_openapi_with_one_line(make_notebook, command):
    notebook = make_notebook("#| api\ndef ping() -> str:\n    return 'pong'")
    result = subprocess.run([sys.executable, "-m", "nb2api", command, str(notebook)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NB2API_TOKEN": ""})
    assert_one_line_error(result, "NB2API_TOKEN: the token is empty")
