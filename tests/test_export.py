"""``nb2api export``: a standalone project that serves like ``nb2api serve``, without nb2api."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, notebook_path, serve
from typer.testing import CliRunner

from nb2api.cli import app as cli
from nb2api.export import export_notebook, imported_modules

# Runs the exported app with every import of nb2api refused, as on a machine without it.
_BLOCKED_RUN = textwrap.dedent(
    """
    import sys

    class RefuseNb2api:
        def find_spec(self, name, path=None, target=None):
            if name == "nb2api" or name.startswith("nb2api."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, RefuseNb2api())
    sys.modules.pop("nb2api", None)
    import uvicorn

    uvicorn.run(sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    """
)


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "iris"
    return export_notebook(notebook_path("export_iris"), folder)


@contextlib.contextmanager
def exported_server(project):
    """The exported app under uvicorn in a subprocess where nb2api cannot be imported."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = project.folder / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-c", _BLOCKED_RUN, f"app:{project.app_name}", str(port)],
        cwd=project.folder, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the exported app exited:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the exported app did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base_url, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=15)


def _comparable(spec: dict) -> tuple[dict, dict]:
    """Paths and component schemas; responses only of the statuses both servers answer with."""
    paths = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            operation = dict(operation)
            operation["responses"] = {
                status: response for status, response in operation["responses"].items()
                if status in ("200", "422", "500")
            }
            paths[f"{method.upper()} {path}"] = operation
    return paths, spec.get("components", {})


def test_project_files(iris):
    names = {p.name for p in iris.files}
    assert names == {"app.py", "requirements.txt", "Dockerfile", ".dockerignore", "README.md"}
    requirements = iris.requirements
    assert [r.split("==")[0] for r in requirements] == [
        "fastapi", "numpy", "pandas", "pydantic", "uvicorn[standard]"]
    assert all("==" in r for r in requirements)
    assert (iris.folder / "requirements.txt").read_text().splitlines() == list(requirements)
    dockerfile = (iris.folder / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in dockerfile
    assert 'CMD ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"' in dockerfile
    assert "COPY requirements.txt" in dockerfile and "USER api" in dockerfile
    assert "uvicorn app:app" in (iris.folder / "README.md").read_text()


def test_ipython_lines_are_left_out_with_a_warning_naming_cell_and_line(iris):
    dropped = [w for w in iris.warnings if "left out" in w]
    assert len(dropped) == 3
    assert all('cell 2 ("%matplotlib inline")' in w for w in dropped)
    assert [w.split("line ")[1].split(":")[0] for w in dropped] == ["2", "3", "15"]
    source = (iris.folder / "app.py").read_text()
    assert "# left out by nb2api export (IPython only): %matplotlib inline" in source
    assert "# left out by nb2api export (IPython only): display(frame)" in source
    assert "get_ipython" not in source and "\ndisplay(" not in source
    assert "not a marked cell" not in source  # unmarked cells stay out
    compile(source, "app.py", "exec")


def test_round_trip_without_nb2api(iris):
    """Same OpenAPI paths and schemas, same answers, with nb2api blocked in the exported app."""
    with serve(notebook_path("export_iris")) as reference, reference.client() as ours, \
            exported_server(iris) as theirs:
        assert _comparable(theirs.get("/openapi.json").json()) == _comparable(
            ours.get("/openapi.json").json())
        requests = [
            ("POST", "/predict", {"json": {"flower": {"petal": 1.2}}}),
            ("POST", "/predict", {"json": {"flower": {"petal": 6}, "threshold": 9}}),
            ("POST", "/predict", {"json": {"flower": {"petal": "long"}}}),  # 422
            ("POST", "/predict", {"json": {"flower": {"petal": 1}, "threshold": -1}}),  # 422
            ("GET", "/species/se", {"params": {"limit": 1}}),
            ("GET", "/species/v", {}),
            ("GET", "/species/v", {"params": {"limit": "many"}}),  # 422
            ("POST", "/echo", {"json": {"payload": [1, {"a": None}], "times": 2}}),
            ("POST", "/matrix", {"json": {"n": 2}}),
            ("POST", "/matrix", {"json": {}}),
        ]
        for method, path, kwargs in requests:
            expected, got = ours.request(method, path, **kwargs), theirs.request(method, path,
                                                                                   **kwargs)
            assert (got.status_code, got.json()) == (expected.status_code, expected.json()), path
        for path, body in (("/fail", {"x": 3}), ("/wrong", {})):
            expected, got = ours.post(path, json=body), theirs.post(path, json=body)
            assert got.status_code == expected.status_code == 500
            assert set(got.json()) == {"detail", "error_id"}
            assert got.json()["detail"] == expected.json()["detail"]
        assert theirs.post("/table", json={}).json() == [
            {"species": "setosa", "petal": 1.4, "missing": 1.0},
            {"species": "versicolor", "petal": 4.2, "missing": None},
            {"species": "virginica", "petal": 5.5, "missing": 3.0},
        ]
        assert theirs.get("/docs").status_code == 200
        assert theirs.get("/healthz").json() == {"status": "ok"}


def _import(project, name: str):
    spec = importlib.util.spec_from_file_location(name, project.folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    previous = os.getcwd()
    try:
        spec.loader.exec_module(module)
    finally:
        os.chdir(previous)
    return module


def test_wiring_never_rebinds_the_notebooks_names(tmp_path):
    """The notebook's own `app`, `Path` and `ErrorBody` keep their meaning; schemas keep names."""
    from fastapi.testclient import TestClient

    project = export_notebook(notebook_path("export_names"), tmp_path / "names")
    assert project.app_name == "_app"
    assert any("'%%time'" in w and "line 1" in w for w in project.warnings)
    module = _import(project, "exported_names")
    assert module.app == "the notebook's own app variable"
    client = TestClient(module._app)
    assert client.get("/files/x.csv").json() == "data/x.csv the notebook's own app variable"
    assert client.post("/defaults", json={}).json() == {"when": "now", "items": [1, 2],
                                                      "ratio": "inf"}
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"ErrorBody", "DefaultsRequest", "FilesResponse"} <= set(schemas)
    source = (project.folder / "app.py").read_text()
    assert source.startswith('"""') and "from __future__ import annotations" in source[:600]
    assert 'CMD ["uvicorn", "app:_app"' in (project.folder / "Dockerfile").read_text()


@pytest.mark.parametrize("name", ["core_types", "core_directives", "core_failures", "core_docs"])
def test_export_matches_serve_schemas_for_core_notebooks(tmp_path, name):
    import nb2api

    project = export_notebook(notebook_path(name), tmp_path / name)
    module = _import(project, f"exported_{name}")
    expected = _comparable(nb2api.create_app(notebook_path(name)).openapi())
    got = _comparable(getattr(module, project.app_name).openapi())
    assert got[0] == expected[0]
    assert set(got[1]["schemas"]) == set(expected[1]["schemas"])


def test_refuses_to_overwrite_an_earlier_export(iris):
    with pytest.raises(FileExistsError):
        export_notebook(notebook_path("export_iris"), iris.folder)


def test_imported_modules_reads_absolute_imports_only():
    code = "import os, numpy.linalg as la\nfrom pandas import DataFrame\nfrom . import x\n"
    assert imported_modules(code) == ["os", "numpy", "pandas"]


def test_cli_export(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(notebook_path("export_iris")),
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "uvicorn app:app" in result.stdout
    assert "left out '%matplotlib inline'" in result.stderr
    assert (tmp_path / "out" / "app.py").is_file()
    again = CliRunner().invoke(cli, ["export", str(notebook_path("export_iris")),
                                     str(tmp_path / "out")])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_cli_export_of_a_broken_notebook_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["export", str(notebook_path("err_syntax")),
                                      str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "cell" in result.stderr and not (tmp_path / "out").exists()


def test_exported_app_never_imports_nb2api(iris):
    source = (iris.folder / "app.py").read_text()
    assert "import nb2api" not in source and "from nb2api" not in source
    assert Path(iris.folder / ".dockerignore").read_text().startswith(".git")
