"""The conversions behind the data-science types, without HTTP."""

import json

import numpy as np
import pandas as pd
import pytest

from nb2api.types import frames


def test_records_with_missing_keys_fill_with_nan_in_first_seen_column_order():
    df = frames.frame_from_json([{"b": 1, "a": 2}, {"a": 3, "c": "x"}])
    assert list(df.columns) == ["b", "a", "c"]
    assert df["b"].isna().tolist() == [False, True]


def test_empty_records_give_an_empty_frame():
    assert frames.frame_from_json([]).shape == (0, 0)


@pytest.mark.parametrize(("rows", "row"), [([{"a": 1}, 5], 1), ([{"a": 1}, "ab"], 1),
                                            ([[1, 2]], 0)])
def test_a_record_that_is_not_an_object_is_named(rows, row):
    with pytest.raises(frames.FrameError, match=f"row {row} "):
        frames.frame_from_json(rows)


def test_split_form_index_must_match_the_rows():
    with pytest.raises(frames.FrameError, match="index"):
        frames.frame_from_json({"columns": ["a"], "data": [[1]], "index": [1, 2]})


def test_typed_frame_with_no_rows_keeps_the_declared_columns():
    df = frames.typed_frame([], {"a": int, "b": float})
    assert list(df.columns) == ["a", "b"]
    assert str(df.dtypes["b"]) == "float64"


def test_typed_frame_optional_int_is_nullable():
    df = frames.typed_frame([{"n": 1}, {"n": None}], {"n": int | None})
    assert str(df.dtypes["n"]) == "Int64"


def test_array_from_json_casts_ints_to_a_float_dtype_but_not_back():
    assert frames.array_from_json([1, 2], np.dtype(np.float64), None).dtype == np.float64
    with pytest.raises(frames.FrameError, match="int64"):
        frames.array_from_json([1.5], np.dtype(np.int64), None)


def test_frame_json_selects_columns():
    df = pd.DataFrame({"a": [1], "b": [2]})
    assert frames.frame_json(df, columns=["b"]) == b'[{"b":2}]'


def test_split_form_rows_must_be_lists():
    with pytest.raises(frames.FrameError, match="row 1 of 'data' is not a list"):
        frames.frame_from_json({"columns": ["a"], "data": [[1], 2]})


@pytest.mark.parametrize("data", [[], [[1]]])
def test_a_null_index_is_refused_as_the_schema_says(data):
    """The split form's schema lets "index" be left out, not be null."""
    with pytest.raises(frames.FrameError, match="index"):
        frames.frame_from_json({"columns": ["a"], "data": data, "index": None})
    assert len(frames.frame_from_json({"columns": ["a"], "data": data})) == len(data)


def test_integers_past_64_bits_in_a_table_or_series_are_written_exactly():
    big = 2**70 + 1
    assert json.loads(frames.series_json(pd.Series([big, 1]))) == [big, 1]
    table = pd.DataFrame({"n": [big, -big], "s": pd.Series(["a", "\ud800"], dtype=object)})
    assert json.loads(frames.frame_json(table)) \
        == [{"n": big, "s": "a"}, {"n": -big, "s": "\ud800"}]


@pytest.mark.parametrize(("body", "message"), [
    ({"columns": [[[]]], "data": [[1]]}, "'columns' must be a list of column names"),
    ({"columns": [{"a": 1}], "data": [[1]]}, "'columns' must be a list of column names"),
    ({"columns": ["a"], "data": [[1]], "index": [[1]]}, "'index' must be a list of labels"),
])
def test_split_form_labels_that_cannot_label_a_table_are_refused(body, message):
    """Found by the property test of request bodies: a list as a column name was a 500."""
    with pytest.raises(frames.FrameError, match=message):
        frames.frame_from_json(body)
    with pytest.raises(frames.FrameError, match=message):
        frames.records_from_split(body)
