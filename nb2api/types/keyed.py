"""A DataFrame as JSON records in a few passes of C, without pyarrow.

Measured on a 10,000 x 10 table (``bench/bench_dataframe.py``), the writer that made one Python
``bytes`` per cell and joined them row by row (``zip`` + ``b"".join`` per row) spent most of its
time in that join and in the per-row tuples. Here each column's text is written whole (orjson on
the column: its shortest round-trip floats; numpy's digits for ISO 8601 timestamps) with its key
already in front of every cell: one ``bytes.replace`` turns the column's ``,`` separators into
``<NUL><key>``, and one ``split`` on NUL gives the keyed cells (JSON text never holds a raw NUL:
orjson and the standard library escape control characters). The cells of all columns go into one
list by slice assignment (``cells[i::columns] = column``) and one ``b",".join`` writes the
records: the first column's cells open each record with ``{``, the last one's close it with ``}``.

A column without a whole-column rule (objects other than plain strings, nullable integers,
categoricals, strings that need escapes or hold missing values) takes the per-cell writer
(``fallback``) and gets its keys in a ``map`` over its cells.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd

from .records import iso_digits, iso_unit, numbers_text, utc_naive

Cells = Callable[[pd.Series], np.ndarray]


def frame_records(df: pd.DataFrame, fallback: Cells) -> bytes:
    """``df`` (already as shown: index as columns, flat labels, at least one row and column)
    as a JSON array of records, byte for byte what the per-cell writer ``fallback`` gives."""
    n, width = df.shape
    cells: list[Any] = [None] * (n * width)
    for i, (name, column) in enumerate(df.items()):
        key = (b"{" if i == 0 else b"") + orjson.dumps(str(name)) + b":"
        end = b"}" if i == width - 1 else b""
        keyed = _keyed(column, key, end, fallback)
        if len(keyed) != n:  # a value split into pieces: never for the types handled here
            raise AssertionError(f"column {name!r} gave {len(keyed)} cells for {n} rows")
        cells[i::width] = keyed
    return b"[" + b",".join(cells) + b"]"


def _keyed(column: pd.Series, key: bytes, end: bytes, fallback: Cells) -> list[bytes]:
    """``key + <the cell's JSON> + end`` for each cell of ``column``."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _datetimes(utc_naive(column), True, key, end)
    if isinstance(dtype, np.dtype):
        values = column.to_numpy()
        text = numbers_text(values)
        if text is not None:
            # Numbers hold no comma: every separator becomes the next cell's key.
            return _split(text[1:-1], b",", b"", key, end)
        if values.dtype.kind == "M":
            return _datetimes(values, False, key, end)
    strings = _plain_strings(column)
    if strings is not None:
        return _split(strings, b'","', b'"', key, end)
    return _framed(fallback(column).tolist(), key, end)


def _split(text: bytes, separator: bytes, quote: bytes, key: bytes, end: bytes) -> list[bytes]:
    """The cells of ``text`` (separated by ``separator``, each within ``quote``), keyed."""
    joint = quote + end + b"\0" + key + quote
    return (key + quote + text.replace(separator, joint) + quote + end).split(b"\0")


def _framed(cells: list[bytes], key: bytes, end: bytes) -> list[bytes]:
    return list(map(b"".join, zip(itertools.repeat(key), cells, itertools.repeat(end))))


def _datetimes(values: np.ndarray, utc: bool, key: bytes, end: bytes) -> list[bytes]:
    unit = iso_unit(values)
    missing = np.isnat(values)
    digits = iso_digits(values, unit, missing, utc)
    if digits is None:  # a year outside the fast range: numpy writes those
        text = np.datetime_as_string(values, unit=unit, timezone="UTC" if utc else "naive")
        cells = [b'"' + t.encode() + b'"' for t in text.tolist()]
        for i in np.flatnonzero(missing).tolist():
            cells[i] = b"null"
        return _framed(cells, key, end)
    # One fixed-width row per cell: key, digits, end; a missing value is key, null, end and
    # NUL padding, which a bytes array ("S") drops when it hands out its values.
    n, size = digits.shape
    rows = np.zeros((n, len(key) + size + len(end)), np.uint8)
    rows[:, : len(key)] = np.frombuffer(key, np.uint8)
    rows[:, len(key) : len(key) + size] = digits
    rows[:, len(key) + size :] = np.frombuffer(end, np.uint8)
    if missing.any():
        null = np.frombuffer(b"null" + end, np.uint8)
        rows[missing, len(key) :] = 0
        rows[missing, len(key) : len(key) + len(null)] = null
    return rows.view(f"S{rows.shape[1]}").ravel().tolist()


def _plain_strings(column: pd.Series) -> bytes | None:
    """The text of a column of strings, none missing and none needing an escape, as orjson
    writes the list of them without its outer ``["`` and ``"]``; None for any other column."""
    if not (isinstance(column.dtype, pd.StringDtype) or column.dtype == object):
        return None
    values = column.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) != "string":
        return None  # missing values, or values of other types: one cell at a time
    try:
        text = orjson.dumps(values.tolist())
    except orjson.JSONEncodeError:  # a lone surrogate: the per-cell writer says what to do
        return None
    if b"\\" in text:  # an escape: a quote may sit in a cell, so '","' may not part cells
        return None
    # '["a","b"]': with no escape no cell holds a quote, so '","' parts the cells exactly.
    return text[2:-2]
