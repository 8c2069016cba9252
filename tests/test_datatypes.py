"""DataFrames, Series and arrays as request parameters: round trips, 422s, /docs, refusals."""

from typing import Annotated

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, TypeAdapter

import nb2api
from nb2api.errors import AnnotationError
from nb2api.types.datatypes import request_type


@pytest.fixture
def client(notebook):
    def make(name):
        return TestClient(nb2api.create_app(notebook(name)))
    return make


@pytest.fixture
def frames(client):
    return client("types_frames")


@pytest.fixture
def arrays(client):
    return client("types_series_arrays")


def test_dataframe_from_records(frames):
    response = frames.post("/describe", json={"table": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rows"] == 2
    assert body["columns"] == ["a", "b"]
    assert body["dtypes"]["a"] == "int64"


def test_dataframe_from_split_form_keeps_the_index(frames):
    table = {"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]], "index": ["r1", "r2"]}
    body = frames.post("/describe", json={"table": table}).json()
    assert body["columns"] == ["a", "b"]
    assert body["index"] == ["r1", "r2"]


def test_dataframe_round_trip_as_records(frames):
    records = [{"a": 1.5, "b": "x"}, {"a": None, "b": None}]
    assert frames.post("/echo", json={"table": records}).json() == records


def test_list_of_dataframes_in_either_form(frames):
    tables = [[{"a": 1}], {"columns": ["a"], "data": [[1], [2]]}]
    assert frames.post("/many", json={"tables": tables}).json() == [1, 2]


@pytest.mark.parametrize("table", [[1, 2], "text", {"columns": ["a"]}, {"rows": []}])
def test_not_a_table_is_422(frames, table):
    response = frames.post("/describe", json={"table": table})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "table"]


def test_ragged_split_form_is_422_naming_the_row(frames):
    table = {"columns": ["a", "b"], "data": [[1, 2], [3]]}
    response = frames.post("/describe", json={"table": table})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "table"]
    assert error["type"] == "dataframe"
    assert "row 1" in error["msg"]


def test_declared_rows_get_the_declared_dtypes(frames):
    sales = [
        {"item": "a", "price": 1.5, "qty": 2},
        {"item": "b", "price": "2", "qty": 3, "sold": "2024-01-01T10:00:00"},
    ]
    response = frames.post("/totals", json={"sales": sales})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == ["item", "price", "qty", "sold"]
    assert body["dtypes"]["price"] == "float64"
    assert body["dtypes"]["qty"] == "int64"
    assert body["dtypes"]["sold"].startswith("datetime64")
    assert body["revenue"] == 9.0


def test_declared_rows_accept_the_split_form(frames):
    sales = {"columns": ["item", "price", "qty"], "data": [["a", 1, 2], ["b", 2, 1]]}
    assert frames.post("/totals", json={"sales": sales}).json()["revenue"] == 4.0


def test_declared_rows_keep_the_split_form_index():
    class Point(BaseModel):
        x: float

    adapter = TypeAdapter(request_type(Annotated[pd.DataFrame, Point]))
    frame = adapter.validate_python({"columns": ["x"], "data": [[1], [2]], "index": ["p", "q"]})
    assert list(frame.index) == ["p", "q"]
    assert str(frame.dtypes["x"]) == "float64"


def test_bad_row_is_422_with_row_index_and_column(frames):
    sales = [{"item": "a", "price": 1.5, "qty": 2}, {"item": "b", "price": "cheap", "qty": 1}]
    response = frames.post("/totals", json={"sales": sales})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "sales", 1, "price"]


def test_missing_column_is_422_with_row_index_and_column(frames):
    response = frames.post("/totals", json={"sales": [{"item": "a", "price": 1}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sales", 0, "qty"]


def test_bad_cell_in_split_form_is_422_with_row_index_and_column(frames):
    sales = {"columns": ["item", "price", "qty"], "data": [["a", 1, 2], ["b", 2, "many"]]}
    response = frames.post("/totals", json={"sales": sales})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sales", 1, "qty"]


def test_declared_result_keeps_only_the_declared_columns(frames):
    response = frames.post("/priced", json={"sales": [{"item": "a", "price": 1.5, "qty": 2}]})
    assert response.json() == [{"item": "a", "price": 1.5, "qty": 2, "sold": None}]


def test_dataclass_and_typeddict_rows(frames):
    assert frames.post("/points", json={"p": [{"x": 1, "y": 2}]}).json() == [{"x": 2.0, "y": 4.0}]
    flags = [{"name": "a", "on": True}, {"name": "b", "on": False}]
    assert frames.post("/flags", json={"f": flags}).json() == ["bool", "1"]


def test_result_missing_declared_columns_is_500(frames):
    response = frames.post("/bad_result")
    assert response.status_code == 500
    assert "price" in response.json()["detail"]


def test_docs_show_the_row_columns_in_and_out(frames):
    spec = frames.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["Sale"]["properties"]) == {"item", "price", "qty", "sold"}
    table = schemas["TotalsRequest"]["properties"]["sales"]
    records, split = table["anyOf"]
    assert records == {"type": "array", "items": {"$ref": "#/components/schemas/Sale"}}
    assert split["properties"]["columns"]["items"]["enum"] == ["item", "price", "qty", "sold"]
    response = spec["paths"]["/priced"]["post"]["responses"]["200"]["content"]["application/json"]
    out = schemas[response["schema"]["$ref"].rsplit("/", 1)[1]]
    # Sale is taken in requests too: answers get its copy whose price may be null (NaN).
    assert out["items"] == {"$ref": "#/components/schemas/Sale-Output"}
    assert set(schemas["Sale-Output"]["properties"]) == {"item", "price", "qty", "sold"}


def test_docs_show_both_shapes_of_a_plain_dataframe(frames):
    spec = frames.get("/openapi.json").json()
    table = spec["components"]["schemas"]["DescribeRequest"]["properties"]["table"]
    records, split = table["anyOf"]
    assert records["type"] == "array" and records["items"]["type"] == "object"
    assert set(split["required"]) == {"columns", "data"}


def test_series_in_and_out(arrays):
    assert arrays.post("/cumulative", json={"values": [1, 2, 3]}).json() == [1, 3, 6]
    assert arrays.post("/cumulative", json={"values": {"a": 1, "b": 2}}).json() == {"a": 1, "b": 3}
    assert arrays.post("/by_label").json() == {"a": 1.5, "b": None}


def test_ndarray_round_trip_with_dtype(arrays):
    response = arrays.post("/scaled", json={"matrix": [[1, 2], [3, None]], "factor": 0.5})
    assert response.json() == [[0.5, 1.0], [1.5, None]]
    assert arrays.post("/dtype_of", json={"values": [1, 2]}).json() == "int64"
    assert arrays.post("/dtype_of", json={"values": [[1.5], [2]]}).json() == "float64"
    assert arrays.post("/ints", json={"values": [1, 2]}).json() == 3


@pytest.mark.parametrize(("path", "values", "words"), [
    ("/scaled", {"matrix": [[1, 2], [3]]}, "ragged"),
    ("/scaled", {"matrix": [["a", 2]]}, "numbers"),
    ("/scaled", {"matrix": "1 2 3"}, "array"),
    ("/ints", {"values": [1.5, 2]}, "int64"),
    ("/ints", {"values": [[1]]}, "dimension"),
])
def test_bad_arrays_are_422(arrays, path, values, words):
    response = arrays.post(path, json=values)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["type"] == "ndarray"
    assert error["loc"][:2] == ["body", list(values)[0]]
    assert words in error["msg"]


def test_numpy_scalar_parameter(arrays):
    assert arrays.post("/scalar", json={"x": 2}).json() == {"type": "float64", "value": 2.0}


def test_docs_for_arrays(arrays):
    schemas = arrays.get("/openapi.json").json()["components"]["schemas"]
    ints = schemas["IntsRequest"]["properties"]["values"]
    assert ints["items"] == {"type": "integer"}
    assert "int64" in ints["description"]


def test_unschematizable_parameter_is_refused_at_load(make_notebook):
    notebook = make_notebook(
        "#| setup\nimport pandas as pd",
        '#| setup\nclass Forest:\n    """A trained model: not something a request can carry."""',
        "#| api\ndef predict(model: Forest, x: float) -> float:\n    return x",
    )
    with pytest.raises(AnnotationError) as caught:
        nb2api.create_app(notebook)
    error = caught.value
    assert (error.function, error.parameter) == ("predict", "model")
    assert "Forest" in str(error)
    assert "pd.DataFrame" in str(error)  # says what to use instead
    assert error.cell.index == 3


def test_dataframe_annotated_with_a_non_row_is_refused(make_notebook):
    notebook = make_notebook(
        "#| setup\nfrom typing import Annotated\n\nimport pandas as pd",
        "#| api\ndef rows(table: Annotated[pd.DataFrame, int]) -> int:\n    return len(table)",
    )
    with pytest.raises(AnnotationError) as caught:
        nb2api.create_app(notebook)
    assert (caught.value.function, caught.value.parameter) == ("rows", "table")
    assert "Annotated[pd.DataFrame, int]" in str(caught.value)


def test_unschematizable_return_is_refused_at_load(make_notebook):
    notebook = make_notebook(
        "#| setup\nimport pandas as pd",
        "#| api\ndef labels() -> pd.Index:\n    return pd.Index([1])",
    )
    with pytest.raises(AnnotationError) as caught:
        nb2api.create_app(notebook)
    assert caught.value.function == "labels"
    assert caught.value.parameter is None
    assert "Index" in str(caught.value)


def test_numpy_scalar_out_of_range_is_a_validation_error():
    import numpy as np
    from pydantic import ValidationError

    adapter = TypeAdapter(request_type(np.int8))
    assert adapter.validate_python(3) == np.int8(3)
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(300)
    assert caught.value.errors()[0]["type"] == "numpy_scalar"
