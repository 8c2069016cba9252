"""Several notebooks in one app: prefixes, the combined document, versions, metrics, readiness,
tokens and the fast path under a prefix, and the arguments that name the notebooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from conftest import free_port, wait_until, wait_until_answers, write_notebook
from export_helpers import RUN_APP
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from jobs_helpers import JOB_PATHS, without_jobs

import nb2api
from nb2api.errors import DirectiveError, NotebookError
from nb2api.load import notebook_version, parse_targets, read_notebook
from nb2api.load.folder import _NAME, RESERVED_NAMES, name_for
from nb2api.serve.combined import combine

ADD = "#| api\ndef add(a: int, b: int) -> int:\n    return a + b"
PING = "#| api\ndef ping() -> str:\n    return 'pong'"
# Two notebooks that both define Sale, differently; Item is the same in both.
SALES = """#| setup
from pydantic import BaseModel

class Item(BaseModel):
    name: str

class Sale(BaseModel):
    {field}
    item: Item
"""
PREDICT = "#| api\ndef predict(sale: Sale) -> Item:\n    return sale.item"
PROBE = """#| api
import sys


async def answered_by() -> str:
    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals.get("__name__") == "fastapi.routing":
            return "fastapi"
        frame = frame.f_back
    return "fast path"


def add(a: int, b: int) -> int:
    return a + b
"""


def _client(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


# ---- prefixes, docs, readiness -------------------------------------------------------------


def test_a_folder_serves_each_marked_notebook_under_its_name(tmp_path):
    write_notebook(tmp_path, ADD, name="maths.ipynb")
    write_notebook(tmp_path, PING, name="Health Check.ipynb")
    write_notebook(tmp_path, "x = 1", name="scratch.ipynb")
    with _client(nb2api.create_app(tmp_path)) as client:
        assert client.post("/maths/add", json={"a": 2, "b": 3}).json() == 5
        assert client.post("/Health-Check/ping").json() == "pong"
        assert client.post("/add", json={"a": 2, "b": 3}).status_code == 404
        assert client.post("/scratch/add", json={}).status_code == 404
        own = client.get("/maths/openapi.json").json()
        assert routes_of(own) == ["/add"] and own["servers"] == [{"url": "/maths"}]
        assert 'href="/maths/_nb2api/static/' in client.get("/maths/docs").text
        assert client.get("/maths/_nb2api/static/swagger-ui/swagger-ui.css").status_code == 200
        docs = client.get("/maths", follow_redirects=False)
        assert (docs.status_code, docs.headers["location"]) == (307, "/maths/docs")
        assert "/openapi.json" in client.get("/docs").text
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert {n: e["status"] for n, e in ready.json()["notebooks"].items()} == {
            "maths": "ready", "Health-Check": "ready"}
        assert client.get("/healthz").json() == {"status": "ok"}


def test_a_list_and_named_prefixes(tmp_path):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    v2 = write_notebook(tmp_path / "models", PING, name="v2.ipynb")
    with _client(nb2api.create_app([a, f"pricing={v2}"])) as client:
        assert client.post("/a/add", json={"a": 1, "b": 1}).json() == 2
        assert client.post("/pricing/ping").json() == "pong"
    with _client(nb2api.create_app({"x": a, "y": v2})) as client:
        assert client.post("/x/add", json={"a": 1, "b": 1}).json() == 2
        assert client.post("/y/ping").json() == "pong"


def test_the_root_prefix_of_a_proxy_comes_before_the_notebooks(tmp_path):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    b = write_notebook(tmp_path, PING, name="b.ipynb")
    with _client(nb2api.create_app([a, b], root_path="/proxy")) as client:
        assert client.post("/a/add", json={"a": 1, "b": 1}).json() == 2
        assert client.get("/a/openapi.json").json()["servers"] == [{"url": "/proxy/a"}]
        assert "/proxy/openapi.json" in client.get("/docs").text
        assert client.get("/a", follow_redirects=False).headers["location"] == "/proxy/a/docs"


# ---- the combined document -------------------------------------------------------------------


def test_the_combined_document_prefixes_only_colliding_models(tmp_path):
    write_notebook(tmp_path, SALES.format(field="price: float"), PREDICT, name="pricing.ipynb")
    write_notebook(tmp_path, SALES.format(field="units: int"), PREDICT, name="stock.ipynb")
    write_notebook(tmp_path, ADD, name="maths.ipynb")
    with _client(nb2api.create_app(tmp_path)) as client:
        document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert {"pricing_Sale", "stock_Sale", "Item", "HTTPValidationError"} <= set(schemas)
    assert "Sale" not in schemas and "pricing_Item" not in schemas
    assert "price" in schemas["pricing_Sale"]["properties"]
    assert "units" in schemas["stock_Sale"]["properties"]
    assert [tag["name"] for tag in document["tags"]] == ["maths", "pricing", "stock"]
    operations = {path: document["paths"][path]["post"] for path in routes_of(document)}
    assert set(operations) == {"/maths/add", "/pricing/predict", "/stock/predict"}
    assert operations["/maths/add"]["tags"] == ["maths"]
    assert operations["/maths/add"]["operationId"] == "add"  # no collision: short
    assert {operations["/pricing/predict"]["operationId"],
            operations["/stock/predict"]["operationId"]} == {"pricing_predict", "stock_predict"}
    refs = _refs(document)
    assert refs and all(ref.removeprefix("#/components/schemas/") in schemas for ref in refs)
    pricing_body = schemas[_ref_name(operations["/pricing/predict"]["requestBody"])]
    assert pricing_body["properties"]["sale"]["$ref"] == "#/components/schemas/pricing_Sale"


def test_a_model_that_refers_to_a_colliding_one_collides_too():
    def document(field: str) -> dict:
        return {"openapi": "3.1.0", "paths": {}, "components": {"schemas": {
            "Inner": {"properties": {field: {"type": "integer"}}},
            "Outer": {"properties": {"inner": {"$ref": "#/components/schemas/Inner"}}},
            "Same": {"type": "string"},
        }}}

    combined = combine({"a": document("x"), "b": document("y")}, {"title": "t"}, {})
    schemas = combined["components"]["schemas"]
    assert set(schemas) == {"a_Inner", "b_Inner", "a_Outer", "b_Outer", "Same"}
    assert schemas["b_Outer"]["properties"]["inner"]["$ref"] == "#/components/schemas/b_Inner"


def _refs(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _ref_name(body: dict) -> str:
    return body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]


# ---- versions --------------------------------------------------------------------------------


def test_every_response_carries_the_notebook_version_single_notebook_too(make_notebook):
    path = make_notebook(ADD)
    version = notebook_version(read_notebook(path))
    with _client(nb2api.create_app(path)) as client:
        for response in (client.post("/add", json={"a": 1, "b": 2}), client.get("/healthz"),
                         client.post("/add", json={"a": "x"}), client.get("/nowhere")):
            assert response.headers["x-notebook-version"] == version
        assert version in client.get("/openapi.json").json()["info"]["description"]


def test_each_notebook_answers_with_its_own_version(tmp_path):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    b = write_notebook(tmp_path, PING, name="b.ipynb")
    with _client(nb2api.create_app(tmp_path)) as client:
        assert (client.post("/a/add", json={"a": 1, "b": 2}).headers["x-notebook-version"]
                == notebook_version(read_notebook(a)))
        assert (client.post("/b/ping").headers["x-notebook-version"]
                == notebook_version(read_notebook(b)))
        root = client.get("/readyz")
        assert root.headers["x-notebook-version"] not in {
            notebook_version(read_notebook(a)), notebook_version(read_notebook(b))}
        assert root.json()["notebooks"]["a"]["version"] == notebook_version(read_notebook(a))


def test_the_version_follows_the_marked_cells_only(tmp_path):
    def version(*cells) -> str:
        return notebook_version(read_notebook(write_notebook(tmp_path, *cells)))

    first = version(ADD, "scratch = 1")
    assert version(ADD, "scratch = 2") == first  # an exploration cell edited
    assert version(ADD.replace("a + b", "b + a"), "scratch = 1") != first
    assert version("#| setup\nimport math", ADD, "scratch = 1") != first
    assert len(first) == 12 and int(first, 16) >= 0


# ---- isolation: pools, max-workers --------------------------------------------------------


def test_max_workers_applies_per_notebook_and_the_directive_wins(tmp_path):
    write_notebook(tmp_path, "#| setup\n#| max-workers: 2\nimport math", ADD, name="a.ipynb")
    write_notebook(tmp_path, PING, name="b.ipynb")
    app = nb2api.create_app(tmp_path, max_workers=5)
    live = app.state.notebooks.live
    assert live["a"].app.state.runtime.pool.max_workers == 2
    assert live["b"].app.state.runtime.pool.max_workers == 5
    assert live["a"].app.state.runtime.pool is not live["b"].app.state.runtime.pool
    single = nb2api.create_app(tmp_path / "a.ipynb", max_workers=5)
    assert single.state.runtime.pool.max_workers == 2


@pytest.mark.parametrize("value", ["0", "two", "-1", ""])
def test_a_max_workers_directive_that_is_not_a_count_names_the_cell(make_notebook, value):
    path = make_notebook("#| setup\nimport math", f"#| api\n#| max-workers: {value}\n" + ADD[7:])
    with pytest.raises(DirectiveError) as info:
        read_notebook(path)
    assert str(info.value).startswith(f"{path}, cell 2 (") and "line 2" in str(info.value)


def test_two_max_workers_directives_must_agree(make_notebook):
    path = make_notebook("#| setup\n#| max-workers: 2\nimport math",
                         "#| api\n#| max-workers: 3\n" + ADD[7:])
    with pytest.raises(DirectiveError, match="contradicts") as info:
        read_notebook(path)
    assert info.value.cell.index == 2
    same = make_notebook("#| setup\n#| max-workers: 2\nimport math",
                         "#| api\n#| max-workers: 2\n" + ADD[7:], name="same.ipynb")
    assert read_notebook(same).max_workers == 2


# ---- metrics, tokens, the fast path under a prefix ----------------------------------------


def test_metrics_at_the_root_carry_a_notebook_label(tmp_path):
    write_notebook(tmp_path, ADD, name="a.ipynb")
    write_notebook(tmp_path, ADD, name="b.ipynb")
    with _client(nb2api.create_app(tmp_path)) as client:
        client.post("/a/add", json={"a": 1, "b": 2})
        for _ in range(3):
            client.post("/b/add", json={"a": 1, "b": 2})
        text = client.get("/metrics").text
    assert text.count("# TYPE nb2api_requests_total counter") == 1
    assert ('nb2api_requests_total{method="POST",notebook="a",route="/add",status="200"} 1.0'
            in text)
    assert ('nb2api_requests_total{method="POST",notebook="b",route="/add",status="200"} 3.0'
            in text)
    assert 'nb2api_pool_workers{executor="thread",notebook="a"}' in text


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_token_and_the_fast_path_work_under_a_prefix(tmp_path, fast_path):
    write_notebook(tmp_path, PROBE, name="a.ipynb")
    write_notebook(tmp_path, PING, name="b.ipynb")
    app = nb2api.create_app(tmp_path, token="s3cret", fast_path=fast_path)
    bearer = {"Authorization": "Bearer s3cret"}
    with _client(app) as client:
        assert client.post("/a/add", json={"a": 1, "b": 2}).status_code == 401
        assert client.post("/a/add", json={"a": 1, "b": 2}, headers={
            "Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/a/add", json={"a": 1, "b": 2}, headers=bearer).json() == 3
        answered = client.post("/a/answered_by", headers=bearer).json()
        assert answered == ("fast path" if fast_path else "fastapi")
        assert client.post("/a/add", json={"a": "x"}, headers=bearer).status_code == 422
        for open_path in ("/a/docs", "/a/openapi.json", "/a/readyz", "/docs", "/openapi.json",
                          "/readyz", "/healthz"):
            assert client.get(open_path).status_code == 200, open_path
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer).status_code == 200
        assert client.get("/a/metrics").status_code == 401


# ---- broken notebooks ------------------------------------------------------------------------

BROKEN = "#| setup\nimport math\nmath.nothing_here"


def test_a_broken_notebook_stops_the_start_unless_skipped(tmp_path):
    write_notebook(tmp_path, ADD, name="a.ipynb")
    write_notebook(tmp_path, BROKEN, PING, name="b.ipynb")
    with pytest.raises(NotebookError, match="cell 1") as info:
        nb2api.create_app(tmp_path)
    assert "b.ipynb" in str(info.value)
    app = nb2api.create_app(tmp_path, skip_broken=True)
    with _client(app) as client:
        assert client.post("/a/add", json={"a": 1, "b": 2}).json() == 3
        assert client.post("/b/ping").status_code == 404
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["broken"] == ["b"]
        assert body["notebooks"]["b"]["status"] == "broken"
        assert "AttributeError" in body["notebooks"]["b"]["reason"]
        assert "cell 1" in body["notebooks"]["b"]["reason"]
        assert "`/b`: broken" in client.get("/openapi.json").json()["info"]["description"]


def test_none_servable_is_an_error_even_when_skipping(tmp_path):
    write_notebook(tmp_path, BROKEN, PING, name="b.ipynb")
    with pytest.raises(NotebookError, match="none of the notebooks"):
        nb2api.create_app({"x": tmp_path / "b.ipynb", "y": tmp_path / "b.ipynb"},
                          skip_broken=True)


# ---- naming --------------------------------------------------------------------------------


def test_parse_targets_names_files_folders_and_prefixes(tmp_path):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    write_notebook(tmp_path / "f", PING, name="b.ipynb")
    write_notebook(tmp_path / "f", "x = 1", name="c.ipynb")
    targets = parse_targets([str(a), f"p={a}", str(tmp_path / "f")])
    assert [(t.name, t.path.name) for t in targets.notebooks] == [
        ("a", "a.ipynb"), ("p", "a.ipynb"), ("b", "b.ipynb")]
    assert [(s.path.name, s.reason) for s in targets.skipped] == [
        ("c.ipynb", "no cell is marked setup or api")]


@pytest.mark.parametrize(("arguments", "message"), [
    (["{a}", "{a}"], "would both be served under /a"),
    (["docs={a}"], "/docs is a path nb2api serves itself"),
    (["bad name={a}"], "no such notebook file or folder"),
    (["{folder}", "{a}"], "would both be served under /a"),
    (["x={folder}"], "NAME=PATH names one notebook"),
    (["{tmp}/missing.ipynb"], "no such notebook file or folder"),
])
def test_parse_targets_refuses_what_cannot_be_served_apart(tmp_path, arguments, message):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    folder = tmp_path / "folder"
    write_notebook(folder, ADD, name="a.ipynb")
    given = [arg.format(a=a, folder=folder, tmp=tmp_path) for arg in arguments]
    with pytest.raises(NotebookError, match=message):
        parse_targets(given)


@given(st.text(max_size=80))
def test_a_file_name_always_makes_a_usable_prefix(stem):
    name = name_for(stem)
    assert _NAME.match(name) or name.lower() in RESERVED_NAMES


# ---- the command line ----------------------------------------------------------------------


def _nb2api(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nb2api", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_serve_stops_with_exit_2_and_one_line_for_a_broken_notebook(tmp_path):
    write_notebook(tmp_path, ADD, name="a.ipynb")
    write_notebook(tmp_path, BROKEN, PING, name="b.ipynb")
    result = _nb2api("serve", str(tmp_path), "--port", "0", "--log-format", "text")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b.ipynb" in errors[0] and "cell 1" in errors[0]
    assert "Traceback" not in result.stderr


def test_serve_refuses_two_notebooks_on_one_prefix_and_ray_options_it_cannot_honour(tmp_path):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    b = write_notebook(tmp_path / "other", PING, name="a.ipynb")
    result = _nb2api("serve", str(a), str(b), "--port", "0")
    assert result.returncode == 2 and "would both be served under /a" in result.stderr
    result = _nb2api("serve", str(a), f"b={b}", "--ray", "--reload", "--port", "0")
    assert result.returncode == 2  # checked before Ray starts, as for one notebook
    assert "--ray runs replicas itself" in result.stderr and "Traceback" not in result.stderr




def test_export_of_a_folder_writes_one_project_serving_each_notebook(tmp_path):
    folder = tmp_path / "nbs"
    write_notebook(folder, SALES.format(field="price: float"), PREDICT, name="pricing.ipynb")
    write_notebook(folder, SALES.format(field="units: int"), PREDICT, name="stock.ipynb")
    write_notebook(folder, "x = 1", name="scratch.ipynb")
    out = tmp_path / "out"
    result = _nb2api("export", str(folder), str(out))
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr and "scratch.ipynb" in result.stderr
    assert (out / "pricing" / "app.py").is_file() and (out / "stock" / "app.py").is_file()
    assert 'CMD ["uvicorn", "app:app"' in (out / "Dockerfile").read_text()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = tmp_path / "server.log"
    process = subprocess.Popen([sys.executable, "-c", RUN_APP, "app:app", str(port)], cwd=out, env=env,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{base}/readyz", process, log.read_text)
        with httpx.Client(base_url=base, timeout=30) as client:
            sale = {"sale": {"price": 1.5, "item": {"name": "pen"}}}
            assert client.post("/pricing/predict", json=sale).json() == {"name": "pen"}
            assert client.post("/stock/predict", json=sale).status_code == 422  # units, not price
            exported = client.get("/openapi.json").json()
            assert client.get("/docs").status_code == 200
            assert client.get("/pricing/docs").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
    with _client(nb2api.create_app(folder)) as client:
        served = client.get("/openapi.json").json()
    assert set(exported["paths"]) == set(routes_of(served)) == {"/pricing/predict",
                                                                "/stock/predict"}
    assert set(exported["components"]["schemas"]) == set(
        without_jobs(served)["components"]["schemas"])
    assert [t["name"] for t in exported["tags"]] == ["pricing", "stock"]


def test_export_of_several_with_a_broken_one_writes_nothing(tmp_path):
    a = write_notebook(tmp_path / "nbs", ADD, name="a.ipynb")
    b = write_notebook(tmp_path / "nbs", "#| setup\nimport math\nmath.nothing_here", PING,
                       name="b.ipynb")
    result = _nb2api("export", str(a), f"other={b}", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "b.ipynb, cell 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_check_and_openapi_of_a_folder(tmp_path):
    write_notebook(tmp_path, ADD, name="a.ipynb")
    write_notebook(tmp_path, PING, name="b.ipynb")
    result = _nb2api("check", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("/a (") and "1 route" in lines[0]
    assert "POST /add" in lines[1] and lines[2].startswith("/b (") and "POST /ping" in lines[3]
    result = _nb2api("openapi", str(tmp_path))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(routes_of(document)) == {"/a/add", "/b/ping"}


def test_the_root_answers_cors_for_the_combined_document(tmp_path):
    write_notebook(tmp_path, ADD, name="a.ipynb")
    app = nb2api.create_app(tmp_path, cors_origins=("https://docs.example",))
    with _client(app) as client:
        origin = {"Origin": "https://docs.example"}
        root = client.get("/openapi.json", headers=origin)
        assert root.headers["access-control-allow-origin"] == "https://docs.example"
        routed = client.post("/a/add", json={"a": 1, "b": 2}, headers=origin)
        assert routed.headers["access-control-allow-origin"] == "https://docs.example"


def test_a_live_folder_skips_notebooks_it_cannot_name_or_serve(tmp_path, caplog):
    """The folder's watcher, fed by the test: a notebook without marks, one whose prefix is
    reserved and one whose prefix is taken are left out, each logged; the rest serve."""
    import asyncio
    import queue

    from nb2api.serve.app import _loader
    from nb2api.serve.multi import Notebooks
    from nb2api.settings import Settings

    folder = tmp_path / "nbs"
    write_notebook(folder, ADD, name="a-b.ipynb")
    saves: queue.Queue = queue.Queue()

    async def changes(places):
        assert places == [folder.resolve()]
        while (batch := await asyncio.to_thread(saves.get)) is not None:
            yield batch

    app = Notebooks.build(folder, Settings(), _loader(None), reload=True, changes=changes)
    notebooks = app.state.notebooks
    with _client(app) as client, caplog.at_level("INFO", logger="nb2api"):
        try:
            for name, cells in [("scratch.ipynb", ["x = 1"]), ("docs.ipynb", [PING]),
                                ("a b.ipynb", [PING]), ("c.ipynb", [PING])]:
                saves.put({write_notebook(folder, *cells, name=name)})
            wait_until(lambda: "c" in notebooks.live, message="c to serve")
            assert client.post("/c/ping").json() == "pong"
            assert set(client.get("/readyz").json()["notebooks"]) == {"a-b", "c"}
            text = caplog.text
            assert "skipped" in text and "scratch.ipynb" in text
            assert "/docs is a path nb2api serves itself" in text
            assert "/a-b is taken" in text
            (folder / "c.ipynb").unlink()
            saves.put({folder / "c.ipynb"})
            wait_until(lambda: "c" not in notebooks.live, message="c to stop")
            assert client.post("/c/ping").status_code == 404
            assert client.post("/a-b/add", json={"a": 1, "b": 1}).json() == 2
        finally:
            saves.put(None)  # ends the watcher, so that the app can stop


def test_a_folder_without_a_marked_notebook_is_one_error(tmp_path):
    write_notebook(tmp_path, "x = 1", name="scratch.ipynb")
    result = _nb2api("serve", str(tmp_path), "--port", "0", "--log-format", "text")
    assert result.returncode == 2
    assert "skipped" in result.stderr and "scratch.ipynb" in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path}: no notebook to serve: none has a cell marked setup "
                      "or api"]


def routes_of(document: dict) -> list[str]:
    """The paths of a document that are notebook routes: not the job endpoints every notebook
    has too (``/jobs...``, or ``/<name>/jobs...`` in the combined document)."""
    return [path for path in document["paths"]
            if not any(path == job or path.endswith(job) for job in JOB_PATHS)]
