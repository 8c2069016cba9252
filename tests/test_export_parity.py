"""Export cannot drift from serve: the same requests, valid and invalid, get the same answers.

Each test notebook that nb2api can serve runs both ways in this process: as ``nb2api serve``
builds it (``create_app``) and as its export (``app.py`` imported as a module, with its own
vendored ``nbtypes``). schemathesis generates requests from the served OpenAPI document, valid
ones and invalid ones, a bounded number per operation; each request goes to both apps, and the
status and body must be equal once the random ``error_id`` is blanked.

Different by design, so left out of the comparison:
- response headers: nb2api adds a request id and its metrics, limits and fast path, which the
  export does not have (the platform it is deployed to provides them);
- answers nb2api gives from those extras (413 body limit, 503 queue full, 504 timeout): a case
  that gets one is not compared, and the routes that would give them are excluded below;
- routes whose answer names the machine (a worker thread's name, a process id) or that run for as
  long as the request says;
- tables as Arrow and Parquet in request bodies: the export reads JSON (and uploaded files)
  only, so those media types and the requests that send them are not compared (answers are: the
  export answers tables as JSON, Arrow or Parquet as serve does).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from columnar_helpers import COLUMNAR, without_columnar
from conftest import NOTEBOOKS, code, openapi_operations
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from jobs_helpers import without_jobs
from schemathesis import GenerationMode
from test_export import import_exported

import nb2api
from nb2api.export import export_notebook
from nb2api.load import load_notebook

EXAMPLES_PER_MODE = 6  # per operation, for valid and for invalid requests each
MIN_NOTEBOOKS = 18  # notebooks compared; fewer means the list below lost some
# Fixtures of load errors, by name: nb2api refuses to serve them by design.
_CANNOT_SERVE = ("err_", "types_err_", "jupyter_broken")
PARITY_NOTEBOOKS = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")
                          if not p.stem.startswith(_CANNOT_SERVE))

EXCLUDED = {
    ("ops_limits", "slow"): "sleeps as long as asked; serve answers 504 past its timeout",
    ("ops_limits", "slow_async"): "sleeps as long as asked; serve answers 504 past its timeout",
    ("ops_limits", "hold"): "waits for another request; serve answers 503 past its limit",
    ("core_pool", "heavy"): "sleeps as long as asked and answers its worker thread's name",
    ("core_pool", "loop_thread"): "answers the event loop thread's name",
    ("ops_process", "where"): "answers process ids",
    ("ops_process", "spin"): "runs for as long as n says",
    ("ops_process", "spin_thread"): "runs for as long as n says",
}
_BY_DESIGN = (413, 503, 504)  # nb2api's own limits, which the export does not have
_ERROR_ID = re.compile(rb'"error_id":"[0-9a-f]{12}"')
# A statsmodels summary, in HTML, text or LaTeX, prints the date and time it was made: the two
# apps make theirs a second apart, and maybe either side of midnight.
_SUMMARY_CLOCK = re.compile(rb"\b(?:[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4}|\d\d:\d\d:\d\d)\b")


def _paths(openapi: dict) -> dict:
    """The document's operations, without the answers only nb2api's limits give, without its
    jobs (an export runs none), and without the Arrow and Parquet bodies only nb2api serve
    reads."""
    openapi = without_jobs(openapi)
    return {
        path: {method: without_columnar({**operation, "responses": {
            status: answer for status, answer in operation["responses"].items()
            if int(status) not in _BY_DESIGN}})
            for method, operation in operations.items()}
        for path, operations in openapi["paths"].items()
    }


def _seen(response) -> tuple[int, bytes]:
    content = _ERROR_ID.sub(b'"error_id":"-"', response.content)
    return response.status_code, _SUMMARY_CLOCK.sub(b"-", content)


def _both(path: Path, tmp_path: Path, name: str):
    """Test clients of ``path`` as nb2api serves it and as its export serves it."""
    loaded = load_notebook(path)
    served = nb2api.create_app(loaded)
    project = export_notebook(loaded, tmp_path / name)
    exported = getattr(import_exported(project, f"parity_{name}"), project.app_name)
    return served, exported


def _request(case) -> dict:
    """The case as keyword arguments of an httpx request."""
    kwargs = case.as_transport_kwargs()
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), bytes):
        kwargs["content"] = kwargs.pop("data")
    if not kwargs.get("files"):
        kwargs.pop("files", None)
    return kwargs


def _compare(operation, mode, ours, theirs, compared: Counter, left_out: Counter) -> None:
    """Send the same generated requests for ``operation`` to both apps."""

    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def same_answer(case):
        request = _request(case)
        if (request.get("headers") or {}).get("Content-Type", "").startswith(COLUMNAR):
            left_out["arrow/parquet body"] += 1  # read by nb2api serve only
            return
        expected = ours.request(**request)
        if expected.status_code in _BY_DESIGN:
            left_out[expected.status_code] += 1
            return
        got = theirs.request(**request)
        assert _seen(got) == _seen(expected), request
        compared[operation.label] += 1

    try:
        same_answer()
    except Unsatisfiable:
        # No invalid request exists for a route without parameters, or with only `Any` ones.
        if mode is not GenerationMode.NEGATIVE:
            raise


@pytest.mark.parametrize("name", PARITY_NOTEBOOKS)
def test_served_and_exported_apps_answer_alike(name, tmp_path, capsys):
    served, exported = _both(NOTEBOOKS / f"{name}.ipynb", tmp_path, name)
    answer_alike(name, served, exported, capsys)


def answer_alike(name: str, served, exported, capsys) -> None:
    """Generated requests, valid and invalid, to every route but the EXCLUDED get the same
    answers from both apps, whose OpenAPI documents agree."""
    compared: Counter[str] = Counter()
    left_out: Counter[int | str] = Counter()
    with TestClient(served, raise_server_exceptions=False) as ours, \
            TestClient(exported, raise_server_exceptions=False) as theirs:
        openapi = without_jobs(ours.get("/openapi.json").json())  # an export runs no jobs
        assert _paths(theirs.get("/openapi.json").json()) == _paths(openapi)
        assert theirs.get("/openapi.json").json()["components"] == openapi.get("components")
        included = [(route, operation) for route, operation in openapi_operations(served, name)
                    if (name, route) not in EXCLUDED
                    and not route.startswith("nb2api_")]  # the job endpoints
        for _, operation in included:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _compare(operation, mode, ours, theirs, compared, left_out)
    with capsys.disabled():
        print(f"\n{name}: {sum(compared.values())} requests compared over {len(compared)} "
              f"routes; left out by design: {dict(left_out) or 'none'}")
    assert len(compared) == len(included), "a route got no request compared"


def test_enough_notebooks_are_compared():
    """The parametrized test above cannot pass by comparing nothing: it covers every notebook
    but the load-error fixtures, and each of those tests compares every route it includes."""
    assert len(PARITY_NOTEBOOKS) >= MIN_NOTEBOOKS, PARITY_NOTEBOOKS
    assert all((NOTEBOOKS / f"{name}.ipynb").is_file() for name, _ in EXCLUDED)


def test_numpy_values_in_a_loosely_declared_result(make_notebook, tmp_path):
    """The drift that started this: ``-> dict`` holding an np.int64 was 200 under serve and a
    500 in the export, whose own encoder did not know numpy."""
    path = make_notebook(code(
        "import numpy as np\n\n\ndef f(x: float) -> dict:\n    return {'n': np.int64(3), 'x': x}",
        tags=["api"],
    ))
    served, exported = _both(path, tmp_path, "drift")
    with TestClient(served) as ours, TestClient(exported) as theirs:
        expected, got = ours.post("/f", json={"x": 1.5}), theirs.post("/f", json={"x": 1.5})
    assert (expected.status_code, expected.json()) == (200, {"n": 3, "x": 1.5})
    assert _seen(got) == _seen(expected)


def test_failures_answer_alike_long_messages_and_debug(make_notebook, tmp_path, monkeypatch):
    """The 500 body: the same detail, cut at the same length, and the traceback only in debug."""
    path = make_notebook(code(
        "def boom(n: int) -> int:\n    raise ValueError('x' * n)\n\n\n"
        "def wrong() -> int:\n    return 'not a number'",
        tags=["api"],
    ))
    served, exported = _both(path, tmp_path, "failures")
    with TestClient(served) as ours, TestClient(exported) as theirs:
        for request in ({"url": "/boom", "json": {"n": 1000}}, {"url": "/boom", "json": {"n": 0}},
                        {"url": "/wrong"}):
            expected, got = ours.post(**request), theirs.post(**request)
            assert expected.status_code == 500 and set(expected.json()) == {"detail", "error_id"}
            assert _seen(got) == _seen(expected)
        assert len(expected.json()["detail"]) < 300
        assert len(ours.post("/boom", json={"n": 1000}).json()["detail"]) == 300
    monkeypatch.setenv("DEBUG", "1")
    served = nb2api.create_app(path, debug=True)
    project = export_notebook(path, tmp_path / "debug")
    exported = getattr(import_exported(project, "parity_debug"), project.app_name)
    with TestClient(served) as ours, TestClient(exported) as theirs:
        expected, got = ours.post("/boom", json={"n": 3}), theirs.post("/boom", json={"n": 3})
    assert set(got.json()) == set(expected.json()) == {"detail", "error_id", "traceback"}
    assert got.json()["detail"] == expected.json()["detail"] == "boom() raised ValueError: xxx"
    assert got.json()["traceback"][-1] == expected.json()["traceback"][-1]


def test_exported_docs_use_only_local_assets(tmp_path):
    """/docs and /redoc work offline: every script, style and icon they load is served by the
    exported app itself, from the static/ folder next to app.py."""
    served, exported = _both(NOTEBOOKS / "core_docs.ipynb", tmp_path, "docs")
    with TestClient(exported) as theirs, TestClient(served) as ours:
        for page in ("/docs", "/redoc"):
            html = theirs.get(page)
            assert html.status_code == 200 and html.text == ours.get(page).text
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: *["']([^"']+)["']""",
                              html.text)
            urls = [a or b for a, b in urls]
            assets = [u for u in urls if u != "/openapi.json"]
            assert assets and all(u.startswith("/_nb2api/static/") for u in assets), urls
            for url in assets:
                asset = theirs.get(url)
                assert asset.status_code == 200 and asset.content, url
            assert "cdn" not in html.text.lower() and "googleapis" not in html.text


MARKED = '''#| api
#| route: GET /items/{key}
def get_item(
    key: Annotated[str, Path(min_length=2)],
    user_agent: Annotated[str, Header()],
    session: Annotated[str | None, Cookie()] = None,
    limit: Annotated[int, Query(ge=1)] = 10,
    x_raw: "Annotated[str, Header(alias='X-Raw', convert_underscores=False)]" = "",
    plain: int = 0,
):
    """One item.

    Args:
        user_agent: Who asks.
        limit: How many.
    """
    return {"key": key, "agent": user_agent, "session": session, "limit": limit, "raw": x_raw,
            "plain": plain}

def login(user: Annotated[str, Form(min_length=2)], remember: bool = False) -> dict:
    return {"user": user, "remember": remember}
'''


def test_fastapi_parameter_markers_export_alike(make_notebook, tmp_path):
    """Header(), Cookie(), Query(), Path() and Form() parameters: the export takes them from
    where serve takes them, with the marker's options and the docstring's descriptions."""
    from test_fastapi_params import CONTACT_ROUTES, CONTACTS, IMPORTS

    path = make_notebook(IMPORTS, CONTACTS, CONTACT_ROUTES, MARKED)
    served, exported = _both(path, tmp_path, "markers")
    with TestClient(served) as ours, TestClient(exported) as theirs:
        openapi = without_jobs(ours.get("/openapi.json").json())
        assert _paths(theirs.get("/openapi.json").json()) == _paths(openapi)
        assert theirs.get("/openapi.json").json()["components"] == openapi["components"]
        requests = [
            {"method": "POST", "url": "/contacts", "data": {"name": "Ada", "phone": "555"}},
            {"method": "POST", "url": "/contacts", "data": {"name": "Alan"}},
            {"method": "POST", "url": "/contacts", "data": {"phone": "1"}},
            {"method": "GET", "url": "/contacts/1"},
            {"method": "GET", "url": "/contacts/1", "headers": {"If-None-Match": '"old"'}},
            {"method": "GET", "url": "/contacts", "params": {"name-prefix": "Al"}},
            {"method": "GET", "url": "/contacts", "headers": {"Accept": "text/csv"}},
            {"method": "PUT", "url": "/contacts/2", "json": {"contact": {"name": "Alan T"}}},
            {"method": "DELETE", "url": "/contacts/1"},
            {"method": "GET", "url": "/contacts/1"},
            {"method": "GET", "url": "/items/ab?limit=3&plain=1",
             "headers": {"User-Agent": "me", "X-Raw": "r", "Cookie": "session=s1"}},
            {"method": "GET", "url": "/items/ab?limit=0"},
            {"method": "GET", "url": "/items/a"},
            {"method": "POST", "url": "/login", "data": {"user": "ada", "remember": "true"}},
            {"method": "POST", "url": "/login", "data": {"user": "a"}},
        ]
        for request in requests:
            expected, got = ours.request(**request), theirs.request(**request)
            assert (got.status_code, got.headers.get("content-type"), got.content) == (
                expected.status_code, expected.headers.get("content-type"), expected.content
            ), request
        etag = ours.get("/contacts/2").headers["etag"]
        assert theirs.get("/contacts/2", headers={"If-None-Match": etag}).status_code == 304
    parameters = openapi["paths"]["/items/{key}"]["get"]["parameters"]
    assert {p["name"]: p["in"] for p in parameters} == {
        "key": "path", "user-agent": "header", "session": "cookie", "limit": "query",
        "X-Raw": "header", "plain": "query"}
    assert "Who asks." in str(parameters)
