"""DataFrame records assembled by Arrow's kernels: the same bytes as the per-cell writer."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api.types import frames, records

pytest.importorskip("pyarrow")


def per_cell(df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as patch:
        patch.setattr(records, "pa", None)
        return frames.frame_json(df)


def assembled(df: pd.DataFrame) -> bytes:
    shown = frames.shown_frame(df)
    written = records.frame_records(shown, frames._cells)
    assert written is not None  # pyarrow is installed: the Arrow writer is the one in use
    return written


_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_stamps = st.integers(min_value=-(2**62), max_value=2**62)


@st.composite
def tables(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    columns = {
        "f": draw(st.lists(_floats, min_size=n, max_size=n)),
        "i": draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)),
        "b": draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        "s": pd.Series(draw(st.lists(st.none() | _text, min_size=n, max_size=n)), dtype="str"),
        "o": pd.Series(draw(st.lists(st.none() | _text, min_size=n, max_size=n)), dtype=object),
        "n": pd.array(draw(st.lists(st.none() | st.integers(-1000, 1000), min_size=n,
                                    max_size=n)), dtype="Int64"),
        "c": pd.Categorical(draw(st.lists(st.sampled_from(["x", "y,z", 'q"']), min_size=n,
                                          max_size=n))),
    }
    ticks = draw(st.lists(st.none() | _stamps, min_size=n, max_size=n))
    stamps = pd.to_datetime([t if t is None else pd.Timestamp(t) for t in ticks])
    columns["t"] = stamps
    columns["z"] = stamps.tz_localize("UTC").tz_convert("Asia/Kolkata")
    df = pd.DataFrame(columns)
    if draw(st.booleans()):
        df.index = pd.Index(draw(st.lists(_text, min_size=n, max_size=n)), name="key")
    return df


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(tables())
def test_the_arrow_writer_writes_what_the_per_cell_writer_writes(monkeypatch, df):
    written = assembled(df)
    assert written == per_cell(df, monkeypatch)
    rows = json.loads(written)
    assert len(rows) == len(df)
    for row, value in zip(rows, df["f"], strict=True):
        # shortest round-trip text: the float read back is the very float written
        assert row["f"] == (value if math.isfinite(value) else None)


def test_escapes_and_nulls_in_string_columns():
    df = pd.DataFrame({"s": pd.Series(['a"b', None, "c\\d", "\n", "é"], dtype="str"),
                       "plain": pd.Series(["x", "y", None, "z", "w"], dtype="str")})
    assert json.loads(assembled(df)) == [
        {"s": 'a"b', "plain": "x"}, {"s": None, "plain": "y"}, {"s": "c\\d", "plain": None},
        {"s": "\n", "plain": "z"}, {"s": "é", "plain": "w"}]


def test_timestamps_naive_aware_and_missing():
    df = pd.DataFrame({"t": pd.to_datetime(["2024-05-01 10:00:00.5", None]),
                       "z": pd.to_datetime(["2024-05-01 12:00", None]).tz_localize("Europe/Paris")})
    assert assembled(df) == (b'[{"t":"2024-05-01T10:00:00.500","z":"2024-05-01T10:00:00Z"},'
                             b'{"t":null,"z":null}]')


def test_non_finite_floats_are_null_and_exact_floats_round_trip():
    values = np.array([0.1 + 0.2, 1e-320, -0.0, np.inf, np.nan, 1 / 3, 1e300])
    rows = json.loads(assembled(pd.DataFrame({"v": values})))
    assert [row["v"] for row in rows] == [0.1 + 0.2, 1e-320, -0.0, None, None, 1 / 3, 1e300]


def test_without_pyarrow_the_caller_writes_the_table(monkeypatch):
    monkeypatch.setattr(records, "pa", None)
    assert records.frame_records(pd.DataFrame({"a": [1]}), frames._cells) is None
    assert frames.frame_json(pd.DataFrame({"a": [1]})) == b'[{"a":1}]'


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("scale", [10**9, 10**12, 10**15, 10**18])  # ticks: within and past 2261
def test_timestamps_of_every_unit_and_year_are_written_as_numpy_writes_them(unit, scale):
    rng = np.random.default_rng(scale)
    values = rng.integers(-scale, scale, 500).astype(f"datetime64[{unit}]")
    values[::7] = np.datetime64("NaT")
    for tz in (None, "UTC"):
        written = records._datetimes(values, utc=tz is not None).to_pylist()
        assert written == frames._datetime_cells(values, tz=tz).tolist()
