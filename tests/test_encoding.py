"""Results made of numpy and pandas values: JSON straight to bytes, NaN/NaT as null, ISO times."""

import json
import math

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import nb2api
from nb2api.types.encoding import dumps


@pytest.fixture
def results(notebook):
    return TestClient(nb2api.create_app(notebook("types_results")))


def test_numpy_and_pandas_values_anywhere_in_an_undeclared_result(results):
    response = results.post("/numbers")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "int": 3,
        "float": 1.5,
        "bool": True,
        "nan": None,
        "inf": None,
        "array": [0, 1, 2],
        "matrix": [[1.0, None], [2.0, 3.0]],
        "when": "2024-05-01T10:00:00",
        "aware": "2024-05-01T10:00:00+00:00",
        "nat": None,
        "na": None,
        "dt64": "2024-05-01T10:00:00",
        "dates": ["2024-05-01T00:00:00", None],
        "series": [1, 2],
        "nested": [{"frame": [{"a": 1.0}, {"a": None}]}],
    }


def test_dataframe_result_is_records_with_null_and_iso_times(results):
    assert results.post("/frame").json() == [
        {"f": 1.5, "t": "2024-05-01T10:00:00", "s": "a", "n": 1, "z": "2024-05-01T10:00:00Z",
         "b": True},
        {"f": None, "t": None, "s": None, "n": None, "z": "2024-05-01T10:00:00Z", "b": False},
        {"f": 0.1 + 0.2, "t": "2024-05-02T00:00:00", "s": 'q"uote', "n": 3,
         "z": "2024-05-01T10:00:00Z", "b": True},
    ]


def test_pydantic_model_holding_a_dataframe_and_an_array(results):
    assert results.post("/report").json() == {
        "mean": 2.5, "table": [{"a": 1}, {"a": 2}], "values": [1.0, None]}


def test_declared_dict_holding_frames_and_series(results):
    assert results.post("/tables").json() == {"t": [{"a": 1.5}, {"a": None}], "s": {"x": 1}}


def test_loosely_declared_dict_with_nat_and_frames(results):
    response = results.post("/loosely_declared")
    assert response.status_code == 200, response.text
    assert response.json() == {"nat": None, "when": "2024-05-01T00:00:00",
                               "frame": [{"a": 1.0}, {"a": None}]}


def test_declared_types_take_numpy_values(results):
    assert results.post("/declared").json() == {"a": 1.25, "b": 2.0}
    assert results.post("/timestamps").json() == ["2024-01-01T00:00:00",
                                                  "2024-01-01T00:00:01.500000"]


def test_dumps_writes_floats_exactly():
    values = np.array([1 / 3, 1.23456789012345e-5, 0.1 + 0.2, 1e300, 1e-20])
    frame = pd.DataFrame({"v": values})
    decoded = [row["v"] for row in orjson.loads(dumps(frame))]
    assert decoded == values.tolist()


def test_dumps_frame_edge_cases():
    assert dumps(pd.DataFrame({"a": []})) == b"[]"
    assert dumps(pd.DataFrame(index=[0, 1])) == b"[{},{}]"
    frame = pd.DataFrame({1: [np.inf], "s,t": ["x,y"]})
    assert orjson.loads(dumps(frame)) == [{"1": None, "s,t": "x,y"}]


def test_dumps_series_by_index():
    assert dumps(pd.Series([1.0, math.nan])) == b"[1.0,null]"
    assert dumps(pd.Series([1, 2], index=[10, 20])) == b'{"10":1,"20":2}'
    dated = pd.Series([1], index=pd.to_datetime(["2024-01-01"]))
    assert dumps(dated) == b'{"2024-01-01T00:00:00":1}'


def test_dumps_timedeltas_and_categories():
    frame = pd.DataFrame({
        "d": pd.to_timedelta([1.5, None], unit="s"),
        "c": pd.Categorical(["x", None]),
    })
    assert orjson.loads(dumps(frame)) == [{"d": 1.5, "c": "x"}, {"d": None, "c": None}]


def test_dumps_datetime_array_with_nat_does_not_reach_orjson():
    # Some orjson releases crash the process on a datetime64[s] array holding NaT.
    dates = np.array(["2024-05-01", "NaT"], dtype="datetime64[s]")
    assert orjson.loads(dumps({"d": dates})) == {"d": ["2024-05-01T00:00:00", None]}
    assert orjson.loads(dumps(dates)) == ["2024-05-01T00:00:00", None]


def test_dumps_sub_second_timestamps_keep_their_precision():
    times = pd.to_datetime(["2024-01-01 00:00:00.250", "2024-01-01"], format="ISO8601")
    frame = pd.DataFrame({"t": times})
    assert [r["t"] for r in orjson.loads(dumps(frame))] == [
        "2024-01-01T00:00:00.250", "2024-01-01T00:00:00.000"]


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/mean", None, 2.5),
    ("/plain_mean", None, 2.5),
    ("/stamp", None, "2024-05-01T10:00:00"),
    ("/maybe", None, [{"a": 1.5}, {"a": None}]),
    ("/maybe", {"empty": True}, None),
])
def test_declared_scalars_and_optional_frames(results, path, body, expected):
    response = results.post(path, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == expected


def test_a_plain_def_result_is_encoded_off_the_event_loop(results, monkeypatch):
    import asyncio

    from nb2api.types import frames

    seen = []
    original = frames.frame_json

    def spy(df, columns=None):
        try:
            asyncio.get_running_loop()
            seen.append("event loop")
        except RuntimeError:
            seen.append("worker")
        return original(df, columns)

    monkeypatch.setattr(frames, "frame_json", spy)
    assert results.post("/frame").status_code == 200
    assert seen == ["worker"]


ECHO = ("#| api\ndef echo(x) -> dict:\n    return {'x': x}\n\n\ndef raw(x):\n    return {'x': x}\n\n\n"
        "def big():\n    return [2**70, {'n': -(2**80)}, float('nan')]\n")


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("route", ["/echo", "/raw"])
@pytest.mark.parametrize("body", [
    '{"x": %s}' % ("[" * 300 + "]" * 300),
    '{"x": %s}' % ("[" * 900 + "]" * 900),
    '{"x": {"a": %s}}' % ("[" * 400 + '"\\ud800"' + "]" * 400),
    '{"x": "\\ud800 and \\udfff"}',
    '{"x": 1180591620717411303424}',
])
def test_what_orjson_cannot_write_is_echoed_as_it_was_sent(make_notebook, fast_path, route,
                                                              body):
    app = nb2api.create_app(make_notebook(ECHO), fast_path=fast_path)
    with TestClient(app) as client:
        response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert json.loads(response.content) == {"x": json.loads(body)["x"]}


def test_integers_past_64_bits_are_written_exactly():
    assert json.loads(dumps([2**70, {"n": -(2**80)}, float("nan"), np.int64(3)])) == [
        2**70, {"n": -(2**80)}, None, 3]
    assert dumps({"k": 2**64, "when": pd.Timestamp("2026-01-02")}) == (
        b'{"k":18446744073709551616,"when":"2026-01-02T00:00:00"}')


def test_a_value_that_holds_itself_is_refused_not_looped_over():
    looped: list = []
    looped.append(looped)
    with pytest.raises(ValueError, match="holds itself"):
        dumps(looped)
