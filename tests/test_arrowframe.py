"""A DataFrame as an Arrow table (:mod:`nb2api.types.arrowframe`): what ``from_pandas`` makes,
schema, pandas metadata and values, whether the schema was kept from an earlier answer or not."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api.types import arrowframe, columnar

pa = pytest.importorskip("pyarrow")

_units = st.sampled_from(["s", "ms", "us", "ns"])


@st.composite
def plain_tables(draw):
    n = draw(st.integers(min_value=0, max_value=8))

    def column(elements):
        return draw(st.lists(elements, min_size=n, max_size=n))

    kinds = {
        "f8": lambda: np.array(column(st.floats(allow_nan=True, allow_infinity=True)), "f8"),
        "f4": lambda: np.array(column(st.floats(width=32, allow_nan=True)), "f4"),
        "i8": lambda: np.array(column(st.integers(-(2**63), 2**63 - 1)), "i8"),
        "u1": lambda: np.array(column(st.integers(0, 255)), "u1"),
        "b": lambda: np.array(column(st.booleans()), bool),
        "t": lambda: np.array(column(st.none() | st.integers(-(2**40), 2**40)),
                              f"datetime64[{draw(_units)}]"),
        "s": lambda: pd.Series(column(st.none() | st.text(max_size=4)),
                               dtype=pd.StringDtype("pyarrow")),
        "str": lambda: pd.Series(column(st.none() | st.text(max_size=4)), dtype="str"),
        "cat": lambda: pd.Categorical(column(st.sampled_from(["a", "b"]))),  # from_pandas's
        "Int64": lambda: pd.array(column(st.none() | st.integers(-5, 5)), dtype="Int64"),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=5))
    return pd.DataFrame({f"{kind}{i}": kinds[kind]() for i, kind in enumerate(chosen)})


def _key(df):
    return arrowframe._key(df, [column for _, column in df.items()])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_tables())
def test_the_table_is_what_from_pandas_makes_first_and_after(df):
    expected = pa.Table.from_pandas(df, preserve_index=False)
    for _ in range(2):  # the second time from the kept schema, for a table of plain columns
        table = arrowframe.table(df, pa)
        assert table.equals(expected, check_metadata=True)
        table.validate(full=True)
    back = table.to_pandas()
    pd.testing.assert_frame_equal(back, expected.to_pandas())


def test_plain_tables_keep_their_schema_and_others_do_not():
    plain = pd.DataFrame({"x": [1.5, np.nan], "n": [1, 2], "s": pd.Series(["a", None],
                                                                        dtype="str")})
    other = pd.DataFrame({"c": pd.Categorical(["a", "b"]), "o": [{"k": 1}, None]})
    arrowframe.table(plain, pa)
    assert _key(plain) in arrowframe._schemas
    assert _key(other) is None
    table = arrowframe.table(plain, pa)
    assert table.column("x").null_count == 1  # NaN is null, as from_pandas has it
    assert table.column("x").to_pylist() == [1.5, None]


def test_a_kept_schema_whose_types_do_not_fit_is_not_trusted():
    df = pd.DataFrame({"x": np.array([1.5, 2.5], "f4"), "y": [1, 2]})
    wrong = pa.Table.from_pandas(df.astype({"x": "f8"}), preserve_index=False).schema
    arrowframe._schemas[_key(df)] = wrong
    table = arrowframe.table(df, pa)
    assert table.schema.field("x").type == pa.float32()
    assert table.equals(pa.Table.from_pandas(df, preserve_index=False), check_metadata=True)
    assert arrowframe._schemas[_key(df)].field("x").type == pa.float32()


def test_the_kept_schemas_are_bounded():
    for i in range(arrowframe._KEPT + 5):
        arrowframe.table(pd.DataFrame({f"c{i}": [1.0]}), pa)
    assert len(arrowframe._schemas) <= arrowframe._KEPT


def test_the_arrow_answer_reads_back_as_the_table():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"f": rng.normal(size=100), "i": rng.integers(0, 9, 100),
                       "s": [f"r{i}" for i in range(100)],
                       "t": pd.date_range("2024-01-01", periods=100, freq="h")})
    df.loc[5, "f"] = np.nan
    for _ in range(2):
        data = columnar.write(df, columnar.ARROW)
        back = pa.ipc.open_stream(data).read_all().to_pandas()
        pd.testing.assert_frame_equal(back, df)


def test_tables_written_side_by_side_are_each_their_own():
    """Answers are written on many workers at once; each must be its own table, whichever worker
    converts while another waits."""
    from concurrent.futures import ThreadPoolExecutor

    frames = [pd.DataFrame({"x": np.arange(n, dtype="f8") + n, "n": np.arange(n) * n,
                            "s": pd.Series([f"{n}-{i}" for i in range(n)], dtype="str")})
              for n in range(1, 41)]
    with ThreadPoolExecutor(8) as pool:
        written = list(pool.map(lambda df: columnar.write(df, columnar.ARROW), frames * 3))
    for df, content in zip(frames * 3, written, strict=True):
        back = pa.ipc.open_stream(content).read_all().to_pandas()
        pd.testing.assert_frame_equal(back, df)
