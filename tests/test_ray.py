"""Ray Serve: the application builder without a cluster, then `nb2api serve --ray` end to end.

Skipped when Ray is not installed, except in CI (CI=true), which installs the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nb2api.ray import LOCAL_CLUSTER_ENVIRONMENT

# Before anything imports Ray: a local cluster must keep every socket on loopback.
for _key, _value in LOCAL_CLUSTER_ENVIRONMENT.items():
    os.environ.setdefault(_key, _value)

if os.environ.get("CI") == "true":
    import ray  # noqa: F401  (CI installs nb2api[ray]: a missing Ray is a failure there)
else:
    pytest.importorskip("ray.serve", reason="Ray Serve is not installed (pip install nb2api[ray])")

import httpx  # noqa: E402
import nbformat  # noqa: E402
import psutil  # noqa: E402
from conftest import code, free_port, notebook_path, wait_until  # noqa: E402
from test_kernel import DEFINITIONS, LOADING, TRAINING, run_in_kernel  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nb2api import NotebookError, Settings  # noqa: E402
from nb2api import ray as nb2api_ray  # noqa: E402
from nb2api.cli import app as cli  # noqa: E402
from nb2api.ray import RayArgs, build, config_text, replica_app_builder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# The cluster tests below start Ray on a machine that may be busy: generous bounds, no timings.
STARTUP_TIMEOUT = 240
STOP_TIMEOUT = 180


SYNTAX_ERROR = "#| api\ndef f(x: int) -> int:\n    return x +"


# --- the builder, no cluster -----------------------------------------------------------------


def test_build_ships_the_notebook_text_and_replica_options():
    application = build({"notebook": str(notebook_path("ray_echo")), "num_replicas": "2",
                         "num_cpus": 0.5})
    deployment = application._bound_deployment
    assert deployment.name == "ray_echo"
    assert deployment.num_replicas == 2
    assert deployment.ray_actor_options["num_cpus"] == 0.5


def test_replica_builder_is_a_function_that_builds_the_app_from_text(tmp_path):
    from fastapi.testclient import TestClient
    from ray import cloudpickle

    text = notebook_path("ray_echo").read_text()
    builder = replica_app_builder(text, str(tmp_path / "gone" / "ray_echo.ipynb"), Settings())
    # What Serve ships to the replicas: a small function holding the text, never a FastAPI app.
    shipped = cloudpickle.dumps(builder)
    assert b"FastAPI" not in shipped and b"GREETING" in shipped
    app = cloudpickle.loads(shipped)()
    client = TestClient(app)
    assert client.post("/add", json={"a": 2, "b": 3}).json() == 5
    assert client.post("/add", json={"a": "x"}).status_code == 422


def test_autoscaling_options_and_argument_errors(make_notebook):
    args = RayArgs(notebook=notebook_path("ray_echo"), min_replicas=1, max_replicas=3)
    options = args.deployment_options()
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert "num_replicas" not in options
    with pytest.raises(ValueError, match="not both"):
        RayArgs(notebook="x.ipynb", num_replicas=2, max_replicas=3)
    with pytest.raises(ValueError, match="below"):
        RayArgs(notebook="x.ipynb", min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="no_such_setting"):
        RayArgs(notebook="x.ipynb", settings={"no_such_setting": 1})
    with pytest.raises(NotebookError, match="no such notebook"):
        build({"notebook": "/no/such/notebook.ipynb"})
    with pytest.raises(NotebookError, match="cell"):
        build({"notebook": str(make_notebook(SYNTAX_ERROR))})


def test_ray_config_is_a_valid_serve_config(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    out = tmp_path / "serve.yaml"
    result = CliRunner().invoke(cli, ["ray-config", str(notebook_path("ray_echo")), "-o", str(out),
                                      "--replicas", "2", "--route-prefix", "/nb"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(config)
    application = config["applications"][0]
    assert application["import_path"] == "nb2api.ray:build"
    assert application["route_prefix"] == "/nb"
    assert application["args"] == {"notebook": str(notebook_path("ray_echo").resolve()),
                                   "num_replicas": 2}
    assert Path(application["args"]["notebook"]).is_absolute()
    autoscaling = yaml.safe_load(config_text(RayArgs(notebook="n.ipynb", max_replicas=4)))
    assert autoscaling["applications"][0]["args"]["max_replicas"] == 4


def test_ray_config_of_a_broken_notebook_exits_2(make_notebook):
    result = CliRunner().invoke(cli, ["ray-config", str(make_notebook(SYNTAX_ERROR))])
    assert result.exit_code == 2 and "cell" in result.stderr


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--replicas", "2", "--max-replicas", "3"],
                                   ["--min-replicas", "3", "--max-replicas", "2"]])
def test_serve_ray_argument_errors_exit_2_before_starting_ray(extra):
    result = CliRunner().invoke(cli, ["serve", str(notebook_path("ray_echo")), "--ray", *extra])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.stderr and "Value error" not in result.stderr


# --- `nb2api serve --ray`: one deployment on a local cluster, end to end ----------------------

_SESSION = re.compile(r"/tmp/nb2api-ray-[A-Za-z0-9_]+")


def test_sigterm_becomes_a_keyboard_interrupt_inside_a_cluster_block():
    """What lets SIGTERM unwind through Ray's shutdown as Ctrl-C does (no cluster needed)."""
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), nb2api_ray._sigterm_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: False, timeout=30, message="SIGTERM to interrupt this wait")
    assert signal.getsignal(signal.SIGTERM) is before


def _ray_processes(cli: psutil.Process, session: str) -> list[psutil.Process]:
    """Ray's processes: the CLI's descendants (Ray renames its workers) and any naming session."""
    found = []
    with contextlib.suppress(psutil.Error):
        found = cli.children(recursive=True)
    for process in psutil.process_iter(["cmdline"]):
        if process in found:
            continue
        try:
            if any(session in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _ray_entries(home: Path) -> set[str]:
    return {str(p.relative_to(home)) for p in [*home.glob("*"), *home.glob(".*/*")]
            if "ray" in p.name.lower()}


class RayServer:
    """``nb2api serve ray_echo.ipynb --ray --replicas 2`` as a subprocess, on 127.0.0.1."""

    def __init__(self, process: subprocess.Popen, log: Path, base_url: str) -> None:
        self.process = process
        self.log = log
        self.base_url = base_url
        self.cli = psutil.Process(process.pid)
        self.session = ""
        self.processes: list[psutil.Process] = []

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The CLI on a free port, under the prefix /nb, ready (bounded); stopped in the last test.

    It gets a home folder of its own, so that what Ray writes there is seen, and only that
    (other processes on the machine may use Ray in the real home folder meanwhile)."""
    folder = tmp_path_factory.mktemp("ray")
    home = folder / "home"
    home.mkdir()
    # ray_echo, and a model that a real kernel pickled (it refers to __main__.Scaler).
    echo = nbformat.read(notebook_path("ray_echo"), as_version=4)
    echo.cells += [code(DEFINITIONS), code(LOADING),
                   code("#| api\ndef scaled(x: float) -> float:\n    return model['scale'](x)")]
    notebook = folder / "ray_echo.ipynb"
    nbformat.write(echo, notebook)
    run_in_kernel(folder, DEFINITIONS, TRAINING)
    port = free_port()
    log = folder / "serve.log"
    env = {
        **os.environ,
        **LOCAL_CLUSTER_ENVIRONMENT,
        "HOME": str(home),
        # Replicas import nb2api from this checkout, whatever is installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "nb2api", "serve", str(notebook), "--ray",
             "--replicas", "2", "--host", "127.0.0.1", "--port", str(port), "--root-path", "/nb"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder,
            start_new_session=True,  # its own process group, as a terminal gives it: Ctrl-C hits all
        )
    server = RayServer(process, log, f"http://127.0.0.1:{port}/nb")
    try:
        # Ready when the CLI says the deployment is up (Serve may answer a moment earlier).
        def deployed() -> bool:
            assert process.poll() is None, f"nb2api serve --ray exited:\n{server.output()}"
            return "deployed on Ray Serve" in server.output()

        try:
            wait_until(deployed, timeout=STARTUP_TIMEOUT, interval=0.2,
                       message="nb2api serve --ray to deploy")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{server.output()}") from None
        server.processes = server.cli.children(recursive=True)
        sessions = {m for p in server.processes for part in _cmdline(p)
                    for m in _SESSION.findall(part)}
        assert len(sessions) == 1, sessions
        server.session = sessions.pop()
        yield server
    finally:
        if process.poll() is None:  # the stop test did not run or failed: clean up anyway
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
            for leftover in _ray_processes(server.cli, server.session or "/nonexistent"):
                with contextlib.suppress(psutil.Error):
                    leftover.kill()
            if server.session:
                shutil.rmtree(server.session, ignore_errors=True)
    assert not _ray_entries(home), "Ray wrote to the home folder"


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def test_serve_routes_and_replicas(served):
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        assert client.post("/add", json={"a": 1, "b": 2}).json() == 3
        assert client.get("/hello/ray").json()["greeting"] == "hello ray"
        pids = {client.post("/pid", json={}).json() for _ in range(30)}
    assert len(pids) == 2  # both replicas answer


def test_a_model_pickled_in_jupyter_loads_in_the_replicas(served):
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        assert {client.post("/scaled", json={"x": 2}).json() for _ in range(10)} == {6.0}


def test_serve_validation_errors_docs_and_operations(served):
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        invalid = client.post("/add", json={"a": "one"})
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["loc"] == ["body", "a"]
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = client.get("/openapi.json").json()
        assert spec["servers"] == [{"url": "/nb"}]
        assert {"/add", "/hello/{name}", "/pid"} <= set(spec["paths"])
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_every_ray_socket_listens_on_loopback(served):
    names = [p.name() for p in served.processes if p.is_running()]
    assert sum("ServeReplica" in name for name in names) == 2, names
    assert {"gcs_server", "raylet", "ray::ProxyActor", "ray::ServeController"} <= set(names)
    listening = []
    for process in [served.cli, *served.processes]:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [(process.pid, c.laddr) for c in connections if c.status == psutil.CONN_LISTEN]
    assert listening
    outside = []
    for pid, address in listening:
        ip = ipaddress.ip_address(address.ip)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if str(ip) != "127.0.0.1":
            outside.append((pid, address))
    assert not outside, f"Ray sockets listening beyond 127.0.0.1: {outside}"


def _running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


def test_ctrl_c_stops_everything_and_leaves_nothing(served):
    """Last in this module: Ctrl-C (SIGINT to the process group, as a terminal sends it).

    Each step waits for its event with a generous bound (a busy machine may take a while to
    stop Ray); what is asserted is that everything stops, cleanly, not how fast."""
    assert Path(served.session).is_dir()
    os.killpg(served.process.pid, signal.SIGINT)
    try:
        returncode = served.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {STOP_TIMEOUT} s after Ctrl-C:\n"
                             f"{served.output()}") from None
    assert returncode == 0, served.output()
    assert "Ray Serve stopped" in served.output()
    try:
        wait_until(lambda: not _running(_ray_processes(served.cli, served.session)),
                   timeout=STOP_TIMEOUT, interval=0.2, message="Ray's processes to end")
    except AssertionError:
        left = _running(_ray_processes(served.cli, served.session))
        raise AssertionError("Ray processes left running: "
                             f"{[(p.pid, _cmdline(p)[:1]) for p in left]}") from None
    assert not Path(served.session).exists(), "Ray's session folder was left in /tmp"
