"""Real notebooks serve as they ran in Jupyter.

``tests/realworld/`` holds five notebooks in the shapes people write and publish, each with its
prose, exploration cells left unmarked and the outputs its last run in Jupyter saved:

- ``churn_model``: trains a scikit-learn pipeline that uses a function the notebook defines
  (``column_ratio``) and pickles it with joblib; a setup cell loads the pickle;
- ``sales_report``: a Quarto document (YAML front matter in a raw cell, ``#| label:``,
  ``#| echo: false``, ``# | api`` as black writes it);
- ``advertising_ols``: a statsmodels regression whose summary is served as the notebook shows it;
- ``contacts_api``: a Jupyter Kernel Gateway CRUD notebook in nb2api's contract (headers, ETag
  and 304, 204, a form, content negotiation);
- ``temperature_chapter``: a book chapter full of magics (``%matplotlib``, ``%%time``,
  ``%timeit``, ``!pip`` in an ``if``, ``x = !ls``), IPython's ``display()`` in a loop, top-level
  ``await``
  and ``if __name__ == "__main__":``.

Each passes ``nb2api check`` with exactly the warnings it should get, and each route answers,
through a real ``nb2api serve``, what the notebook itself showed when it ran: the expected values
are read from the outputs of the notebook's own cells. The churn model's pickle is made during
the test by running the notebook in a real ipykernel, so it refers to the kernel's ``__main__``.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import serve
from fastapi.testclient import TestClient
from nbclient import NotebookClient
from test_export import import_exported
from test_export_parity import _both, _paths, answer_alike

import nb2api
from nb2api.export import export_notebook
from nb2api.load import load_notebook

REALWORLD = Path(__file__).parent / "realworld"
CORPUS = ("churn_model", "sales_report", "advertising_ols", "contacts_api",
          "temperature_chapter")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The corpus in a folder of its own, after the churn notebook ran top to bottom in a real
    Jupyter kernel (writing ``churn_model.joblib`` there and its outputs into the notebook)."""
    folder = tmp_path_factory.mktemp("realworld")
    for name in CORPUS:
        shutil.copy(REALWORLD / f"{name}.ipynb", folder)
    book = nbformat.read(folder / "churn_model.ipynb", as_version=4)
    NotebookClient(book, kernel_name="python3", timeout=240,
                   resources={"metadata": {"path": str(folder)}}).execute()
    nbformat.write(book, folder / "churn_model.ipynb")
    assert (folder / "churn_model.joblib").is_file()
    return folder


def shown(path: Path, marker: str):
    """The value the notebook's cell containing ``marker`` showed when it last ran."""
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code" and marker in cell.source:
            results = [o for o in cell.outputs if o.output_type == "execute_result"]
            return ast.literal_eval(results[0]["data"]["text/plain"])
    raise AssertionError(f"no cell of {path.name} holds {marker!r}")


def test_the_corpus_is_what_it_claims():
    """Prose first, unmarked exploration cells, saved outputs, and cells marked for the API."""
    assert sorted(p.stem for p in REALWORLD.glob("*.ipynb")) == sorted(CORPUS)
    for name in CORPUS:
        book = nbformat.read(REALWORLD / f"{name}.ipynb", as_version=4)
        cells = [c for c in book.cells if c.cell_type != "raw"]
        assert cells[0].cell_type == "markdown", name
        code = [c for c in book.cells if c.cell_type == "code"]
        marked = [c for c in code if "| api" in c.source or "| setup" in c.source]
        assert marked and len(marked) < len(code), name
        assert any(c.outputs for c in code if c not in marked), f"{name} has no saved outputs"


EXPECTED_WARNINGS = {
    "churn_model": [],
    "sales_report": [],
    "advertising_ols": [],
    "contacts_api": [],
    "temperature_chapter": [
        "cell 2 (\"%matplotlib inline\"), line 2: left out '%matplotlib inline' (an IPython "
        "magic; a service has no IPython shell to run it)",
        "cell 2 (\"%matplotlib inline\"), line 11: left out '!pip install --quiet matplotlib' "
        "(an IPython shell escape; there is no shell at serve time: run it before serving, or "
        "call subprocess)",
        "cell 5 (\"%%time\"), line 1: left out '%%time' (an IPython cell magic; the cell's code "
        "runs without it)",
    ],
}


@pytest.mark.parametrize("name", CORPUS)
def test_nb2api_check_passes_with_the_expected_warnings(corpus, name):
    path = corpus / f"{name}.ipynb"
    result = subprocess.run([sys.executable, "-m", "nb2api", "check", str(path)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    warnings = [line.removeprefix(f"warning: {path}, ")
                for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == EXPECTED_WARNINGS[name]
    assert "error" not in result.stderr.lower()
    assert result.stdout.startswith(f"{path}: ")


def test_a_pipeline_pickled_in_jupyter_predicts_as_it_did_there(corpus):
    path = corpus / "churn_model.ipynb"
    examples = shown(path, "the API must agree")
    with serve(path) as server, server.client() as client:
        for example in examples:
            customer = {k: v for k, v in example.items() if k != "probability"}
            answer = client.post("/predict", json={"customer": customer})
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"probability": example["probability"],
                                     "churned": example["probability"] >= 0.5}
        table = [{k: v for k, v in e.items() if k != "probability"} for e in examples]
        many = client.post("/predict_many", json={"customers": table})
        assert many.json() == examples
        features = client.get("/features").json()
        assert features[0] == "ratio__charge_ratio" and "contract__contract_two year" in features
        invalid = client.post("/predict", json={"customer": {**table[0], "contract": "weekly"}})
        assert invalid.status_code == 422


def test_a_quarto_document_serves_its_tables(corpus):
    path = corpus / "sales_report.ipynb"
    top, q1 = shown(path, "tbl-check")
    with serve(path) as server, server.client() as client:
        assert client.get("/top/2").json() == [{"product": p, **v} for p, v in top.items()]
        assert client.post("/revenue_by_region", json={"quarter": "Q1"}).json() == [
            {"region": r, **v} for r, v in q1.items()]
        year = client.post("/revenue_by_region").json()
        assert [row["region"] for row in year] == ["north", "south", "west"]
        quarters = client.get("/quarters").json()
        assert len(quarters) == 12 and set(quarters[0]) == {"quarter", "region", "revenue"}
        assert sum(row["revenue"] for row in quarters if row["quarter"] == "Q1") == pytest.approx(
            sum(v["revenue"] for v in q1.values()))
        openapi = client.get("/openapi.json").json()
        description = openapi["paths"]["/revenue_by_region"]["post"]["description"]
        assert description.startswith("Revenue and units by region, for the year")
        assert client.get("/top/2", params={"region": "nowhere"}).json() == []


def test_a_statsmodels_analysis_answers_tables_and_its_summary(corpus):
    path = corpus / "advertising_ols.ipynb"
    expected = shown(path, "What the API should answer")
    with serve(path) as server, server.client() as client:
        coefficients = client.get("/coefficients").json()
        assert coefficients == pytest.approx(expected["params"], abs=1e-3)
        assert list(coefficients) == ["Intercept", "tv", "radio", "newspaper"]
        described = client.post("/describe").json()
        assert [row["index"] for row in described] == [
            "count", "mean", "std", "min", "25%", "50%", "75%", "max"]
        assert described[0] == {"index": "count", "tv": 200.0, "radio": 200.0,
                                "newspaper": 200.0, "sales": 200.0}
        intervals = client.get("/intervals").json()
        assert [row["index"] for row in intervals] == list(expected["params"])
        assert all(row["lower"] < expected["params"][row["index"]] < row["upper"]
                   for row in intervals)
        budget = {"tv": 100.0, "radio": 20.0, "newspaper": 10.0}
        prediction = client.post("/predict", json={"budget": budget}).json()
        assert prediction == pytest.approx(expected["prediction"], abs=1e-3)

        html = client.get("/summary")
        assert html.headers["content-type"].startswith("text/html")
        assert "OLS Regression Results" in html.text and "<table" in html.text
        text = client.get("/summary", headers={"Accept": "text/plain"})
        assert "OLS Regression Results" in text.text and "<table" not in text.text
        latex = client.get("/summary", headers={"Accept": "text/latex"})
        assert "\\begin{tabular}" in latex.text
        assert client.get("/summary", headers={"Accept": "application/json"}).status_code == 406
        openapi = client.get("/openapi.json").json()
        content = openapi["paths"]["/summary"]["get"]["responses"]["200"]["content"]
        assert list(content) == ["text/html", "text/latex", "text/plain"]


# A client's session with the contact list: (request, status, what the body must be).
CONTACT_SESSION = [
    ({"method": "POST", "url": "/contacts", "data": {"name": "Ada", "phone": "555"}}, 201, b""),
    ({"method": "POST", "url": "/contacts", "data": {"name": "Alan", "email": "a@t.uk"}}, 201,
     b""),
    ({"method": "POST", "url": "/contacts", "data": {"phone": "1"}}, 422, None),
    ({"method": "GET", "url": "/contacts/1"}, 200,
     {"name": "Ada", "phone": "555", "email": ""}),
    ({"method": "GET", "url": "/contacts/1", "headers": {"If-None-Match": '"stale"'}}, 200, None),
    ({"method": "GET", "url": "/contacts", "params": {"name-prefix": "Al"}}, 200,
     [{"id": 2, "name": "Alan", "phone": "", "email": "a@t.uk"}]),
    ({"method": "GET", "url": "/contacts", "headers": {"Accept": "text/csv"}}, 200,
     b"id,name,phone,email\n1,Ada,555,\n2,Alan,,a@t.uk\n"),
    ({"method": "PUT", "url": "/contacts/2", "json": {"contact": {"name": "Alan T"}},
      "headers": {"If-Match": '"stale"'}}, 412, None),
    ({"method": "PUT", "url": "/contacts/2", "json": {"contact": {"name": "Alan T"}}}, 200,
     {"name": "Alan T", "phone": "", "email": ""}),
    ({"method": "DELETE", "url": "/contacts/1"}, 204, b""),
    ({"method": "GET", "url": "/contacts/1"}, 404, {"detail": "no contact 1"}),
    ({"method": "GET", "url": "/contacts"}, 200,
     [{"id": 2, "name": "Alan T", "phone": "", "email": ""}]),
]


def _check_session(client) -> None:
    for request, status, body in CONTACT_SESSION:
        answer = client.request(**request)
        assert answer.status_code == status, (request, answer.text)
        if isinstance(body, bytes):
            assert answer.content == body, request
        elif body is not None:
            assert answer.json() == body, request
    etag = client.get("/contacts/2").headers["etag"]
    assert client.get("/contacts/2", headers={"If-None-Match": etag}).status_code == 304
    assert client.put("/contacts/2", json={"contact": {"name": "Alan"}},
                      headers={"If-Match": etag}).status_code == 200


def test_a_kernel_gateway_crud_notebook(corpus):
    path = corpus / "contacts_api.ipynb"
    with serve(path) as server, server.client() as client:
        _check_session(client)
        created = client.post("/contacts", data={"name": "Grace"})
        assert created.headers["location"] == "/contacts/3" and created.headers["etag"]
        csv = client.get("/contacts", headers={"Accept": "text/csv"})
        assert csv.headers["content-type"].startswith("text/csv")


def test_the_kernel_gateway_notebook_exports_and_answers_as_served(corpus, tmp_path):
    served, exported = _both(corpus / "contacts_api.ipynb", tmp_path, "realworld_contacts")
    with TestClient(served) as ours, TestClient(exported) as theirs:
        assert _paths(theirs.get("/openapi.json").json()) == _paths(ours.get("/openapi.json").json())
        for request, _, _ in CONTACT_SESSION:
            expected, got = ours.request(**request), theirs.request(**request)
            assert (got.status_code, got.headers.get("content-type"), got.content) == (
                expected.status_code, expected.headers.get("content-type"), expected.content
            ), request
        etag = ours.get("/contacts/2").headers["etag"]
        assert theirs.get("/contacts/2").headers["etag"] == etag
        for client in (ours, theirs):
            assert client.get("/contacts/2", headers={"If-None-Match": etag}).status_code == 304


def test_a_book_chapter_full_of_magics(corpus):
    path = corpus / "temperature_chapter.ipynb"
    expected = shown(path, "What the API should answer")
    with serve(path) as server, server.client() as client:
        assert client.post("/station_names").json() == {
            "KSEA": "Seattle", "KPDX": "Portland", "KSFO": "San Francisco"}  # awaited
        monthly = client.get("/stations/KSEA/monthly").json()  # made under __main__'s guard
        assert list(monthly) == [str(month) for month in range(1, 13)]
        assert monthly["1"] == pytest.approx(expected["monthly_KSEA_1"])
        warmest = client.post("/warmest", json={"n": 3}).json()
        assert [row["temp_c"] for row in warmest] == expected["warmest"]
        assert set(warmest[0]) == {"index", "day", "station", "temp_c"}
        assert client.post("/convert", json={"celsius": 100}).json() == 212.0  # %timeit's def
        assert client.get("/columns").json() == expected["columns"]  # the display loop's work
        chart = client.get("/chart/KSFO")
        assert chart.headers["content-type"] == "image/png"
        assert chart.content.startswith(b"\x89PNG")
        log = server.output()
    assert "left out '%matplotlib inline'" in log
    assert "KSEA_f" not in log  # IPython's display, imported by the chapter, printed nothing
    assert "Traceback" not in log


@pytest.mark.parametrize("name", CORPUS)
def test_each_notebook_exports_and_answers_as_served(corpus, name, tmp_path, capsys):
    """Generated requests get the same answers from ``nb2api serve``'s app and the export."""
    loaded = load_notebook(corpus / f"{name}.ipynb")
    project = export_notebook(loaded, tmp_path / name)
    for data in corpus.glob("*.joblib"):  # the files the cells read go next to app.py
        shutil.copy(data, project.folder)
    exported = getattr(import_exported(project, f"realworld_{name}"), project.app_name)
    answer_alike(name, nb2api.create_app(loaded), exported, capsys)


def test_a_quarto_documents_title_names_the_api(corpus):
    """The title in the front matter, as Quarto renders it, heads /docs too."""
    app = nb2api.create_app(corpus / "sales_report.ipynb")
    assert app.title == "Quarterly sales report"
    assert nb2api.create_app(corpus / "contacts_api.ipynb").title == "contacts_api"
