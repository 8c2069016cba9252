"""``nb2api export --k8s``: manifests valid against the Kubernetes schemas (offline, with
kubernetes-validate), sized from the measured setup, the token only ever a Secret reference; and
the exported app's /healthz, /readyz, /metrics and API_TOKEN, which the probes rely on."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from conftest import write_notebook
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_validate.utils import all_versions, latest_version
from test_export import exported_server
from typer.testing import CliRunner

from nb2api.cli import app as cli
from nb2api.export import export_notebook
from nb2api.k8s import manifests, resource_name, startup_failures, to_yaml
from nb2api.load import load_notebook

SETUP = "#| setup\nimport math\nTABLE = [math.sqrt(i) for i in range(200_000)]"
API = "#| api\ndef add(a: int, b: int) -> int:\n    return a + b + int(TABLE[4])"
# The oldest schemas kubernetes-validate ships, and the newest.
VERSIONS = sorted({all_versions()[0], latest_version()})


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("k8s")
    return load_notebook(write_notebook(folder, SETUP, API, name="Sales Forecast.ipynb"))


@pytest.fixture(scope="module")
def project(loaded):
    return export_notebook(loaded, loaded.notebook.path.parent / "out", k8s=True)


def documents(project) -> dict[str, dict]:
    found = {}
    for path in sorted((project.folder / "k8s").glob("*.yaml")):
        [document] = list(yaml.safe_load_all(path.read_text()))
        found[document["kind"]] = document
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(project, version):
    found = documents(project)
    assert set(found) == {"Deployment", "Service", "HorizontalPodAutoscaler",
                          "PodDisruptionBudget"}
    for document in found.values():
        kubernetes_validate.validate(document, version, strict=True)
    # The check is real: a misspelt field fails it.
    broken = copy.deepcopy(found["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_the_deployment_probes_scrapes_and_sizes_the_pod(project, loaded):
    found = documents(project)
    deployment = found["Deployment"]
    name = deployment["metadata"]["name"]
    assert name == "sales-forecast"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics"}
    [container] = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    written = deployment["metadata"]["annotations"]["nb2api.io/setup-seconds"]
    assert written == f"{loaded.load_seconds:.2f}"  # measured when the export ran the cells
    setup_seconds = float(written)
    assert startup["failureThreshold"] == startup_failures(setup_seconds)
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 3 * setup_seconds + 30
    requests = container["resources"]["requests"]
    assert requests["cpu"] == "250m"
    assert int(requests["memory"].removesuffix("Mi")) >= 256
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert found["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", name)


def test_the_start_up_probe_waits_longer_for_a_slower_setup():
    quick = manifests("m", 0.5, 0)["deployment.yaml"]
    slow = manifests("m", 120.0, 0)["deployment.yaml"]

    def patience(deployment):
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
        return probe["failureThreshold"] * probe["periodSeconds"]

    assert patience(quick) >= 30
    assert patience(slow) >= 3 * 120 + 30
    heavy = manifests("m", 1, 3 * 1024**3)["deployment.yaml"]  # 3 GiB at export
    resources = heavy["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == "3840Mi"
    assert resources["limits"]["memory"] == "7680Mi"


def test_the_token_is_a_secret_reference_never_a_value(project, monkeypatch):
    [variable] = documents(project)["Deployment"]["spec"]["template"]["spec"]["containers"][0][
        "env"]
    assert variable == {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "sales-forecast-token", "key": "token"}}}
    monkeypatch.setenv("NB2API_TOKEN", "s3cret-token-value")
    again = export_notebook(project.folder.parent / "Sales Forecast.ipynb",
                            project.folder.parent / "again", k8s=True)
    for path in (again.folder / "k8s").glob("*.yaml"):
        assert "s3cret-token-value" not in path.read_text()
    readme = (again.folder / "README.md").read_text()
    assert "docker build" in readme and "kubectl apply -f k8s/" in readme
    assert "kubectl create secret generic sales-forecast-token" in readme


def test_without_k8s_no_manifests(make_notebook, tmp_path):
    project = export_notebook(make_notebook(API.replace("+ int(TABLE[4])", "")), tmp_path / "p")
    assert not (project.folder / "k8s").exists()
    assert "kubectl" not in (project.folder / "README.md").read_text()


def test_cli_export_k8s(make_notebook, tmp_path):
    notebook = make_notebook(SETUP, API)
    result = CliRunner().invoke(cli, ["export", str(notebook), str(tmp_path / "out"), "--k8s"])
    assert result.exit_code == 0, result.output
    assert "k8s/" in result.output and "kubectl apply" in result.output
    assert (tmp_path / "out" / "k8s" / "deployment.yaml").is_file()


@pytest.mark.parametrize("stem, name", [
    ("Sales Forecast", "sales-forecast"), ("2024_model", "api-2024-model"), ("---", "notebook"),
    ("x" * 80, "x" * 50),
])
def test_resource_names_are_dns_labels(stem, name):
    assert resource_name(stem) == name


_SCALARS = st.none() | st.booleans() | st.integers() | st.text()
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@given(st.dictionaries(st.text(), _VALUES, min_size=1, max_size=5))
def test_to_yaml_reads_back_as_the_same_data(data):
    assert yaml.safe_load(to_yaml(data)) == data


def test_exported_app_serves_the_probes_and_metrics(project):
    with exported_server(project) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.post("/add", json={"a": 1, "b": 2}).json() == 5
        assert client.post("/add", json={"a": "x"}).status_code == 422
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'nb2api_requests_total{method="POST",route="/add",status="200"} 1.0' in text
    assert 'nb2api_requests_total{method="POST",route="/add",status="422"} 1.0' in text
    assert 'nb2api_request_duration_seconds_count{method="POST",route="/add"} 2.0' in text
    [load] = [line for line in text.splitlines()
              if line.startswith("nb2api_notebook_load_seconds ")]
    assert float(load.split()[1]) > 0


def test_exported_app_requires_its_token_but_not_on_probes(project, monkeypatch):
    monkeypatch.setenv("API_TOKEN", "k8s-secret")
    with exported_server(project) as client:
        refused = client.post("/add", json={"a": 1, "b": 2})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert client.post("/add", json={"a": 1, "b": 2},
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/add", json={"a": 1, "b": 2},
                           headers={"Authorization": "Bearer k8s-secret"}).json() == 5
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert client.get(path).status_code == 200, path


_CHILD_PEAK = """
import os, sys
ballast = bytearray(300 * 1024 * 1024)  # touched: resident
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # a child the size of this process, which then runs another program
    os.dup2(write, 1)
    os.execv(sys.executable, [sys.executable, "-c",
             "from nb2api.k8s import peak_memory; print(peak_memory())"])
os.close(write)
print(os.read(read, 100).decode().strip())
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the inherited peak is a fork and exec matter")
def test_the_memory_request_counts_the_export_not_the_process_that_started_it():
    """``ru_maxrss`` survives ``exec``: an export started from a big process (a Jupyter server,
    a test runner) would ask for that process's memory."""
    found = subprocess.run([sys.executable, "-c", _CHILD_PEAK], capture_output=True, text=True,
                           timeout=120, check=True)
    peak = int(found.stdout)
    assert 0 < peak < 200 * 1024 * 1024, peak
