"""Tables as Arrow IPC streams and Parquet files: answers by content negotiation, request bodies
(whole, or a multipart part), OpenAPI, bounds, and the ``arrow`` extra when it is missing."""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import code, serve
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fastpath import fast_routes

import nb2api
from nb2api.types import columnar, records

pa = pytest.importorskip("pyarrow")

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"

# The notebook's table of every dtype that must survive; the tests build the expected one from
# the same source.
TABLE = '''def table() -> pd.DataFrame:
    return pd.DataFrame({
        "n": np.array([1, 2, 3], dtype="int32"),
        "big": np.array([2**62, -1, 0], dtype="int64"),
        "kind": pd.Categorical(["a", "b", "a"]),
        "when": pd.to_datetime(["2024-05-01 10:00", None, "2024-05-02 00:00"]).tz_localize(
            "Europe/Paris"),
        "maybe": pd.array([1, None, 3], dtype="Int64"),
        "x": [0.1 + 0.2, float("nan"), 1e-300],
    })
'''

TABLES = code("""#| api
import numpy as np
import pandas as pd
from typing import Annotated
from fastapi import File
from pydantic import BaseModel


""" + TABLE + """

def indexed() -> pd.DataFrame:
    return pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index(["p", "q"], name="key"))


def series() -> pd.Series:
    return pd.Series([1, 2, 3], name="count")


def matrix() -> np.ndarray:
    return np.arange(6.0).reshape(3, 2)


def loose():
    return pd.DataFrame({"a": [1, 2]})


def loose_dict():
    return {"a": 1}


def mixed() -> pd.DataFrame:
    return pd.DataFrame({"m": pd.Series([1, "a"], dtype=object)})


def describe(df: pd.DataFrame) -> dict:
    return {"rows": len(df), "dtypes": {str(k): str(v) for k, v in df.dtypes.items()},
            "nulls": {str(k): int(v) for k, v in df.isna().sum().items()}}


class Sale(BaseModel):
    item: str
    qty: int


def total(sales: Annotated[pd.DataFrame, Sale]) -> int:
    return int(sales["qty"].sum())


async def answered_by(df: pd.DataFrame) -> str:
    import sys

    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals.get("__name__") == "fastapi.routing":
            return f"fastapi, {len(df)} rows"
        frame = frame.f_back
    return f"fast path, {len(df)} rows"


def upload(table: Annotated[pd.DataFrame, File()]) -> dict:
    return {"rows": len(table), "dtypes": {str(k): str(v) for k, v in table.dtypes.items()}}
""", tags=[])


def arrow_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def from_arrow(content: bytes) -> pd.DataFrame:
    return pa.ipc.open_stream(content).read_all().to_pandas()


def from_parquet(content: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(content))


@pytest.fixture(scope="module")
def tables_notebook(tmp_path_factory):
    from conftest import write_notebook

    return write_notebook(tmp_path_factory.mktemp("tables"), TABLES)


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi"])
def client(request, tables_notebook):
    app = nb2api.create_app(tables_notebook, fast_path=request.param)
    if request.param:  # the JSON requests below do take the fast path
        assert {"table", "describe", "total", "answered_by"} <= fast_routes(app)
    with TestClient(app) as test_client:
        yield test_client


# -- answers ---------------------------------------------------------------------------------


def expected_table() -> pd.DataFrame:
    """What the notebook's ``table()`` returns, made here from the same source."""
    namespace = {"np": np, "pd": pd}
    exec(TABLE, namespace)
    return namespace["table"]()


def test_dtypes_survive_through_a_real_client(tables_notebook):
    """ints stay ints, categoricals stay categoricals, the zone stays, nullable ints keep nulls."""
    with serve(tables_notebook) as server, server.client() as http:
        as_arrow = http.post("/table", headers={"Accept": ARROW})
        as_parquet = http.post("/table", headers={"Accept": PARQUET})
        as_json = http.post("/table")
    assert as_arrow.headers["content-type"] == ARROW
    assert as_parquet.headers["content-type"] == PARQUET
    assert as_json.headers["content-type"] == JSON  # the default
    expected = expected_table()
    for got in (from_arrow(as_arrow.content), from_parquet(as_parquet.content)):
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        dtypes = {name: str(dtype) for name, dtype in got.dtypes.items()}
        assert dtypes == {"n": "int32", "big": "int64", "kind": "category",
                          "when": str(expected.dtypes["when"]), "maybe": "Int64", "x": "float64"}
        assert dtypes["when"].endswith(", Europe/Paris]")
        assert got["maybe"].isna().tolist() == [False, True, False]
        assert got["x"][0] == 0.1 + 0.2
    assert as_json.json()[0]["x"] == 0.1 + 0.2


@pytest.mark.parametrize(("accept", "media_type"), [
    (None, JSON),
    ("*/*", JSON),
    ("application/*", JSON),
    (ARROW, ARROW),
    (f"{PARQUET}, {JSON};q=0.5", PARQUET),
    (f"{JSON};q=0.4, {ARROW};q=0.9, {PARQUET};q=0.8", ARROW),
    (f"{ARROW};q=0.2, */*;q=0.5", JSON),  # JSON through the wildcard, at a higher q
    (f"{ARROW};q=0, */*", JSON),
    (f"{ARROW}, {PARQUET}", ARROW),  # a tie: the client's first
    ("text/html, */*;q=0.8", JSON),  # what a browser sends
])
def test_the_accept_header_picks_the_format(client, accept, media_type):
    response = client.post("/table", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    if media_type == ARROW:
        assert len(from_arrow(response.content)) == 3
    elif media_type == PARQUET:
        assert len(from_parquet(response.content)) == 3
    else:
        assert len(response.json()) == 3


@pytest.mark.parametrize("accept", ["text/html", "text/csv, image/*", f"{JSON};q=0, {ARROW};q=0"])
def test_a_table_route_answers_406_when_accept_takes_no_format(client, accept):
    response = client.post("/table", headers={"Accept": accept})
    assert response.status_code == 406
    assert ARROW in response.json()["detail"] and JSON in response.json()["detail"]


def test_index_series_and_arrays_as_tables(client):
    indexed = from_arrow(client.post("/indexed", headers={"Accept": ARROW}).content)
    assert indexed.to_dict("list") == {"key": ["p", "q"], "v": [1.5, 2.5]}  # as JSON shows it
    assert client.post("/indexed").json() == [{"key": "p", "v": 1.5}, {"key": "q", "v": 2.5}]
    series = from_parquet(client.post("/series", headers={"Accept": PARQUET}).content)
    assert series.to_dict("list") == {"count": [1, 2, 3]}
    matrix = pa.ipc.open_stream(client.post("/matrix", headers={"Accept": ARROW}).content)
    column = matrix.read_all().column("values").combine_chunks()
    np.testing.assert_array_equal(column.to_numpy_ndarray(), np.arange(6.0).reshape(3, 2))


def test_an_undeclared_result_is_a_table_when_it_is_one(client):
    assert from_arrow(client.post("/loose", headers={"Accept": ARROW}).content)["a"].tolist() \
        == [1, 2]
    assert client.post("/loose_dict", headers={"Accept": f"{ARROW}, {JSON};q=0.1"}).json() \
        == {"a": 1}
    assert client.post("/loose_dict", headers={"Accept": ARROW}).status_code == 406
    assert client.post("/loose_dict", headers={"Accept": "text/html"}).json() == {"a": 1}


def test_a_table_arrow_cannot_type_is_json_when_json_will_do_else_406(client):
    response = client.post("/mixed", headers={"Accept": f"{ARROW}, */*;q=0.1"})
    assert response.headers["content-type"] == JSON
    assert response.json() == [{"m": 1}, {"m": "a"}]
    response = client.post("/mixed", headers={"Accept": ARROW})
    assert response.status_code == 406
    assert JSON in response.json()["detail"]


def test_openapi_lists_the_table_media_types(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/table", "/series", "/matrix"):
        answers = paths[route]["post"]["responses"]
        assert {JSON, ARROW, PARQUET} <= set(answers["200"]["content"])
        assert "406" in answers
    for route in ("/describe", "/total"):
        assert {JSON, ARROW, PARQUET} <= set(paths[route]["post"]["requestBody"]["content"])
    assert list(paths["/loose_dict"]["post"]["responses"]["200"]["content"]) != [ARROW]
    assert "requestBody" not in paths["/table"]["post"]


# -- request bodies --------------------------------------------------------------------------


def sent() -> pd.DataFrame:
    return pd.DataFrame({
        "i": np.array([7, 8], dtype="int16"),
        "c": pd.Categorical(["x", "y"]),
        "z": pd.to_datetime(["2024-01-01 12:00", "2024-06-01 12:00"]).tz_localize("Asia/Tokyo"),
        "m": pd.array([None, 5], dtype="Int64"),
    })


@pytest.mark.parametrize(("media_type", "write"), [(ARROW, arrow_bytes),
                                                   (PARQUET, parquet_bytes)])
def test_a_whole_body_table_keeps_its_dtypes(client, media_type, write):
    response = client.post("/describe", content=write(sent()),
                           headers={"Content-Type": media_type})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["rows"] == 2
    assert got["dtypes"]["i"] == "int16" and got["dtypes"]["c"] == "category"
    assert got["dtypes"]["z"].endswith(", Asia/Tokyo]") and got["dtypes"]["m"] == "Int64"
    assert got["nulls"] == {"i": 0, "c": 0, "z": 0, "m": 1}


def test_a_table_body_is_validated_against_its_row(client):
    good = pd.DataFrame({"item": ["a", "b"], "qty": [2, 3]})
    assert client.post("/total", content=arrow_bytes(good),
                       headers={"Content-Type": ARROW}).json() == 5
    bad = pd.DataFrame({"item": ["a", "b"], "qty": ["2", "many"]})
    response = client.post("/total", content=arrow_bytes(bad), headers={"Content-Type": ARROW})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"][-2:] == [1, "qty"]


@pytest.mark.parametrize("media_type", [ARROW, PARQUET])
def test_an_unreadable_table_body_is_422(client, media_type):
    response = client.post("/describe", content=b"PAR1 not a table",
                           headers={"Content-Type": media_type})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "file_format"


def test_an_arrow_file_as_a_multipart_part(client):
    response = client.post("/upload", files={"table": ("t.arrows", arrow_bytes(sent()), ARROW)})
    assert response.status_code == 200, response.text
    assert response.json()["dtypes"]["c"] == "category"
    response = client.post("/upload", files={"table": ("t.bin", arrow_bytes(sent()))})  # magic
    assert response.json()["rows"] == 2


def test_table_bodies_are_bounded(tables_notebook):
    many = pd.DataFrame({"a": np.zeros(2_000, dtype="int64")})
    app = nb2api.create_app(tables_notebook, max_upload_rows=1_000, max_body_size=200_000)
    with TestClient(app) as bounded:
        for body, media_type in ((arrow_bytes(many), ARROW), (parquet_bytes(many), PARQUET)):
            response = bounded.post("/describe", content=body, headers={"Content-Type": media_type})
            assert response.status_code == 413
            assert "max_upload_rows" in response.json()["detail"]
        wide = pd.DataFrame({f"c{i}": np.zeros(3, dtype="int64") for i in range(200)})
        response = bounded.post("/describe", content=arrow_bytes(wide),
                                headers={"Content-Type": ARROW})
        assert response.status_code == 200  # 3 rows x 200 columns: under 1,000 rows' worth
        huge = pd.DataFrame({"a": np.arange(100_000, dtype="int64")})
        response = bounded.post("/describe", content=arrow_bytes(huge),
                                headers={"Content-Type": ARROW})
        assert response.status_code == 413  # the body limit, before it is read


@pytest.mark.parametrize("batch_rows", [100_000, None])  # many batches, or one
def test_a_compressed_arrow_stream_is_refused_before_it_is_decoded(tables_notebook, batch_rows):
    zeros = pa.table({"a": np.zeros(1_500_000, dtype="int64")})
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, zeros.schema, options=options) as writer:
        writer.write_table(zeros, max_chunksize=batch_rows)
    body = sink.getvalue().to_pybytes()
    assert len(body) < 100_000  # small on the wire, 12 MB decoded
    with TestClient(nb2api.create_app(tables_notebook, max_upload_rows=1_000_000)) as bounded:
        response = bounded.post("/describe", content=body, headers={"Content-Type": ARROW})
        assert response.status_code == 413
        assert "1000000 rows" in response.json()["detail"]
        wide = pa.table({f"c{i}": np.zeros(3_000, dtype="int64") for i in range(60)})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, wide.schema, options=options) as writer:
            writer.write_table(wide)
        response = bounded.post("/describe", content=sink.getvalue().to_pybytes(),
                                headers={"Content-Type": ARROW})
    assert response.status_code == 200  # 1.4 MB decoded, within 1,000,000 rows' worth
    with TestClient(nb2api.create_app(tables_notebook, max_upload_rows=1_000)) as bounded:
        response = bounded.post("/describe", content=sink.getvalue().to_pybytes(),
                                headers={"Content-Type": ARROW})
    assert response.status_code == 413  # 3,000 rows and 1.4 MB: past 1,000 rows' 1 MB
    assert "max_upload_rows" in response.json()["detail"]


def test_an_arrow_file_body_and_part(client):
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(sent(), preserve_index=False)
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    response = client.post("/describe", content=data,
                           headers={"Content-Type": "application/vnd.apache.arrow.file"})
    assert response.status_code == 200, response.text
    assert response.json()["dtypes"]["c"] == "category"
    response = client.post("/upload", files={"table": ("t.feather", data)})
    assert response.json()["rows"] == 2


@pytest.mark.parametrize("media_type", [ARROW, PARQUET])
def test_the_fast_path_takes_table_bodies_and_leaves_refusals_to_fastapi(tables_notebook,
                                                                          media_type):
    write = arrow_bytes if media_type == ARROW else parquet_bytes
    for fast, handler in ((True, "fast path"), (False, "fastapi")):
        app = nb2api.create_app(tables_notebook, fast_path=fast, max_upload_rows=5)
        with TestClient(app) as client:
            response = client.post("/answered_by", content=write(sent()),
                                   headers={"Content-Type": media_type})
            assert response.json() == f"{handler}, 2 rows"
            too_many = pd.DataFrame({"a": range(6)})
            response = client.post("/answered_by", content=write(too_many),
                                   headers={"Content-Type": media_type})
            assert response.status_code == 413  # the same answer both ways
            response = client.post("/answered_by", content=b"PAR1 broken",
                                   headers={"Content-Type": media_type})
            assert response.status_code == 422


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain"])
def test_a_binary_body_of_another_type_is_a_422(client, content_type):
    """FastAPI hands the bytes to the body model, and quotes them in its 422."""
    response = client.post("/describe", content=b"\xff\xfe\x00 not UTF-8",
                           headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


@pytest.fixture(scope="module")
def plain_client(tables_notebook):
    with TestClient(nb2api.create_app(tables_notebook, max_upload_rows=10_000)) as test_client:
        yield test_client


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), st.sampled_from([ARROW, PARQUET]))
def test_a_damaged_table_body_is_a_4xx_never_a_500(plain_client, data, media_type):
    """Bytes flipped, cut or appended anywhere in a valid body: a 200, or a 4xx with detail."""
    body = bytearray(arrow_bytes(sent()) if media_type == ARROW else parquet_bytes(sent()))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(body) - 1))
        body[at] = data.draw(st.integers(0, 255))
    body = bytes(body[: data.draw(st.integers(0, len(body)))]) + data.draw(st.binary(max_size=8))
    response = plain_client.post("/describe", content=body, headers={"Content-Type": media_type})
    assert response.status_code in (200, 413, 422), response.text
    assert response.json()["detail"] if response.status_code != 200 else True


# -- without the arrow extra -----------------------------------------------------------------


def test_without_pyarrow_the_media_types_name_the_extra(tables_notebook, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    monkeypatch.setattr(records, "pa", None)
    assert not columnar.available()
    with TestClient(nb2api.create_app(tables_notebook)) as client:
        response = client.post("/table", headers={"Accept": ARROW})
        assert response.status_code == 406
        assert "nb2api[arrow]" in response.json()["detail"]
        response = client.post("/table", headers={"Accept": f"{PARQUET}, {JSON};q=0.1"})
        assert response.headers["content-type"] == JSON
        response = client.post("/describe", content=b"\xff\xff\xff\xff",
                               headers={"Content-Type": ARROW})
        assert response.status_code == 415
        assert "nb2api[arrow]" in response.json()["detail"]
        response = client.post("/upload", files={"table": ("t.arrows", b"\xff\xff\xff\xff")})
        assert response.status_code == 415
        paths = client.get("/openapi.json").json()["paths"]
        assert ARROW not in paths["/table"]["post"]["responses"]["200"]["content"]
        assert ARROW not in paths["/describe"]["post"]["requestBody"]["content"]
        assert client.post("/table").json()[0]["n"] == 1  # JSON, as ever


# -- negotiation, as a parser ----------------------------------------------------------------


@given(st.text(max_size=60))
def test_any_accept_header_gives_an_offered_type_or_none(header):
    assert columnar.negotiate(header, (JSON, ARROW, PARQUET)) in (None, JSON, ARROW, PARQUET)


@pytest.mark.parametrize(("header", "expected"), [
    ("application/json;q=abc, */*;q=0.1", ARROW),  # a q that is no number accepts nothing
    ("APPLICATION/VND.APACHE.ARROW.STREAM", ARROW),
    (f"{ARROW};q=0.5;charset=x, {PARQUET};q=0.5", ARROW),
    (f"application/*;q=0.3, {PARQUET}", PARQUET),
    (f"{JSON};q=0, application/*;q=0.3", ARROW),
    ("", JSON),
    (" , ", JSON),
])
def test_negotiate(header, expected):
    assert columnar.negotiate(header, (JSON, ARROW, PARQUET)) == expected


@st.composite
def typed_tables(draw):
    # At least a row: a categorical of an empty table comes back without its categories.
    n = draw(st.integers(min_value=1, max_value=8))
    ints = st.integers(-(2**63), 2**63 - 1)
    return pd.DataFrame({
        "i": np.array(draw(st.lists(ints, min_size=n, max_size=n)), dtype="int64"),
        "u8": np.array(draw(st.lists(st.integers(0, 255), min_size=n, max_size=n)), dtype="uint8"),
        "f": np.array(draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)),
                      dtype="float64"),
        "c": pd.Categorical(draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n,
                                          max_size=n)), categories=["a", "b", "c"]),
        "n": pd.array(draw(st.lists(st.none() | st.integers(-5, 5), min_size=n, max_size=n)),
                      dtype="Int64"),
        "z": pd.to_datetime(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)),
                            unit="s").tz_localize("UTC").tz_convert("America/New_York"),
        "s": pd.Series(draw(st.lists(st.none() | st.text(max_size=5), min_size=n, max_size=n)),
                       dtype="str"),
    })


@settings(max_examples=40, deadline=None)
@given(typed_tables(), st.sampled_from([ARROW, PARQUET]))
def test_a_table_written_and_read_back_is_the_same_table(df, media_type):
    """What an answer writes, a body reads back: values and dtypes, both formats."""
    seen: list[tuple[int, int]] = []
    back = columnar.read(columnar.write(df, media_type), media_type,
                         lambda rows, size: seen.append((rows, size)))
    pd.testing.assert_frame_equal(back, df)
    assert seen and seen[-1][0] == len(df)
