"""``nb2api export``: a standalone project that serves like ``nb2api serve``, without nb2api."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from columnar_helpers import without_columnar
from conftest import code, free_port, notebook_path, serve, wait_until_answers
from export_helpers import RUN_APP
from jobs_helpers import without_jobs
from typer.testing import CliRunner

from nb2api.cli import app as cli
from nb2api.export import export_notebook, imported_modules


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
        [sys.executable, "-c", RUN_APP, f"app:{project.app_name}", str(port)],
        cwd=project.folder, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(f"{base_url}/readyz", process, log.read_text)
        with httpx.Client(base_url=base_url, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=15)


def _comparable(spec: dict) -> tuple[dict, dict]:
    """Paths and component schemas; responses only of the statuses both servers answer with
    (an export runs no jobs)."""
    spec = without_jobs(spec)
    paths = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            operation = without_columnar(operation)  # nb2api serve's Arrow and Parquet
            operation["responses"] = {
                status: response for status, response in operation["responses"].items()
                if status in ("200", "422", "500")
            }
            paths[f"{method.upper()} {path}"] = operation
    return paths, spec.get("components", {})


def test_project_files(iris):
    names = {str(p.relative_to(iris.folder)) for p in iris.files}
    assert {"app.py", "requirements.txt", "Dockerfile", ".dockerignore", "README.md",
            "nbtypes/__init__.py", "nbtypes/VENDORED.txt", "nbkernel.py", "nbops.py",
            "static/swagger-ui/swagger-ui-bundle.js"} <= names
    assert {name.split("/")[0] for name in names} == {
        "app.py", "requirements.txt", "Dockerfile", ".dockerignore", "README.md", "nbtypes",
        "nbkernel.py", "nbops.py", "static"}
    requirements = iris.requirements
    assert [r.split("==")[0] for r in requirements] == [
        "anyio", "fastapi", "numpy", "orjson", "pandas", "prometheus-client", "pydantic",
        "uvicorn[standard]"]
    assert all("==" in r for r in requirements)
    assert (iris.folder / "requirements.txt").read_text().splitlines() == list(requirements)
    dockerfile = (iris.folder / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in dockerfile
    assert 'CMD ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"' in dockerfile
    assert "COPY requirements.txt" in dockerfile and "USER api" in dockerfile
    assert "uvicorn app:app" in (iris.folder / "README.md").read_text()


def test_ipython_lines_are_left_out_with_a_warning_naming_cell_and_line(iris):
    dropped = [w for w in iris.warnings if "left out" in w]
    assert len(dropped) == 2
    assert all('cell 2 ("%matplotlib inline")' in w for w in dropped)
    assert [w.split("line ")[1].split(":")[0] for w in dropped] == ["2", "3"]
    source = (iris.folder / "app.py").read_text()
    assert "# left out by nb2api export (IPython only): %matplotlib inline" in source
    assert "get_ipython" not in source
    # display() stays, as in the notebook: the vendored kernel binds it to a no-op.
    assert "\ndisplay(frame)" in source and "kernel_namespace(" in source
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


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "frames"
    return export_notebook(notebook_path("export_frames"), folder)


def test_the_project_vendors_nb2api_types_byte_for_byte(frames):
    """nbtypes/ is nb2api/types: every file identical, none missing, none added but the note."""
    import nb2api

    package = Path(nb2api.__file__).parent / "types"
    originals = {p.relative_to(package).as_posix(): p.read_bytes()
                 for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    vendored = frames.folder / "nbtypes"
    copies = {p.relative_to(vendored).as_posix(): p.read_bytes()
              for p in vendored.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "errors.py" in originals and "encoding.py" in originals
    assert copies.pop("VENDORED.txt").decode().startswith("nbtypes/ is the package nb2api/types")
    assert copies == originals
    kernel = Path(nb2api.__file__).parent / "load" / "kernel.py"
    assert (frames.folder / "nbkernel.py").read_bytes() == kernel.read_bytes()
    ops = Path(nb2api.__file__).parent / "templates" / "export" / "nbops.py"
    assert (frames.folder / "nbops.py").read_bytes() == ops.read_bytes()
    pins = [r.split("==")[0] for r in frames.requirements]
    assert {"numpy", "pandas", "orjson", "python-multipart", "matplotlib"} <= set(pins)
    source = (frames.folder / "app.py").read_text()
    assert "import nbtypes" in source and "nbtypes.request_type(Annotated[pd.DataFrame, Sale])" \
        in source


def test_a_notebook_without_data_types_gets_nbtypes_but_not_numpy(make_notebook, tmp_path):
    path = make_notebook(code("def add(a: int, b: int = 1) -> dict:\n    return {'sum': a + b}",
                              tags=["api"]))
    project = export_notebook(path, tmp_path / "out")
    assert (project.folder / "nbtypes" / "errors.py").is_file()
    assert [r.split("==")[0] for r in project.requirements] == [
        "anyio", "fastapi", "orjson", "prometheus-client", "pydantic", "uvicorn[standard]"]
    source = (project.folder / "app.py").read_text()
    assert "nbtypes.make_encoder(dict)" in source and "nbtypes.respond(" in source
    for behaviour in ("uuid", "import traceback", "ValidationError", "class ErrorBody", "to_json"):
        assert behaviour not in source, behaviour


def _csv(text: str) -> dict:
    return {"files": {"table": ("sales.csv", text.encode(), "text/csv")}}


def test_round_trip_of_data_science_types_without_nb2api(frames):
    """DataFrames, Series, arrays, uploads and images: same schemas, answers, 422s and 500s."""
    import io

    import pandas as pd

    parquet = io.BytesIO()
    pd.DataFrame({"item": ["a"], "price": [2.5], "qty": [4]}).to_parquet(parquet)
    sales = [{"item": "a", "price": 2, "qty": 3}, {"item": "b", "price": 1.5, "qty": 2}]
    with serve(notebook_path("export_frames")) as reference, reference.client() as ours, \
            exported_server(frames) as theirs:
        expected_spec, got_spec = ours.get("/openapi.json").json(), theirs.get(
            "/openapi.json").json()
        assert _comparable(got_spec) == _comparable(expected_spec)
        requests = [
            ("/describe", {"json": {"table": [{"a": 1, "b": "x"}, {"a": 2, "b": None}]}}),
            ("/describe", {"json": {"table": {"columns": ["a"], "data": [[1], [2]],
                                              "index": ["x", "y"]}}}),
            ("/describe", {"json": {"table": {"columns": ["a"], "data": [[1, 2]]}}}),  # 422
            ("/priced", {"json": {"sales": sales}}),
            ("/priced", {"json": {"sales": [sales[0], {"item": "b", "price": "?"}]}}),  # 422
            ("/first", {"json": {"sales": sales, "n": 1}}),
            ("/cumulative", {"json": {"values": [1, 2, None]}}),
            ("/cumulative", {"json": {"values": {"x": 1, "y": 2}}}),
            ("/scaled", {"json": {"matrix": [[1, 2], [3, 4]], "factor": 0.5}}),
            ("/scaled", {"json": {"matrix": [[1, 2], [3]]}}),  # 422: ragged
            ("/scaled", {"json": {"matrix": [["a", "b"]]}}),  # 422: not numbers
            ("/stats", {"json": {"values": [1, 2, 3]}}),
            ("/when", {}),
            ("/upload", {**_csv("item,price,qty\na,2.0,3\nb,1.5,2\n"), "data": {"note": "hi"}}),
            ("/upload", _csv("item,price,qty\na,cheap,3\n")),  # 422: the row and the column
            ("/upload", {"files": {"table": ("s.parquet", parquet.getvalue(),
                                             "application/octet-stream")}}),
            ("/upload", {"json": {}}),  # 422: no file
            ("/raw", {"files": {"data": ("x.bin", b"hello world", "application/octet-stream")}}),
            ("/stream", {"files": {"file": ("x.txt", b"abc", "text/plain")},
                         "data": {"label": "L"}}),
        ]
        for path, kwargs in requests:
            expected, got = ours.post(path, **kwargs), theirs.post(path, **kwargs)
            assert (got.status_code, got.json()) == (expected.status_code, expected.json()), path
            assert got.headers["content-type"] == expected.headers["content-type"]
        statuses = [theirs.post(path, **kwargs).status_code for path, kwargs in requests]
        assert statuses.count(422) == 6 and statuses.count(200) == len(requests) - 6
        bad_row = theirs.post("/priced", json={"sales": [sales[0], {"item": "b", "price": "?"}]})
        assert [e["loc"] for e in bad_row.json()["detail"]][:2] == [
            ["body", "sales", 1, "price"], ["body", "sales", 1, "qty"]]
        ragged = theirs.post("/scaled", json={"matrix": [[1, 2], [3]]}).json()["detail"][0]
        assert ragged["loc"] == ["body", "matrix"] and "ragged" in ragged["msg"]
        expected, got = ours.post("/bad_result"), theirs.post("/bad_result")
        assert got.status_code == expected.status_code == 500
        assert got.json()["detail"] == expected.json()["detail"]
        assert "does not match its return annotation" in got.json()["detail"]
        image = theirs.post("/plot", json={"n": 4})
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
        responses = got_spec["paths"]["/plot"]["post"]["responses"]["200"]["content"]
        assert list(responses) == ["image/png"]
        schemas = got_spec["components"]["schemas"]
        rows = schemas["PricedResponse"]
        assert "Sale" in json.dumps(rows)
        assert "multipart/form-data" in got_spec["paths"]["/upload"]["post"]["requestBody"][
            "content"]


def import_exported(project, name: str):
    """The exported app.py as a module named ``name``, with its own ``nbtypes`` package."""
    spec = importlib.util.spec_from_file_location(name, project.folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    # As a real import (uvicorn app:app) does: pydantic looks the module up while it builds
    # generic models at module level (RootModel[Point]).
    sys.modules[name] = module
    for loaded in [m for m in sys.modules if m == "nbtypes" or m.startswith("nbtypes.")]:
        del sys.modules[loaded]  # another export's copy
    previous = os.getcwd()
    sys.path.insert(0, str(project.folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(project.folder))
        os.chdir(previous)
    return module


def test_wiring_never_rebinds_the_notebooks_names(tmp_path):
    """The notebook's own `app`, `Path` and `ErrorBody` keep their meaning; schemas keep names."""
    from fastapi.testclient import TestClient

    project = export_notebook(notebook_path("export_names"), tmp_path / "names")
    assert project.app_name == "_app"
    assert any("'%%time'" in w and "line 1" in w for w in project.warnings)
    module = import_exported(project, "exported_names")
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
    module = import_exported(project, f"exported_{name}")
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


def test_cells_run_as_in_a_kernel_in_the_export_too(make_notebook, tmp_path):
    """__name__ == "__main__", display(), top-level await and a shell escape inside a block:
    the exported app runs the cells as nb2api serve does."""
    path = make_notebook(
        "#| setup\nimport asyncio\nif True:\n    !echo hi\nmain_seen = __name__ == '__main__'\n"
        "display('shown in Jupyter')\nvalue = await asyncio.sleep(0, result=41)",
        "#| api\ndef answer() -> dict:\n    return {'main': main_seen, 'value': value + 1}",
    )
    from fastapi.testclient import TestClient

    import nb2api

    project = export_notebook(path, tmp_path / "out")
    app = getattr(import_exported(project, "exported_kernel"), project.app_name)
    source = (project.folder / "app.py").read_text()
    assert "# left out by nb2api export (IPython only): !echo hi" in source
    with TestClient(app) as client:
        assert client.post("/answer").json() == {"main": True, "value": 42}
    with TestClient(nb2api.create_app(path)) as client:
        assert client.post("/answer").json() == {"main": True, "value": 42}
