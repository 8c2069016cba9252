"""DataFrame records without pyarrow (:mod:`nb2api.types.keyed`): the same bytes as the Arrow
writer and as a per-cell join, for every kind of column, and in a process that cannot import
pyarrow at all."""

import itertools
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api.types import frames, keyed, records


def per_cell(df: pd.DataFrame) -> bytes:
    """The records by the plainest rule: each cell's JSON from the per-cell writer, joined."""
    shown = frames.shown_frame(df)
    parts = []
    for i, (name, column) in enumerate(shown.items()):
        parts.append(itertools.repeat((b"{" if i == 0 else b",") + orjson.dumps(str(name)) + b":"))
        parts.append(frames._cells(column).tolist())
    parts.append(itertools.repeat(b"}"))
    return b"[" + b",".join(map(b"".join, zip(*parts, strict=False))) + b"]"


def without_arrow(df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> bytes:
    with monkeypatch.context() as patch:
        patch.setattr(records, "pa", None)
        return frames.frame_json(df)


_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
_plain = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"),
                                        blacklist_characters='"\\'), max_size=6)
_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)
_names = st.text(min_size=1, max_size=5)  # commas, quotes, control characters: all in keys
_stamps = st.integers(min_value=-(2**62), max_value=2**62)


@st.composite
def tables(draw):
    n = draw(st.integers(min_value=1, max_value=10))

    def column(elements):
        return draw(st.lists(elements, min_size=n, max_size=n))

    kinds = {
        "float": lambda: column(_floats),
        "float32": lambda: np.array(column(st.floats(width=32)), dtype=np.float32),
        "int": lambda: column(st.integers(-(2**63), 2**63 - 1)),
        "uint": lambda: np.array(column(st.integers(0, 2**64 - 1)), dtype=np.uint64),
        "bool": lambda: column(st.booleans()),
        # strings that need no escape and miss nothing: the whole-column rule
        "plain": lambda: pd.Series(column(_plain), dtype=draw(st.sampled_from(["str", object]))),
        # escapes, missing values, mixed objects: the per-cell writer, keyed
        "text": lambda: pd.Series(column(st.none() | _any_text), dtype="str"),
        "mixed": lambda: pd.Series(column(st.none() | _any_text | st.integers() | _floats),
                                   dtype=object),
        "nullable": lambda: pd.array(column(st.none() | st.integers(-9, 9)), dtype="Int64"),
        "category": lambda: pd.Categorical(column(st.sampled_from(["x", "y,z", 'q"']))),
        "when": lambda: pd.to_datetime([t if t is None else pd.Timestamp(t)
                                        for t in column(st.none() | _stamps)]),
        "zoned": lambda: pd.to_datetime([t if t is None else pd.Timestamp(t)
                                         for t in column(st.none() | _stamps)])
        .tz_localize("UTC").tz_convert("America/New_York"),
        "far": lambda: np.array(column(st.none() | st.integers(-(10**6), 10**6)),
                                dtype="datetime64[D]").astype("datetime64[s]"),
        "span": lambda: pd.to_timedelta(column(st.none() | st.integers(-(10**12), 10**12)),
                                        unit="us"),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=6))
    names = draw(st.lists(_names, min_size=len(chosen), max_size=len(chosen), unique=True))
    df = pd.DataFrame({name: kinds[kind]() for name, kind in zip(names, chosen, strict=True)})
    if draw(st.booleans()):
        df.index = pd.Index(column(_any_text), name="key")
    return df


_settings = settings(max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])


@_settings
@given(tables())
def test_without_pyarrow_the_records_are_the_per_cell_join(monkeypatch, df):
    written = without_arrow(df, monkeypatch)
    assert written == per_cell(df)
    assert len(json.loads(written)) == len(df)


@_settings
@given(tables())
def test_without_pyarrow_the_records_are_the_arrow_writers_bytes(monkeypatch, df):
    pytest.importorskip("pyarrow")
    assert records.pa is not None
    assert without_arrow(df, monkeypatch) == frames.frame_json(df)


def test_floats_round_trip_and_non_finite_ones_are_null(monkeypatch):
    values = [0.1 + 0.2, 1e-320, -0.0, math.inf, math.nan, 1 / 3, -2.2250738585072014e-308]
    rows = json.loads(without_arrow(pd.DataFrame({"v": values, "w": values[::-1]}), monkeypatch))
    assert [row["v"] for row in rows] == [0.1 + 0.2, 1e-320, -0.0, None, None, 1 / 3,
                                          -2.2250738585072014e-308]


def test_keys_and_strings_that_look_like_separators(monkeypatch):
    df = pd.DataFrame({'a","b': ["x", "", "y,z"], "\x00k": ["", "", ""], "n": [1, 2, 3]})
    written = without_arrow(df, monkeypatch)
    assert written == per_cell(df)
    assert json.loads(written) == [{'a","b': "x", "\x00k": "", "n": 1},
                                   {'a","b': "", "\x00k": "", "n": 2},
                                   {'a","b': "y,z", "\x00k": "", "n": 3}]


def test_timestamps_missing_zoned_and_beyond_the_nanosecond_years(monkeypatch):
    df = pd.DataFrame({
        "t": pd.to_datetime(["2024-05-01 10:00:00.5", None]),
        "z": pd.to_datetime(["2024-05-01 12:00", None]).tz_localize("Europe/Paris"),
        "far": np.array(["9999-12-31", "NaT"], dtype="datetime64[s]"),
    })
    assert without_arrow(df, monkeypatch) == (
        b'[{"t":"2024-05-01T10:00:00.500","z":"2024-05-01T10:00:00Z","far":"9999-12-31T00:00:00"},'
        b'{"t":null,"z":null,"far":null}]')


def test_the_index_rule_holds(monkeypatch):
    df = pd.DataFrame({"v": [1.5, 2.5]}, index=pd.Index(["a", "b"], name="k"))
    assert without_arrow(df, monkeypatch) == b'[{"k":"a","v":1.5},{"k":"b","v":2.5}]'
    plain = pd.DataFrame({"v": [1.5, 2.5]})
    assert without_arrow(plain, monkeypatch) == b'[{"v":1.5},{"v":2.5}]'


def test_a_cell_that_splits_is_refused_loudly():
    df = pd.DataFrame({"a": [{"x": 1}, {"y": 2}]})  # objects: the per-cell writer's
    with pytest.raises(AssertionError, match="gave 1 cells for 2 rows"):
        keyed.frame_records(df, lambda column: np.array([b"1"], dtype=object))


# A table of every kind of column, with a missing string and a NaN: made in both processes.
_MIXED = textwrap.dedent("""
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"f": rng.normal(size=50), "i": rng.integers(-5, 5, 50),
                       "s": [f"item {i}" for i in range(50)],
                       "t": pd.date_range("2024-01-01", periods=50, freq="37s")})
    df.loc[3, "s"] = None
    df.loc[4, "f"] = np.nan
""")


def test_in_a_process_where_pyarrow_cannot_be_imported():
    """pandas keeps its strings in Python objects there, and nb2api writes without Arrow."""
    script = textwrap.dedent("""
        import sys
        sys.modules["pyarrow"] = None  # import pyarrow now fails, as without the extra
        import numpy as np, pandas as pd
        from nb2api.types import frames, records
        assert records.pa is None
    """) + _MIXED + "sys.stdout.buffer.write(frames.frame_json(df))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr.decode()
    namespace = {"np": np, "pd": pd}
    exec(_MIXED, namespace)  # the same table, made here with pyarrow
    assert done.stdout == per_cell(namespace["df"])
    assert json.loads(done.stdout)[3]["s"] is None


@pytest.mark.parametrize(("values", "unit"), [
    (np.array(["9999-12-31T10:00:00"], "datetime64[s]"), "s"),  # past 2262: no overflow
    (np.array(["9999-12-31T10:00:00.250", "NaT"], "datetime64[ms]"), "ms"),
    (np.array([100, 250], "datetime64[10ms]"), "ms"),  # ticks of 10 ms
    (np.array([100, 200], "datetime64[10ms]"), "s"),
    (np.array(["2020-01-01"], "datetime64[D]"), "s"),
    (np.array([1_500, "NaT"], "datetime64[ns]"), "ns"),
    (np.array(["NaT"], "datetime64[us]"), "s"),
])
def test_timestamps_print_as_finely_as_their_values_need(values, unit):
    assert records.iso_unit(values) == unit


def test_a_large_table_is_the_per_cell_join(monkeypatch):
    rng = np.random.default_rng(11)
    n = 5_000
    df = pd.DataFrame({
        "f": rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n),
        "i": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        "s": [f"name {i}, é" for i in range(n)],
        "t": pd.to_datetime(rng.integers(0, 2**62, n)),
        "b": rng.integers(0, 2, n).astype(bool),
    })
    df.loc[rng.integers(0, n, 50), "f"] = np.nan
    df.loc[rng.integers(0, n, 50), "t"] = pd.NaT
    written = without_arrow(df, monkeypatch)
    assert written == per_cell(df)
    assert [row["s"] for row in json.loads(written)][:2] == ["name 0, é", "name 1, é"]
