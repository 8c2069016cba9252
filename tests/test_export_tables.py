"""An exported project answers tables as ``nb2api serve`` does: JSON by default, an Arrow IPC
stream or a Parquet file when ``Accept`` asks, a 406 when it takes none; the same bytes."""

import io

import pandas as pd
import pytest
from conftest import code, write_notebook
from fastapi.testclient import TestClient
from test_export import import_exported

import nb2api
from nb2api.export import export_notebook
from nb2api.load import load_notebook

pa = pytest.importorskip("pyarrow")

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"

CELLS = [
    code("import numpy as np\nimport pandas as pd", tags=["setup"]),
    code(
        "def sales(n: int = 3) -> pd.DataFrame:\n"
        "    return pd.DataFrame({'x': np.arange(n) / 3, 'k': pd.Categorical(['a', 'b', 'a'][:n]),\n"
        "                         'when': pd.date_range('2024-01-01', periods=n, tz='UTC')})\n"
        "\n"
        "def anything(request: int = 1):\n"
        "    return pd.Series([1.5, 2.5], name='v') if request else {'not': 'a table'}\n"
        "\n"
        "async def later() -> pd.DataFrame:\n"
        "    return pd.DataFrame({'a': [1, 2]})\n",
        tags=["api"],
    ),
]


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export_tables")
    loaded = load_notebook(write_notebook(folder, *CELLS, name="tables.ipynb"))
    project = export_notebook(loaded, folder / "project")
    exported = getattr(import_exported(project, "exported_tables"), project.app_name)
    with TestClient(nb2api.create_app(loaded)) as served, TestClient(exported) as theirs:
        yield served, theirs


@pytest.mark.parametrize(("path", "accept"), [
    ("/sales", ARROW), ("/sales", PARQUET), ("/sales", None), ("/sales", "*/*"),
    ("/sales", f"application/json;q=0.5, {ARROW}"), ("/sales", "text/csv"),
    ("/anything", ARROW), ("/anything?request=0", ARROW),
    ("/anything?request=0", f"{ARROW}, application/json;q=0.1"), ("/later", PARQUET),
])
def test_the_export_answers_tables_as_serve_does(apps, path, accept):
    served, exported = apps
    headers = {"Accept": accept} if accept else {}
    ours = served.post(path, headers=headers)
    theirs = exported.post(path, headers=headers)
    assert (theirs.status_code, theirs.headers["content-type"]) == \
        (ours.status_code, ours.headers["content-type"])
    if ours.status_code == 200 and ours.headers["content-type"] != PARQUET:
        assert theirs.content == ours.content  # Parquet files name their writer's version
    elif ours.status_code == 406:
        assert theirs.json()["detail"] == ours.json()["detail"]


def test_an_exported_arrow_answer_reads_back_with_its_dtypes(apps):
    _, exported = apps
    answer = exported.post("/sales", headers={"Accept": ARROW})
    assert answer.headers["content-type"] == ARROW
    df = pa.ipc.open_stream(answer.content).read_all().to_pandas()
    assert isinstance(df["k"].dtype, pd.CategoricalDtype)
    assert str(df["when"].dt.tz) == "UTC"
    parquet = exported.post("/sales", headers={"Accept": PARQUET})
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(parquet.content)), df)


def test_the_exported_document_lists_the_table_media_types(apps):
    served, exported = apps
    ours = served.get("/openapi.json").json()["paths"]["/sales"]["post"]["responses"]
    theirs = exported.get("/openapi.json").json()["paths"]["/sales"]["post"]["responses"]
    assert set(theirs["200"]["content"]) == set(ours["200"]["content"]) >= {ARROW, PARQUET}
    assert theirs["406"] == ours["406"]
