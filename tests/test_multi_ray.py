"""``nb2api serve a.ipynb NAME=b.ipynb --ray``: each notebook its own Serve application (its own
deployment and replicas) under /<name>, behind Serve's one HTTP proxy."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nb2api.ray import LOCAL_CLUSTER_ENVIRONMENT

if os.environ.get("CI") == "true":
    import ray  # noqa: F401  (CI installs nb2api[ray]: a missing Ray is a failure there)
else:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install nb2api[ray])")

import httpx  # noqa: E402
from conftest import free_port, wait_until, write_notebook  # noqa: E402
from jobs_helpers import JOB_PATHS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 240  # a busy machine may take a while to start Ray: bounds, no timings
STOP_TIMEOUT = 180


def test_several_notebooks_deploy_on_ray_each_under_its_prefix(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    a = write_notebook(tmp_path, "#| api\ndef add(a: int, b: int) -> int:\n    return a + b",
                       name="a.ipynb")
    b = write_notebook(tmp_path / "models", "#| api\ndef ping() -> str:\n    return 'pong'",
                       name="v2.ipynb")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, **LOCAL_CLUSTER_ENVIRONMENT, "HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nb2api", "serve", str(a), f"pricing={b}", "--ray",
             "--host", "127.0.0.1", "--port", str(port), "--log-format", "text"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True,
        )

    def output() -> str:
        return log.read_text(errors="replace")

    try:
        def deployed() -> bool:
            assert process.poll() is None, f"nb2api serve --ray exited:\n{output()}"
            return "deployed on Ray Serve" in output()

        wait_until(deployed, timeout=STARTUP_TIMEOUT, interval=0.2,
                   message="both notebooks to deploy")
        base = f"http://127.0.0.1:{port}"
        assert f"docs at {base}/a/docs, {base}/pricing/docs" in output()
        with httpx.Client(base_url=base, timeout=30) as client:
            assert client.post("/a/add", json={"a": 2, "b": 3}).json() == 5
            assert client.post("/pricing/ping").json() == "pong"
            assert client.post("/pricing/add", json={"a": 2, "b": 3}).status_code == 404
            document = client.get("/pricing/openapi.json").json()
            assert [p for p in document["paths"] if p not in JOB_PATHS] == ["/ping"]
            assert document["servers"] == [{"url": "/pricing"}]
            assert client.get("/a/docs").status_code == 200
    except BaseException:
        print(f"--- nb2api serve --ray printed:\n{output()}")
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: Ray and its session are shut down
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, output()
    assert "Ray Serve stopped" in output()
