"""A DataFrame as JSON records, assembled by Arrow's compute kernels when pyarrow is installed.

Measured on a 10,000 x 10 table (``bench/bench_dataframe.py``), the time of the column writer in
:mod:`.frames` went to making 100,000 Python ``bytes`` objects (one per cell) and to joining them
row by row. Here each column still becomes its JSON cells by the same rules (orjson's shortest
round-trip floats, numpy's ISO 8601 text), but as one Arrow binary array per column, and one
element-wise join in C++ writes every row at once: no Python object per cell or per row. A column
it has no vectorised rule for (objects other than plain strings, nullable integers, categoricals)
takes the per-cell writer of :mod:`.frames` (``fallback``) and is joined with the rest here.

:func:`frame_records` returns None when pyarrow is missing; the caller writes the table itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd

try:
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # the arrow extra is not installed: frames writes every table
    pa = pc = None  # type: ignore[assignment]

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# dtypes orjson writes natively and safely (it has no float16; datetimes are ours, NaT included).
NATIVE_KINDS = "biuf"
# Characters orjson escapes in a string; a column without any is quoted as it stands.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


def iso_unit(values: np.ndarray) -> str:
    """Whole seconds print as seconds; otherwise as fine as the data needs."""
    own, count = np.datetime_data(values.dtype)
    if own not in _FRACTION_DIGITS and own not in ("Y", "M", "W", "D", "h", "m"):
        values, own = values.astype("datetime64[ns]"), "ns"  # finer than nanoseconds
    elif count != 1:  # ticks of 10 ms, say: counted in ms
        values = values.astype(f"datetime64[{own}]")
    # In the values' own unit: a year past 2262 in seconds would overflow as nanoseconds.
    ticks = values.view(np.int64)[~np.isnat(values)]
    scale = _FRACTION_DIGITS.get(own, 0)  # a unit of a minute or more counts whole seconds
    for unit in ("s", "ms", "us"):
        digits = _FRACTION_DIGITS[unit]
        if digits >= scale or not (ticks % 10 ** (scale - digits)).any():
            return unit
    return "ns"


Cells = Callable[[pd.Series], np.ndarray]


def frame_records(df: pd.DataFrame, fallback: Cells) -> bytes | None:
    """``df`` (already as shown: index as columns, flat labels, at least one row and column)
    as a JSON array of records, byte for byte what the per-cell writer ``fallback`` gives;
    None without pyarrow."""
    if pa is None:
        return None
    n = len(df)
    parts: list[Any] = []
    for i, (name, column) in enumerate(df.items()):
        parts.append(_binary((b"{" if i == 0 else b",") + orjson.dumps(str(name)) + b":"))
        cells = _cells(column, fallback)
        if len(cells) != n:  # a value split into pieces: never for the types handled here
            raise AssertionError(f"column {name!r} gave {len(cells)} cells for {n} rows")
        parts.append(cells)
    parts.append(_binary(b"},"))
    parts.append(_binary(b""))  # the separator between the parts: none
    rows = pc.binary_join_element_wise(*parts)
    offsets = np.frombuffer(rows.buffers()[1], np.int64)
    start, end = int(offsets[rows.offset]), int(offsets[rows.offset + n])
    text = memoryview(rows.buffers()[2])[start : end - 1]  # without the last row's comma
    return b"".join((b"[", text, b"]"))


def _binary(value: bytes) -> Any:
    return pa.scalar(value, pa.large_binary())


def numbers_text(values: np.ndarray) -> bytes | None:
    """The JSON array of a numeric column's values in one orjson call (infinities as null, as
    NaN), or None when its dtype is not one orjson writes natively."""
    if values.dtype.kind not in NATIVE_KINDS or values.dtype == np.float16:
        return None
    if values.dtype.kind == "f" and np.isinf(values).any():
        values = np.where(np.isinf(values), np.nan, values)
    return orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)


def utc_naive(column: pd.Series) -> np.ndarray:
    """A timezone-aware column's instants, as naive UTC datetime64 values."""
    return column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()


def _cells(column: pd.Series, fallback: Cells) -> Any:
    """The JSON text of each cell of ``column``, as an Arrow large_binary array."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _datetimes(utc_naive(column), utc=True)
    if isinstance(dtype, np.dtype):
        values = column.to_numpy()
        text = numbers_text(values)
        if text is not None:
            # Numbers hold no comma: the array's text splits into its cells, in C++.
            return pc.split_pattern(pa.scalar(text[1:-1], pa.large_binary()), b",").values
        if values.dtype.kind == "M":
            return _datetimes(values, utc=False)
    strings = _plain_strings(column)
    if strings is not None:
        return strings
    return pa.array(fallback(column), pa.large_binary())


def _datetimes(values: np.ndarray, utc: bool) -> Any:
    unit = iso_unit(values)
    missing = np.isnat(values)
    digits = iso_digits(values, unit, missing, utc)
    if digits is None:  # a year outside _YEARS: numpy writes those
        text = np.datetime_as_string(values, unit=unit, timezone="UTC" if utc else "naive")
        quoted = _quoted(pa.array(text, pa.large_string(),
                                  mask=missing if missing.any() else None))
        return quoted.fill_null(b"null") if missing.any() else quoted
    quoted = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(digits.shape[1]), len(values), [None, pa.py_buffer(digits)]
    ).cast(pa.large_binary())
    if missing.any():
        return pc.if_else(pa.array(missing), _binary(b"null"), quoted)
    return quoted


_FRACTION_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}
# Years within nanosecond timestamps' range: any unit converts to any other without overflow.
_YEARS = (1678, 2261)


def iso_digits(values: np.ndarray, unit: str, missing: np.ndarray,
               utc: bool) -> np.ndarray | None:
    """``"YYYY-MM-DDTHH:MM:SS[.fff]"`` (``Z`` before the closing quote when ``utc``) for each
    value, as numpy's ``datetime_as_string`` writes it, digit by digit in numpy: one pass per
    digit over the column instead of a string per cell; a ``(rows, width)`` uint8 matrix, its
    rows of missing values as for the epoch. None for a year outside ``_YEARS``."""
    year = np.where(missing, 0, values.astype("datetime64[Y]").astype(np.int64)) + 1970
    if len(year) and (year.min() < _YEARS[0] or year.max() > _YEARS[1]):
        return None
    values = np.where(missing, np.datetime64(0, unit), values.astype(f"datetime64[{unit}]"))
    years = values.astype("datetime64[Y]")
    months = values.astype("datetime64[M]")
    days = values.astype("datetime64[D]")
    seconds = values.astype("datetime64[s]")
    of_day = (seconds - days).astype(np.int64)
    fields = [
        (year, 4, b"-"),
        ((months - years).astype(np.int64) + 1, 2, b"-"),
        ((days - months).astype(np.int64) + 1, 2, b"T"),
        (of_day // 3600, 2, b":"),
        (of_day // 60 % 60, 2, b":"),
        (of_day % 60, 2, b""),
    ]
    digits = _FRACTION_DIGITS[unit]
    if digits:
        fields[-1] = (of_day % 60, 2, b".")
        fields.append(((values - seconds).astype(np.int64), digits, b""))
    tail = b'Z"' if utc else b'"'
    width = 1 + sum(size + len(after) for _, size, after in fields) + len(tail)
    out = np.empty((len(values), width), np.uint8)
    out[:, 0] = ord('"')
    at = 1
    for number, size, after in fields:
        for place in range(size - 1, -1, -1):
            out[:, at + place] = 48 + number % 10
            number = number // 10
        at += size
        if after:
            out[:, at] = after[0]
            at += 1
    out[:, at:] = np.frombuffer(tail, np.uint8)
    return out


def _plain_strings(column: pd.Series) -> Any:
    """A column of strings that need no escape, quoted; None for any other column."""
    if not (isinstance(column.dtype, pd.StringDtype) or column.dtype == object):
        return None
    try:
        array = pa.array(column, from_pandas=True)
    except Exception:  # noqa: BLE001 - mixed types, a big int, a lone surrogate, ...
        return None  # the per-cell writer knows what to do with each
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type not in (pa.string(), pa.large_string()) or (
        len(array) and pc.any(pc.match_substring_regex(array, _NEEDS_ESCAPE)).as_py()
    ):
        return None
    quoted = _quoted(array.cast(pa.large_string()))
    return quoted.fill_null(b"null") if array.null_count else quoted


def _quoted(strings: Any) -> Any:
    return pc.binary_join_element_wise(_binary(b'"'), strings.cast(pa.large_binary()),
                                       _binary(b'"'), _binary(b""))
