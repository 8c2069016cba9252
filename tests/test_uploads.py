"""Multipart uploads: CSV and Parquet into a DataFrame, raw bytes, UploadFile, form fields."""

import io

import pandas as pd
import pytest
from fastapi.testclient import TestClient

import nb2api
from nb2api.errors import AnnotationError, SignatureError

CSV = b"item,price,qty\na,1.5,2\nb,2,3\n"


@pytest.fixture
def uploads(notebook):
    return TestClient(nb2api.create_app(notebook("types_uploads")))


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_csv_upload_into_a_dataframe_with_a_form_field(uploads):
    response = uploads.post("/upload", files={"table": ("sales.csv", CSV, "text/csv")},
                            data={"note": "march"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == 2
    assert body["columns"] == ["item", "price", "qty"]
    assert body["dtypes"]["price"] == "float64"
    assert body["note"] == "march"


@pytest.mark.parametrize("filename", ["t.parquet", "t.bin"])  # by name, or by its magic bytes
def test_parquet_upload_into_a_dataframe(uploads, filename):
    data = parquet(pd.DataFrame({"a": [1, 2], "t": pd.to_datetime(["2024-01-01", "2024-01-02"])}))
    response = uploads.post("/upload",
                            files={"table": (filename, data, "application/octet-stream")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["a", "t"]
    assert body["dtypes"]["t"].startswith("datetime64")


@pytest.mark.parametrize(("filename", "data"), [
    ("t.parquet", b"PAR1 but not parquet"),
    ("t.csv", b""),
])
def test_unreadable_file_is_422(uploads, filename, data):
    response = uploads.post("/upload", files={"table": (filename, data, "text/csv")})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "table"]
    assert error["type"] == "file_format"


def test_missing_file_is_422(uploads):
    response = uploads.post("/upload", data={"note": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "table"]


def test_uploaded_rows_are_validated_against_the_row(uploads):
    assert uploads.post("/sales", files={"table": ("s.csv", CSV, "text/csv")}).json() == 9.0
    bad = b"item,price,qty\na,1,2\nb,cheap,1\n"
    response = uploads.post("/sales", files={"table": ("s.csv", bad, "text/csv")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "table", 1, "price"]


def test_bytes_and_uploadfile_receive_the_raw_file(uploads):
    files = {"data": ("x.bin", b"hello world", "application/octet-stream")}
    assert uploads.post("/raw", files=files).json() == {"size": 11, "head": "hello"}
    response = uploads.post("/stream", files={"file": ("x.txt", b"hello", "text/plain")},
                            data={"label": "L"})
    assert response.json() == {"name": "x.txt", "type": "text/plain", "size": 5, "label": "L"}


def test_docs_show_a_file_picker(uploads):
    spec = uploads.get("/openapi.json").json()
    body = spec["paths"]["/upload"]["post"]["requestBody"]
    ref = body["content"]["multipart/form-data"]["schema"]["$ref"]
    form = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert form["properties"]["table"]["contentMediaType"] == "application/octet-stream"
    assert "CSV or Parquet" in form["properties"]["table"]["description"]
    assert form["properties"]["note"]["type"] == "string"
    assert form["required"] == ["table"]


def test_file_on_a_get_route_is_refused(make_notebook):
    notebook = make_notebook("#| api\n#| route: GET /raw\ndef raw(data: bytes) -> int:\n"
                             "    return len(data)")
    with pytest.raises(SignatureError) as caught:
        nb2api.create_app(notebook)
    assert (caught.value.function, caught.value.parameter) == ("raw", "data")


def test_structured_form_field_next_to_a_file_is_refused(make_notebook):
    notebook = make_notebook(
        "#| setup\nfrom typing import Annotated\n\nimport pandas as pd\nfrom fastapi import File\n"
        "from pydantic import BaseModel\n\n\nclass Options(BaseModel):\n    sep: str",
        "#| api\ndef upload(table: Annotated[pd.DataFrame, File()], options: Options) -> int:\n"
        "    return len(table)",
    )
    with pytest.raises(AnnotationError) as caught:
        nb2api.create_app(notebook)
    assert (caught.value.function, caught.value.parameter) == ("upload", "options")
    assert "Options" in str(caught.value)
