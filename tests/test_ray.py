"""Ray Serve: the application builder without a cluster, then one deployment on 127.0.0.1.

Skipped when Ray is not installed, except in CI (CI=true), which installs the ``ray`` extra.
"""

from __future__ import annotations

import ipaddress
import os
import time
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
import psutil  # noqa: E402
from conftest import free_port, notebook_path  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from nb2api import NotebookError  # noqa: E402
from nb2api import ray as nb2api_ray  # noqa: E402
from nb2api.cli import app as cli  # noqa: E402
from nb2api.ray import RayArgs, build, config_text, replica_app_builder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


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
    builder = replica_app_builder(text, str(tmp_path / "gone" / "ray_echo.ipynb"), {})
    # What Serve ships to the replicas: a small function holding the text, never a FastAPI app.
    shipped = cloudpickle.dumps(builder)
    assert b"FastAPI" not in shipped and b"GREETING" in shipped
    app = cloudpickle.loads(shipped)()
    client = TestClient(app)
    assert client.post("/add", json={"a": 2, "b": 3}).json() == 5
    assert client.post("/add", json={"a": "x"}).status_code == 422


def test_autoscaling_options_and_argument_errors():
    args = RayArgs(notebook=notebook_path("ray_echo"), min_replicas=1, max_replicas=3)
    options = args.deployment_options()
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert "num_replicas" not in options
    with pytest.raises(ValueError, match="not both"):
        RayArgs(notebook="x.ipynb", num_replicas=2, max_replicas=3)
    with pytest.raises(ValueError, match="below"):
        RayArgs(notebook="x.ipynb", min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="unknown setting"):
        RayArgs(notebook="x.ipynb", settings={"no_such_setting": 1})
    with pytest.raises(NotebookError, match="no such notebook"):
        build({"notebook": "/no/such/notebook.ipynb"})
    with pytest.raises(NotebookError, match="cell"):
        build({"notebook": str(notebook_path("err_syntax"))})


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


def test_ray_config_of_a_broken_notebook_exits_2():
    result = CliRunner().invoke(cli, ["ray-config", str(notebook_path("err_syntax"))])
    assert result.exit_code == 2 and "cell" in result.stderr


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--replicas", "2", "--max-replicas", "3"],
                                   ["--min-replicas", "3", "--max-replicas", "2"]])
def test_serve_ray_argument_errors_exit_2_before_starting_ray(extra):
    result = CliRunner().invoke(cli, ["serve", str(notebook_path("ray_echo")), "--ray", *extra])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.stderr and "Value error" not in result.stderr


# --- one deployment on a local cluster ---------------------------------------------------------


def _ray_processes(temp_dir: str) -> list[psutil.Process]:
    """Ray's processes: this test's children (Ray renames its workers) and any naming temp_dir."""
    found = psutil.Process().children(recursive=True)
    for process in psutil.process_iter(["cmdline"]):
        if process in found:
            continue
        try:
            if any(temp_dir in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _home_entries() -> set[str]:
    home = Path.home()
    return {str(p.relative_to(home)) for p in [*home.glob("*"), *home.glob(".*/*")]
            if "ray" in p.name.lower()}


@pytest.fixture(scope="module")
def deployed():
    """ray_echo with 2 replicas behind Serve on 127.0.0.1, under the prefix /nb."""
    home_before = _home_entries()
    previous_path = os.environ.get("PYTHONPATH")
    # Replicas import nb2api from this checkout, whatever is installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), previous_path]))
    port = free_port()
    cluster = nb2api_ray.local_cluster(num_cpus=2, port=port)
    temp_dir = cluster.__enter__()
    try:
        started = time.perf_counter()
        nb2api_ray.run(RayArgs(notebook=notebook_path("ray_echo"), num_replicas=2, num_cpus=0.5),
                       route_prefix="/nb")
        ray_processes = _ray_processes(temp_dir)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/nb", timeout=30) as client:
            yield client, ray_processes, time.perf_counter() - started
    finally:
        cluster.__exit__(None, None, None)
        if previous_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous_path
    deadline = time.monotonic() + 20
    while _ray_processes(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _ray_processes(temp_dir)
    assert not left, f"Ray processes left running: {[p.pid for p in left]}"
    assert not Path(temp_dir).exists()
    assert _home_entries() <= home_before, "Ray wrote to the home folder"


def test_serve_routes_and_replicas(deployed):
    client, _, _ = deployed
    assert client.post("/add", json={"a": 1, "b": 2}).json() == 3
    assert client.get("/hello/ray").json()["greeting"] == "hello ray"
    pids = {client.post("/pid", json={}).json() for _ in range(30)}
    assert len(pids) == 2  # both replicas answer


def test_serve_validation_errors_docs_and_operations(deployed):
    client, _, _ = deployed
    invalid = client.post("/add", json={"a": "one"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "a"]
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["servers"] == [{"url": "/nb"}]
    assert {"/add", "/hello/{name}", "/pid"} <= set(spec["paths"])
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_every_ray_socket_listens_on_loopback(deployed):
    _, processes, _ = deployed
    names = [p.name() for p in processes]
    assert sum("ServeReplica" in name for name in names) == 2, names
    assert {"gcs_server", "raylet", "ray::ProxyActor", "ray::ServeController"} <= set(names)
    listening = []
    for process in processes:
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
