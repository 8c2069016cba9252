"""A DataFrame as an Arrow table, as ``pa.Table.from_pandas`` makes it, in less time per answer.

Measured on a 10,000 x 10 table (``bench/bench_dataframe.py``, py-spy on a loaded server), the
Arrow answer spent most of its time in ``from_pandas``: its pool of threads set up on each call,
then per column a pass through the pandas Series and a scan of float columns for NaN (NaN is
null in Arrow, as pandas reads it back), then the pandas metadata (which restores the dtypes in
``to_pandas()``) built again. Here the conversion runs on one thread (requests already run side
by side in the worker pool), and for a table whose columns are all plain (numbers, booleans,
naive timestamps, pandas' Arrow-backed strings), the schema with its metadata is kept per set of
column names and dtypes (the metadata of such columns depends on nothing else), and each column
becomes its Arrow array directly: the numpy buffer as it is, the NaN scan only on floats that
hold a NaN. Any other table, or a column whose array does not come out as the kept schema says,
takes ``from_pandas`` itself.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

# Schemas kept, by (names, dtypes, the column index's dtype and name); a service answers few
# shapes, and the oldest goes when there are more.
_KEPT = 64
_schemas: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def table(df: pd.DataFrame, pa: Any) -> Any:
    """``pa.Table.from_pandas(df, preserve_index=False)``: the same schema, metadata and values.
    ``df``'s column names are strings."""
    columns = [column for _, column in df.items()]
    key = _key(df, columns)
    schema = _schemas.get(key) if key is not None else None
    if schema is not None:
        arrays = [_array(column, pa) for column in columns]
        # from_arrays takes the schema's word for the types: check them here.
        if all(a.type == t for a, t in zip(arrays, schema.types, strict=True)):
            return pa.Table.from_arrays(arrays, schema=schema)
    converted = pa.Table.from_pandas(df, preserve_index=False, nthreads=1)
    if key is not None:
        with _lock:
            while len(_schemas) >= _KEPT:
                _schemas.pop(next(iter(_schemas)))
            _schemas[key] = converted.schema
    return converted


def _key(df: pd.DataFrame, columns: list[pd.Series]) -> tuple[Any, ...] | None:
    """What the schema of a table of plain columns depends on; None for any other table.
    (The dtypes from the columns at hand: ``df.dtypes`` builds a Series for them.)"""
    dtypes = tuple(column.dtype for column in columns)
    if not all(map(_plain, dtypes)):
        return None
    return tuple(df.columns), dtypes, df.columns.dtype, df.columns.name


def _plain(dtype: Any) -> bool:
    if isinstance(dtype, np.dtype):
        return (dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize >= 4)
                or dtype.kind == "M")
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def _array(column: pd.Series, pa: Any) -> Any:
    if not isinstance(column.dtype, np.dtype):  # Arrow-backed strings: their own array
        return pa.array(column, from_pandas=True)
    values = column.to_numpy()
    kind = values.dtype.kind
    if kind in "biu" or (kind == "f" and not np.isnan(values).any()):
        return pa.array(values)  # no NaN to make null: the buffer as it is
    return pa.array(values, from_pandas=True)  # NaN and NaT are null
