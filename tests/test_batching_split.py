"""How a batch's items are merged and its result split back, request by request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nb2api.serve.batching import split
from nb2api.types.errors import CallFailed

counts = st.lists(st.integers(0, 5), min_size=1, max_size=8)


@given(counts)
def test_a_list_splits_into_each_requests_items(sizes):
    result = list(range(sum(sizes)))
    parts = split(result, sizes)
    assert [len(p) for p in parts] == sizes
    assert [x for part in parts for x in part] == result


@given(counts)
def test_an_array_splits_along_its_first_axis(sizes):
    result = np.arange(sum(sizes) * 2).reshape(-1, 2)
    parts = split(result, sizes)
    assert [p.shape for p in parts] == [(n, 2) for n in sizes]
    assert np.array_equal(np.concatenate(parts), result)


@given(counts)
def test_a_table_built_anew_answers_each_request_with_a_default_index(sizes):
    result = pd.DataFrame({"p": np.arange(sum(sizes), dtype=float)})
    parts = split(result, sizes)
    assert [len(p) for p in parts] == sizes
    for part in parts:
        assert isinstance(part.index, pd.RangeIndex) and part.index.start == 0


def test_a_result_indexed_like_the_merged_requests_keeps_each_requests_index():
    merged = pd.concat([pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [3]}, index=["k"])])
    first, second = split(merged["x"] * 10, [2, 1])
    assert first.tolist() == [10, 20] and isinstance(first.index, pd.RangeIndex)
    assert second.to_dict() == {"k": 30}


@pytest.mark.parametrize(("result", "said"), [
    ([1, 2], "returned 2 results for 3 input items"),
    (np.zeros(4), "returned 4 results for 3 input items"),
    (7, "returned a value of type int for 3 input items"),
    ({"a": 1, "b": 2, "c": 3}, "returned a value of type dict for 3 input items"),
    ("abc", "returned a value of type str for 3 input items"),
])
def test_a_result_that_is_not_one_item_per_input_item_fails_the_batch(result, said):
    with pytest.raises(CallFailed) as caught:
        split(result, [1, 2])
    assert caught.value.what == said
    assert "one result per input item" in caught.value.text


def test_a_request_that_ran_alone_without_a_first_axis_is_not_cut():
    assert split(5, [None]) == [5]
