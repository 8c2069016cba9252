"""Faults through the Jupyter extension: stopping during a long call, permissions, big bodies."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import nbformat
import pytest
from conftest import notebook_node, wait_until
from jupyter_helpers import JupyterServer, api_client, pid_alive, start_jupyter

STOP_TIMEOUT = 2.0
MARGIN = 10.0  # for a loaded machine; the defect made a stop take 20 to 80 s
SLOW = nbformat.writes(notebook_node(
    # a process the notebook starts itself is the app's too
    "#| setup\nimport subprocess\nimport time\nhelper = subprocess.Popen(['sleep', '300'])",
    "#| api\n#| executor: process\ndef p_slow(s: float) -> float:\n    time.sleep(s)\n    return s",
    "#| api\ndef add(a: int, b: int = 1) -> int:\n    return a + b",
))


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> JupyterServer:
    tests = str(Path(__file__).parent)
    srv = start_jupyter(
        tmp_path_factory.mktemp("jupyter"),
        extra_args=[
            f"--Nb2ApiExtension.stop_timeout={STOP_TIMEOUT}",
            "--ServerApp.authorizer_class=jupyter_authorizer.ReaderRoleAuthorizer",
        ],
        env={"PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), tests])),
             "NB2API_PROCESSES": "2"},
    )
    yield srv
    srv.stop()


@pytest.fixture
def api(server):
    with api_client(server) as client:
        yield client


def serve(server: JupyterServer, api: httpx.Client, name: str, text: str = SLOW) -> dict:
    (server.root / name).write_text(text)
    response = api.post("nb2api/api/serve", json={"path": name})
    assert response.status_code == 200, response.text
    return response.json()


def family(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def start_slow_call(server: JupyterServer, app: dict) -> threading.Thread:
    """``POST p_slow {"s": 8}`` in the background; returns once the call runs in a worker."""
    def call() -> None:
        with server.client() as client:
            try:
                client.post(f"{app['url']}p_slow", json={"s": 8})
            except httpx.HTTPError:
                pass  # the app is stopped under it: any answer, or none, will do

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    with server.client() as client:
        wait_until(lambda: 'nb2api_pool_busy_workers{executor="process"} 1.0'
                   in client.get(f"{app['url']}metrics").text, timeout=30, message="p_slow runs")
    return thread


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes in /proc")
def test_stop_during_a_long_process_call_leaves_no_process(server, api):
    app = serve(server, api, "slow.ipynb")
    processes = family(app["pid"])
    assert len(processes) >= 4  # the child, its two pool workers and the notebook's helper
    caller = start_slow_call(server, app)
    with server.client() as client:
        client.timeout = httpx.Timeout(STOP_TIMEOUT + MARGIN)
        assert client.delete(f"nb2api/api/apps/{app['id']}").status_code == 204
    assert [pid for pid in processes if pid_alive(pid)] == []
    caller.join(timeout=30)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes in /proc")
def test_reload_during_a_long_process_call_leaves_no_old_process(server, api):
    app = serve(server, api, "reload.ipynb")
    processes = family(app["pid"])
    caller = start_slow_call(server, app)
    with server.client() as client:
        client.timeout = httpx.Timeout(STOP_TIMEOUT + MARGIN + 30)  # + loading the new version
        (server.root / "reload.ipynb").write_text(SLOW.replace("a + b", "b + a"))
        reloaded = client.post("nb2api/api/serve", json={"path": "reload.ipynb"}).json()
    assert reloaded["pid"] != app["pid"] and reloaded["error"] is None
    assert [pid for pid in processes if pid_alive(pid)] == []
    caller.join(timeout=30)


def test_the_served_app_needs_the_permission_serving_needs(server, api):
    app = serve(server, api, "auth.ipynb")
    with server.client() as reader:
        reader.headers["X-Test-Role"] = "reader"
        assert reader.get("nb2api/api/apps").status_code == 200  # reading is allowed
        assert reader.post("nb2api/api/serve", json={"path": "auth.ipynb"}).status_code == 403
        # calling the app runs the notebook's code; its docs are the app too
        assert reader.post(f"{app['url']}add", json={"a": 1}).status_code == 403
        for page in ("docs", "openapi.json", "redoc"):
            assert reader.get(f"{app['url']}{page}").status_code == 403, page
        assert reader.delete(f"nb2api/api/apps/{app['id']}").status_code == 403
    assert api.post(f"{app['url']}add", json={"a": 1}).json() == 2


def test_a_body_over_the_apps_limit_is_its_413(server, api):
    app = serve(server, api, "big.ipynb")
    big = b'{"a": 1, "pad": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    response = api.post(f"{app['url']}add", content=big,
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body larger than {16 * 1024 * 1024} bytes"}
    assert api.post(f"{app['url']}add", json={"a": 1}).json() == 2  # serving on
