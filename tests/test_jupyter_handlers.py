"""The nb2api Jupyter server extension, through a real ``jupyter server`` on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import nbformat
import pytest
from conftest import md, notebook_node, wait_until
from jobs_helpers import JOB_PATHS
from jupyter_helpers import (
    BROKEN,
    GREETER,
    TOKEN,
    JupyterServer,
    api_client,
    pid_alive,
    put_notebook,
    start_jupyter,
)

# Three saves of one notebook, as JSON text: it serves, it cannot be served, it serves again.
GOOD_TEXT = nbformat.writes(notebook_node("#| api\ndef add(a: int, b: int = 1) -> int:\n    return a + b"))
BROKEN_TEXT = nbformat.writes(notebook_node("#| api\ndef add(a: Foo) -> int:\n    return 1"))
FIXED_TEXT = nbformat.writes(notebook_node("#| api\ndef mul(a: int, b: int) -> int:\n    return a * b"))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> JupyterServer:
    work = tmp_path_factory.mktemp("jupyter")
    srv = start_jupyter(work)
    put_notebook(srv.root / "ok.ipynb", *GREETER)
    put_notebook(srv.root / "sub dir" / "ok.ipynb", *GREETER)
    put_notebook(srv.root / "broken.ipynb", *BROKEN)
    put_notebook(work / "outside.ipynb", *GREETER)
    (srv.root / "escape.ipynb").symlink_to(work / "outside.ipynb")
    put_notebook(srv.root / ".hidden" / "ok.ipynb", *GREETER)
    yield srv
    srv.stop()


@pytest.fixture
def api(server):
    with api_client(server) as client:
        yield client


def serve(client: httpx.Client, path: str) -> httpx.Response:
    return client.post("nb2api/api/serve", json={"path": path})


def routes(client: httpx.Client, app: dict) -> set[str]:
    r = client.get(f"{app['url']}openapi.json")
    assert r.status_code == 200, r.text
    return set(r.json()["paths"]) - JOB_PATHS  # the notebook's own


# ---- auth ------------------------------------------------------------------------


def test_every_endpoint_needs_jupyter_auth(server, api):
    app = serve(api, "ok.ipynb").json()
    with server.client(token=False) as anon:
        assert anon.get("nb2api/api/apps").status_code in (401, 403)
        assert anon.get(f"nb2api/api/apps/{app['id']}").status_code in (401, 403)
        assert serve(anon, "ok.ipynb").status_code in (401, 403)
        assert anon.delete(f"nb2api/api/apps/{app['id']}").status_code in (401, 403)
        # the served API itself: no data without auth (a browser is sent to the login page)
        docs = anon.get(f"{app['url']}docs")
        assert docs.status_code in (302, 401, 403)
        assert "swagger" not in docs.text.lower()
        assert anon.post(f"{app['url']}add", json={"a": 1}).status_code in (401, 403)
    assert app["id"] in {a["id"] for a in api.get("nb2api/api/apps").json()}  # still served


def test_cookie_auth_needs_xsrf_for_writes(server, api):
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        # logging in with the token in the URL, as a browser does, sets the cookies
        assert browser.get("api/status", params={"token": TOKEN}).status_code == 200
        assert browser.get("nb2api/api/apps").status_code == 200
        assert serve(browser, "ok.ipynb").status_code == 403  # no X-XSRFToken
        xsrf = browser.cookies.get("_xsrf")
        if xsrf is None:  # older servers set it on the first page load
            browser.get("lab", params={"token": TOKEN})
            xsrf = browser.cookies["_xsrf"]
        r = browser.post(
            "nb2api/api/serve", json={"path": "ok.ipynb"}, headers={"X-XSRFToken": xsrf}
        )
        assert r.status_code == 200, r.text
        app = r.json()
        # the served API accepts same-origin writes (Swagger UI's "Try it out")...
        same = browser.post(
            f"{app['url']}add", json={"a": 2}, headers={"Origin": server.url.rstrip("/")}
        )
        assert same.status_code == 200 and same.json() == 3
        # ...but not a cross-site write riding on the cookie
        cross = browser.post(
            f"{app['url']}add", json={"a": 2}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403


# ---- paths -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("../outside.ipynb", {403}),
        ("sub dir/../../outside.ipynb", {403}),
        ("escape.ipynb", {403}),  # a symlink that leads out of the root
        ("/etc/passwd", {404}),  # absolute paths are taken as relative to the root
        ("/../outside.ipynb", {403}),
        (".hidden/ok.ipynb", {404}),
        ("missing.ipynb", {404}),
        ("sub dir", {404}),
        ("", {400}),
    ],
)
def test_paths_outside_the_root_are_refused(api, path, statuses):
    r = serve(api, path)
    assert r.status_code in statuses, r.text
    assert api.get("nb2api/api/apps").json() == []


def test_bad_request_body(api):
    assert api.post("nb2api/api/serve", json=["ok.ipynb"]).status_code == 400
    assert api.post("nb2api/api/serve", json={"path": 3}).status_code == 400


# ---- serve, list, stop -------------------------------------------------------------


def test_serve_list_call_and_stop(server, api):
    r = serve(api, "sub dir/ok.ipynb")
    assert r.status_code == 200, r.text
    app = r.json()
    assert app["path"] == "sub dir/ok.ipynb"
    assert app["status"] == "running" and app["error"] is None
    assert app["url"] == f"/nb2api/apps/{app['id']}/"
    assert app["docs_url"] == f"/nb2api/apps/{app['id']}/docs"

    assert [a["id"] for a in api.get("nb2api/api/apps").json()] == [app["id"]]
    assert api.get(f"nb2api/api/apps/{app['id']}").json()["path"] == "sub dir/ok.ipynb"

    # docs render from local assets and point at the proxied openapi.json
    docs = api.get(app["docs_url"])
    assert docs.status_code == 200
    assert f"/nb2api/apps/{app['id']}/openapi.json" in docs.text
    assert "cdn.jsdelivr.net" not in docs.text
    for asset in ("swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css"):
        assert f"/nb2api/apps/{app['id']}/_nb2api/static/{asset}" in docs.text
        assert api.get(f"{app['url']}_nb2api/static/{asset}").status_code == 200
    redoc = api.get(f"{app['url']}redoc")
    assert redoc.status_code == 200 and "cdn.jsdelivr.net" not in redoc.text
    assert api.get(f"{app['url']}_nb2api/static/redoc/redoc.standalone.js").status_code == 200
    assert routes(api, app) == {"/add", "/hello/{name}"}
    assert api.post(f"{app['url']}add", json={"a": 2, "b": 3}).json() == 5
    assert api.get(f"{app['url']}hello/ada").json() == "hello ada"
    assert api.post(f"{app['url']}add", json={"a": "x"}).status_code == 422

    # serving it again is idempotent: same app, same process
    again = serve(api, "sub dir/ok.ipynb").json()
    assert (again["id"], again["pid"]) == (app["id"], app["pid"])

    assert api.delete(f"nb2api/api/apps/{app['id']}").status_code == 204
    assert api.get("nb2api/api/apps").json() == []
    assert api.get(app["docs_url"]).status_code == 404
    assert api.delete(f"nb2api/api/apps/{app['id']}").status_code == 404
    assert not pid_alive(app["pid"])


def test_served_notebook_answers_mcp_through_the_proxy(server, api):
    from mcp_helpers import over_http

    app = serve(api, "ok.ipynb").json()
    assert app["mcp_url"] == f"/nb2api/apps/{app['id']}/mcp"
    with server.client(token=False) as anonymous:  # Jupyter's own auth comes first
        assert anonymous.post(app["mcp_url"].lstrip("/"), json={}).status_code in (302, 403)

    async def work(session):
        tools = [t.name for t in (await session.list_tools()).tools]
        return tools, await session.call_tool("add", {"a": 2, "b": 5})

    # an agent sends Jupyter's token as a bearer token, which Jupyter accepts
    tools, added = over_http(server.url.rstrip("/") + app["mcp_url"], work, token=TOKEN)
    assert tools == ["add", "hello"]
    assert added.structured_content == {"result": 7}
    assert api.delete(f"nb2api/api/apps/{app['id']}").status_code == 204


def test_stop_with_post(api):
    app = serve(api, "ok.ipynb").json()
    assert api.post(f"nb2api/api/apps/{app['id']}").status_code == 204
    assert not pid_alive(app["pid"])


def test_a_broken_notebook_gives_the_one_line_error(api):
    r = serve(api, "broken.ipynb")
    assert r.status_code == 422
    message = r.json()["message"]
    assert message.startswith('error: broken.ipynb, cell 2 ("def f(x: Foo) -> int:")')
    assert "'Foo' is not defined" in message
    assert "\n" not in message and "Traceback" not in message
    assert api.get("nb2api/api/apps").json() == []


# ---- reload ------------------------------------------------------------------------


def test_save_reloads_and_keeps_the_last_good_version(server, api):
    nb = server.root / "reload.ipynb"
    nb.write_text(GOOD_TEXT)
    app = serve(api, "reload.ipynb").json()
    assert routes(api, app) == {"/add"}

    nb.write_text(BROKEN_TEXT)
    broken = serve(api, "reload.ipynb").json()  # what the button does after a save
    assert "Foo" in broken["error"] and "cell 1" in broken["error"]
    assert broken["status"] == "running" and broken["pid"] == app["pid"]
    assert api.post(f"{app['url']}add", json={"a": 1}).json() == 2  # the old one serves

    nb.write_text(FIXED_TEXT)
    fixed = serve(api, "reload.ipynb").json()
    assert fixed["error"] is None and fixed["pid"] != app["pid"]
    assert routes(api, app) == {"/mul"}
    assert api.post(f"{app['url']}mul", json={"a": 3, "b": 4}).json() == 12
    assert not pid_alive(app["pid"])  # the old child was stopped after the swap


def test_a_save_from_anywhere_reloads(server, api):
    """The extension watches the file: no client call is needed after a save."""
    nb = server.root / "watched.ipynb"
    nb.write_text(GOOD_TEXT)
    app = serve(api, "watched.ipynb").json()

    nb.write_text(BROKEN_TEXT)
    current = wait_for(api, app, lambda a: a["error"] is not None)
    assert "Foo" in current["error"] and current["pid"] == app["pid"]

    nb.write_text(FIXED_TEXT)
    current = wait_for(api, app, lambda a: a["error"] is None and a["pid"] != app["pid"])
    assert routes(api, app) == {"/mul"}


def wait_for(api: httpx.Client, app: dict, predicate, timeout: float = 60) -> dict:
    """The app's state, once ``predicate`` holds for it (polled, with a deadline)."""

    def state() -> dict | None:
        current = api.get(f"nb2api/api/apps/{app['id']}").json()
        return current if predicate(current) else None

    return wait_until(state, timeout=timeout, interval=0.2, message=f"app {app['id']} to change")


# ---- lifecycle ---------------------------------------------------------------------


def test_children_stop_when_the_server_stops(tmp_path):
    srv = start_jupyter(tmp_path)
    try:
        assert list(srv.tmp.glob("nb2api-*")) == []  # nothing created before use
        put_notebook(srv.root / "ok.ipynb", *GREETER)
        with srv.client() as api:
            app = serve(api, "ok.ipynb").json()
        assert pid_alive(app["pid"])
        assert list(srv.tmp.glob("nb2api-*/*.sock"))
    finally:
        assert srv.stop() == 0, srv.log_text()
    wait_until(lambda: not pid_alive(app["pid"]), timeout=60, message="the app's process to end")
    assert list(srv.tmp.glob("nb2api-*")) == []


def test_under_a_base_url(tmp_path):
    """Behind JupyterHub the server lives under a prefix; so do the apps and their docs."""
    srv = start_jupyter(tmp_path, base_url="/user/ada/")
    try:
        put_notebook(srv.root / "ok.ipynb", *GREETER)
        with srv.client() as api:
            app = serve(api, "ok.ipynb").json()
            assert app["docs_url"] == f"/user/ada/nb2api/apps/{app['id']}/docs"
            docs = api.get(f"nb2api/apps/{app['id']}/docs")
            assert docs.status_code == 200
            assert f"'/user/ada/nb2api/apps/{app['id']}/openapi.json'" in docs.text.replace(
                '"', "'"
            )
            assert api.get(f"nb2api/apps/{app['id']}/hello/ada").json() == "hello ada"
    finally:
        srv.stop()


def test_importing_starts_nothing(tmp_path):
    code = (
        "import nb2api, nb2api.jupyter, nb2api.jupyter.extension, nb2api.jupyter.handlers\n"
        "nb2api._jupyter_server_extension_points(); nb2api._jupyter_labextension_paths()\n"
        "import threading, multiprocessing\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not multiprocessing.active_children()\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={"TMPDIR": str(tmp_path), "PATH": ""}
    )
    assert list(Path(tmp_path).iterdir()) == []


# ---- the API panel's errors ---------------------------------------------------------

FAILING = (
    md("# Failing\nA route whose helper raises."),
    "#| setup\nPRICES = {'paris': 10.0}",
    "#| api\ndef _price(city):\n    return PRICES[city]\n\n\ndef quote(city: str) -> float:\n"
    "    return _price(city) * 2",
)


def test_errors_keep_the_traceback_in_jupyter_and_name_the_cell(server, api):
    put_notebook(server.root / "failing.ipynb", *FAILING)
    app = serve(api, "failing.ipynb").json()
    assert api.get(f"nb2api/api/apps/{app['id']}/errors").json() == []
    assert api.post(f"{app['url']}quote", json={"city": "paris"}).json() == 20.0
    answer = api.post(f"{app['url']}quote", json={"city": "oslo"})
    assert answer.status_code == 500
    assert "Traceback" not in answer.text and set(answer.json()) == {"detail", "error_id"}
    error_id = answer.json()["error_id"]

    def recorded():
        return api.get(f"nb2api/api/apps/{app['id']}/errors").json()

    wait_until(lambda: recorded(), message="the error to reach the Jupyter server")
    [error] = recorded()
    assert error["error_id"] == error_id and error["route"] == "quote"  # the function
    assert error["message"] == "KeyError: 'oslo'"
    assert error["cell"] == 3 and error["line"] == 3  # `return PRICES[city]` in _price
    assert "Traceback" in error["traceback"] and "PRICES[city]" in error["traceback"]
    with server.client(token=False) as anon:
        assert anon.get(f"nb2api/api/apps/{app['id']}/errors").status_code in (401, 403)
    assert api.get("nb2api/api/apps/0123456789ab/errors").status_code == 404


def test_a_broken_save_names_its_cell_for_a_link(server, api):
    nb = server.root / "linked.ipynb"
    nb.write_text(GOOD_TEXT)
    app = serve(api, "linked.ipynb").json()
    assert app["error"] is None and app["error_cell"] is None
    nb.write_text(BROKEN_TEXT)
    broken = serve(api, "linked.ipynb").json()
    assert broken["error_cell"] == {"cell": 1, "line": 2}  # the def below `#| api`
