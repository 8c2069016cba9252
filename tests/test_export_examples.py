"""``nb2api export`` carries the contract: tests/test_examples.py replays the examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import code
from export_helpers import RUN_TESTS

from nb2api.export import export_notebook


def _pytest(folder) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", RUN_TESTS], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=240)


def test_the_exported_project_replays_the_examples_with_pytest(make_notebook, tmp_path):
    path = make_notebook(
        code("#| setup\nimport pandas as pd\nCOEF = 3.0"),
        code("#| api\n"
             "def predict(area: float, rooms: int = 1) -> dict:\n"
             "    return {'price': area * COEF + rooms}\n\n"
             "#| route: GET /double/{x}\n"
             "def double(x: int, times: int = 2) -> int:\n"
             "    return x * times\n\n"
             "def total(df: pd.DataFrame) -> float:\n"
             "    return float(df['a'].sum()) / 3\n\n"
             "#| example: false\n"
             "def side_effect(x: int) -> int:\n"
             "    return x\n"),
        code("#| example\nparis = predict(80.0, 3)\ndouble(4, times=3)\n"
             "total(pd.DataFrame({'a': [1, 2]}))\nside_effect(1)"),
    )
    project = export_notebook(path, tmp_path / "project")
    tests = project.folder / "tests"
    assert {"test_examples.py", "examples.json"} <= {p.name for p in tests.iterdir()}
    readme = (project.folder / "README.md").read_text()
    assert "## Test it" in readme and "python -m pytest tests" in readme
    cases = json.loads((tests / "examples.json").read_text())["examples"]
    assert [(c["name"], c["method"], c["path"], c["answered"]) for c in cases] == [
        ("paris", "POST", "/predict", True), ("double cell 3 #1", "GET", "/double/4", True),
        ("total cell 3 #1", "POST", "/total", True), ("side_effect cell 3 #1", "POST",
                                                      "/side_effect", False)]
    assert cases[0]["expected"] == {"price": 243.0}

    result = _pytest(project.folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout

    # The replay fails when an answer differs from the one recorded.
    data = json.loads((tests / "examples.json").read_text())
    data["examples"][0]["expected"] = {"price": 244.0}
    (tests / "examples.json").write_text(json.dumps(data))
    result = _pytest(project.folder)
    assert result.returncode == 1
    assert "$.price: expected 244.0, got 243.0" in result.stdout


def test_a_notebook_without_examples_exports_no_tests(make_notebook, tmp_path):
    path = make_notebook(code("#| api\ndef f(x: int) -> int:\n    return x"))
    project = export_notebook(path, tmp_path / "project")
    assert not (project.folder / "tests").exists()
    assert "## Test it" not in (project.folder / "README.md").read_text()
