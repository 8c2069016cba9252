"""``nb2api test``: the examples replayed through the whole app, compared with direct calls."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import nbformat
import pytest
from conftest import code
from typer.testing import CliRunner

from nb2api.cli import app as cli
from nb2api.contract import run_contract
from nb2api.settings import Settings

SETUP = code("#| setup\nCOEF = 3.0\nCALLS = [0]")
API = code(
    "#| api\n"
    "def predict(area: float, rooms: int = 1, city: str = 'paris') -> dict:\n"
    "    return {'price': area * COEF + rooms, 'city': city}\n"
    "\n"
    "def spelled(x: float) -> str:\n"
    "    return repr(x)  # 3 called directly, 3.0 once validated as a float\n"
    "\n"
    "def drifting(x: float) -> float:\n"
    "    CALLS[0] += 1\n"
    "    return x * (1 + CALLS[0] * 1e-12)\n"
    "\n"
    "#| route: GET /double/{x}\n"
    "async def double(x: int, times: int = 2) -> int:\n"
    "    return x * times\n"
)


def _result(execution_count: int, text: str):
    return nbformat.v4.new_output("execute_result", data={"text/plain": text},
                                  execution_count=execution_count)


def _verdict(out: str, name: str) -> list[str]:
    """The status, method, path and name of ``name``'s line in ``nb2api test``'s output."""
    for line in out.splitlines():
        words = line.split()
        if words[3:4] == [name]:
            return words[:4]
    raise AssertionError(f"no line for {name} in:\n{out}")


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["test", *map(str, args)])


def test_every_example_passes_through_the_whole_app(make_notebook):
    path = make_notebook(SETUP, API, code(
        "#| example\nparis_flat = predict(80.0, 3, 'paris')\npredict(area=10)\n"
        "drifting(2.0)\ndouble(4, times=3)"))
    result = _invoke(path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert lines[0].split()[:4] == ["pass", "POST", "/predict", "paris_flat"]
    assert lines[0].endswith(" ms")
    assert lines[3].split()[:4] == ["pass", "GET", "/double/{x}", "double"]
    assert lines[-1].startswith("4 passed, 0 failed")


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_mismatch_fails_with_a_short_diff_and_exit_1(make_notebook, fast_path):
    path = make_notebook(SETUP, API, code("#| example\nok = predict(1.0)\nthree = spelled(3)"))
    report = run_contract(path, Settings(fast_path=fast_path))
    assert [(o.example.name, o.status) for o in report.outcomes] == [("ok", "pass"),
                                                                   ("three", "fail")]
    assert report.outcomes[1].diff == ("$: direct call '3', HTTP '3.0'",)
    assert report.exit_code == 1
    result = _invoke(path)
    assert result.exit_code == 1
    assert _verdict(result.stdout, "three") == ["fail", "POST", "/spelled", "three"]
    assert "    $: direct call '3', HTTP '3.0'" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("1 passed, 1 failed")


def test_floats_compare_with_rtol(make_notebook):
    path = make_notebook(SETUP, API, code("#| example\ndrifting(2.0)"))
    assert _invoke(path).exit_code == 0  # differ by 1e-12, within the default 1e-9
    strict = _invoke(path, "--rtol", "1e-15")
    assert strict.exit_code == 1
    assert "$: direct call" in strict.stdout


def test_junit_xml_is_valid_and_names_each_example(make_notebook, tmp_path):
    path = make_notebook(SETUP, API, code("#| example\nok = predict(1.0)\nthree = spelled(3)"))
    junit = tmp_path / "report.xml"
    result = _invoke(path, "--junit", junit)
    assert result.exit_code == 1
    root = ElementTree.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["ok"].get("classname") == "POST /predict" and cases["ok"].find("failure") is None
    failure = cases["three"].find("failure")
    assert "direct call '3', HTTP '3.0'" in failure.text


def test_a_notebook_that_cannot_be_served_exits_2(make_notebook):
    broken = make_notebook(code("#| setup\nraise ValueError('no model')"), API)
    result = _invoke(broken)
    assert result.exit_code == 2
    assert "no model" in result.output and "Traceback" not in result.output
    unfit = make_notebook(SETUP, API, code("#| example\npredict('big')"), name="unfit.ipynb")
    result = _invoke(unfit)
    assert result.exit_code == 2
    assert "example does not fit POST /predict: area: Input should be a valid number" in \
        result.output


def test_the_token_is_sent_through_the_auth_middleware(make_notebook, monkeypatch):
    path = make_notebook(SETUP, API, code("#| example\npredict(1.0)"))
    monkeypatch.setenv("NB2API_TOKEN", "s3cret-token")
    assert _invoke(path).exit_code == 0


# --- against the saved outputs --------------------------------------------------------------


def _drift_notebook(make_notebook, coefficient: str):
    """A notebook whose example outputs were saved when COEF was 3.0."""
    return make_notebook(
        code(f"#| setup\nCOEF = {coefficient}\nCALLS = [0]"), API,
        code("#| example\nparis_flat = predict(80.0, 3, 'paris')\nparis_flat",
             outputs=[_result(3, "{'price': 243.0, 'city': 'paris'}")]),
        code("#| example\npredict(10.0)", outputs=[_result(4, "{'price': 31.0, 'city': 'paris'}")]),
        code("#| example\ndouble(4)"),  # no saved output
    )


def test_against_saved_passes_when_the_notebook_is_as_it_ran(make_notebook):
    result = _invoke(_drift_notebook(make_notebook, "3.0"), "--against-saved")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pass") and lines[1].startswith("pass")
    assert lines[2].startswith("skipped") and "no saved output" in lines[2]
    assert lines[-1].startswith("2 passed, 0 failed, 1 skipped")


def test_drift_a_changed_setup_coefficient_fails_against_saved_only(make_notebook):
    path = _drift_notebook(make_notebook, "3.5")  # changed, never run again
    plain = _invoke(path)
    assert plain.exit_code == 0, plain.output
    drift = _invoke(path, "--against-saved")
    assert drift.exit_code == 1
    out = drift.stdout
    assert _verdict(out, "paris_flat") == ["fail", "POST", "/predict", "paris_flat"]
    assert "differs from the output saved in the notebook:" in out
    assert "$.price: saved 243.0, now 283.0" in out
    assert "$.price: saved 31.0, now 36.0" in out
    assert out.splitlines()[-1].startswith("0 passed, 2 failed, 1 skipped")


def test_against_saved_reads_json_display_and_numpy_reprs_and_skips_the_rest(make_notebook):
    display = nbformat.v4.new_output("display_data", data={"text/plain": "np.float64(12.0)"})
    path = make_notebook(
        SETUP, API,
        code("#| example\ndouble(3, times=4)",
             outputs=[nbformat.v4.new_output("execute_result", execution_count=1, data={
                 "text/plain": "'not this'", "application/json": 12})]),
        code("#| example\nd = double(6)\ndisplay(d)", outputs=[display]),
        code("#| example\ndouble(1)", outputs=[_result(2, "<object at 0x7f>")]),
    )
    report = run_contract(path, against_saved=True)
    assert [o.status for o in report.outcomes] == ["pass", "pass", "skipped"]
    assert "not JSON or a Python literal" in report.outcomes[2].note


def test_an_example_whose_function_fails_is_a_failure_not_a_crash(make_notebook, caplog):
    path = make_notebook(SETUP, code(
        "#| api\nfrom fastapi import HTTPException\n\n"
        "def refuse(x: int) -> int:\n    raise HTTPException(status_code=400, detail='no')\n\n"
        "def crash(x: int) -> int:\n    return 1 // x\n"),
        code("#| example\nrefuse(1)\ncrash(0)"))
    result = _invoke(path)
    assert result.exit_code == 1, result.output
    assert _verdict(result.stdout, "refuse")[0] == "fail"
    assert "the example fails: 400" in result.stdout
    assert "the example fails: 500" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("0 passed, 2 failed")


def test_header_and_list_query_parameters_are_replayed(make_notebook):
    path = make_notebook(code(
        "#| api\nfrom typing import Annotated\nfrom fastapi import Header\n\n"
        "#| route: GET /tagged/{item_id}\n"
        "def tagged(item_id: int, tags: list[str], x_tenant: Annotated[str, Header()]) -> dict:\n"
        "    return {'id': item_id, 'tags': tags, 'tenant': x_tenant}\n"),
        code("#| example\ntagged(7, ['a', 'b c'], x_tenant='acme')"))
    report = run_contract(path)
    [outcome] = report.outcomes
    assert outcome.example.headers == {"x-tenant": "acme"}
    assert outcome.example.query == {"tags": ["a", "b c"]}
    assert outcome.status == "pass", outcome.diff
