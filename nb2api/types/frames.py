"""pandas and numpy values to and from JSON, column by column.

The conversions behind the data-science types, kept free of pydantic: a request's records or split
form into a DataFrame, nested lists into an ndarray, and DataFrames, Series and arrays into JSON
bytes. A DataFrame is encoded one column at a time (orjson on numeric columns, numpy on datetimes),
never one cell at a time in Python, and floats keep their shortest round-trip form; with pyarrow,
:mod:`.records` joins the columns into rows in C++, else :mod:`.keyed` does in a few C passes.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import typing
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

from . import keyed, records
from .records import NATIVE_KINDS as _NATIVE_KINDS
from .records import iso_unit as _iso_unit

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_to_bytes = np.frompyfunc(str.encode, 1, 1)
_dump_cell = functools.partial(orjson.dumps, default=lambda v: to_jsonable(v))


class FrameError(ValueError):
    """A request's table does not fit the declared shape."""


class Unwritable(TypeError):
    """A value in a table or an array that JSON cannot write; ``value`` is that value."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"Type is not JSON serializable: {type(value).__name__}")
        self.value = value


# -- requests --------------------------------------------------------------------------------


def frame_from_json(value: Any) -> pd.DataFrame:
    """Records (``[{...}, ...]``) or the split form (``{"columns": [...], "data": [[...]]}``)."""
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, list):
        return _frame_from_records(value)
    if isinstance(value, Mapping):
        columns, data, index = split_parts(value)
        _check_row_lengths(data, len(columns))
        return pd.DataFrame(data, columns=columns, index=index)
    raise FrameError(
        "expected an array of records or an object with 'columns' and 'data' (the split form)"
    )


def _frame_from_records(rows: list[Any]) -> pd.DataFrame:
    # Every row an object, and the columns (every key, in first-seen order), checked and
    # gathered in C, so that pandas builds the table in Cython without a Python step per row.
    if all(map(isinstance, rows, itertools.repeat(dict))):
        columns = list(dict.fromkeys(itertools.chain.from_iterable(rows)))
        return pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame()
    bad = next(i for i, row in enumerate(rows) if not isinstance(row, dict))
    raise FrameError(f"row {bad} is not an object with column names as keys")


def split_parts(value: Mapping[str, Any]) -> tuple[list[Any], list[Any], list[Any] | None]:
    unknown = set(value) - {"columns", "data", "index"}
    columns, data, index = value.get("columns"), value.get("data"), value.get("index")
    if unknown or not isinstance(columns, list) or not isinstance(data, list):
        raise FrameError(
            'expected the split form {"columns": [...], "data": [[...], ...]}, with an optional '
            '"index"'
        )
    if "index" in value and (not isinstance(index, list) or len(index) != len(data)):
        # As the schema says: "index" may be left out, but is a list when given (not null).
        raise FrameError(f"'index' must be a list of {len(data)} labels, one per row of 'data'")
    if not all(isinstance(c, _LABEL) for c in columns):
        # a list or an object cannot label a column (pandas would fail to hash it)
        raise FrameError("'columns' must be a list of column names (strings or numbers)")
    if index is not None and not all(isinstance(i, _LABEL) for i in index):
        raise FrameError("'index' must be a list of labels (strings or numbers)")
    return columns, data, index


_LABEL = (str, int, float, bool, type(None))


def _check_row_lengths(data: list[Any], width: int) -> None:
    # map() over C functions: checked without a Python step per row.
    if not all(map(isinstance, data, itertools.repeat(list))):
        bad = next(i for i, row in enumerate(data) if not isinstance(row, list))
        raise FrameError(f"row {bad} of 'data' is not a list of values")
    lengths = np.fromiter(map(len, data), np.int64, len(data))
    wrong = np.flatnonzero(lengths != width)
    if wrong.size:
        i = int(wrong[0])
        raise FrameError(f"row {i} of 'data' has {lengths[i]} values for {width} columns")


def records_from_split(value: Mapping[str, Any]) -> tuple[list[Any], list[Any] | None]:
    """The split form as records (and its index), so each row can be validated as a ``Row``."""
    columns, data, index = split_parts(value)
    _check_row_lengths(data, len(columns))
    return [dict(zip(columns, row, strict=True)) for row in data], index


def typed_frame(rows: list[dict[str, Any]], fields: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame of validated rows, with the declared columns in order and their dtypes."""
    df = pd.DataFrame.from_records(rows, columns=list(fields)) if rows else pd.DataFrame(
        {name: pd.Series(dtype=object) for name in fields}
    )
    for name, annotation in fields.items():
        df[name] = _as_declared(df[name], annotation)
    return df


def _as_declared(column: pd.Series, annotation: Any) -> pd.Series:
    base, optional = _unwrap_optional(annotation)
    try:
        if base is bool:
            return column.astype("boolean" if optional or column.isna().any() else bool)
        if base is int:
            return column.astype("Int64" if optional or column.isna().any() else "int64")
        if base is float:
            return column.astype("float64")
        if base is dt.datetime:
            return pd.to_datetime(column, utc=_any_aware(column))
    except (TypeError, ValueError, OverflowError):  # an int past 64 bits stays a Python int
        return column
    return column


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap_optional(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _any_aware(column: pd.Series) -> bool:
    first = column.dropna()
    return bool(len(first)) and getattr(first.iloc[0], "tzinfo", None) is not None


def series_from_json(value: Any) -> pd.Series:
    """A JSON list (default index) or an object keyed by index label."""
    if isinstance(value, pd.Series):
        return value
    if isinstance(value, list):
        return pd.Series(value)
    if isinstance(value, Mapping):
        return pd.Series(list(value.values()), index=list(value.keys()))
    raise FrameError("expected a list of values or an object keyed by index label")


def array_from_json(value: Any, dtype: np.dtype | None, ndim: int | None) -> np.ndarray:
    """Nested lists of numbers into an array: rectangular, numeric, of ``dtype`` when given."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        if not isinstance(value, list):
            raise FrameError("expected an array (nested lists of numbers)")
        try:
            array = np.asarray(value)
        except ValueError:
            raise FrameError(
                "the nested lists are ragged: every row needs the same length"
            ) from None
    if array.dtype.kind == "O" and dtype is not None and dtype.kind in "fc":
        # null in a float array is NaN; anything else non-numeric still fails below.
        try:
            array = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError):
            pass
    if array.dtype.kind not in "biufc":
        raise FrameError(f"expected numbers, got values of type {_kind_name(array)}")
    if ndim is not None and array.ndim != ndim:
        raise FrameError(f"expected {ndim} dimension(s), got {array.ndim}")
    if dtype is not None and array.size == 0:
        array = array.astype(dtype)  # `[]` reads as float64, but holds no value of any dtype
    if dtype is not None and array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise FrameError(f"expected values of dtype {dtype}, got {array.dtype}")
        array = array.astype(dtype)
    return array


def _kind_name(array: np.ndarray) -> str:
    if array.dtype.kind in "US":
        return "string"
    if array.dtype.kind == "b":
        return "bool"
    return "mixed" if array.dtype.kind == "O" else str(array.dtype)


# -- results ---------------------------------------------------------------------------------


COLUMN_SEPARATOR = "_"  # MultiIndex columns ("price", "mean") are written "price_mean"


def frame_json(df: pd.DataFrame, columns: list[str] | None = None) -> bytes:
    """``df`` as a JSON array of records; NaN and NaT are null, timestamps ISO 8601.

    As the notebook shows it: an index that carries information (anything but the default
    unnamed range) leads as column(s), named as ``reset_index()`` names them, and MultiIndex
    column labels are joined with :data:`COLUMN_SEPARATOR`. With declared ``columns``, only
    those are written (taken from the index levels where the columns lack them).
    """
    df = shown_table(df, columns)
    n = len(df)
    if df.shape[1] == 0:
        return b"[" + b",".join([b"{}"] * n) + b"]"
    if n == 0:
        return b"[]"
    assembled = records.frame_records(df, _cells)  # None without pyarrow
    return assembled if assembled is not None else keyed.frame_records(df, _cells)


def shown_table(df: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """``df`` as its records show it: the declared ``columns`` only (taken from the index
    levels where the columns lack them), else :func:`shown_frame`."""
    if columns is not None:
        return _declared_columns(df, columns)
    return shown_frame(df)


def shown_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its informative index as leading columns and its column labels flat."""
    if not _plain_index(df.index):
        names = _index_names(df)
        df = df.reset_index(names=names)
    if isinstance(df.columns, pd.MultiIndex):
        df = df.set_axis(flat_columns(df.columns), axis=1)
    return df


def flat_columns(columns: pd.Index) -> list[str]:
    """MultiIndex labels as text: the non-empty parts joined with :data:`COLUMN_SEPARATOR`."""
    if not isinstance(columns, pd.MultiIndex):
        return [str(name) for name in columns]
    return [
        COLUMN_SEPARATOR.join(str(part) for part in label if str(part) != "") for label in columns
    ]


def _plain_index(index: pd.Index) -> bool:
    """The default index, ``0..n-1`` without a name, says nothing the row order does not
    (whether a RangeIndex or integer labels that happen to count the rows)."""
    if index.name is not None or isinstance(index, pd.MultiIndex):
        return False
    if isinstance(index, pd.RangeIndex):
        return _default_index(index)
    return index.dtype.kind in "iu" and bool(
        (index.to_numpy() == np.arange(len(index))).all()
    )


def _index_names(df: pd.DataFrame) -> list[str]:
    """Names for the index levels as columns: their own, else ``index`` (or ``level_i`` for a
    MultiIndex), as ``reset_index()`` names them; a name a column has already gets ``_index``."""
    index = df.index
    taken = set(flat_columns(df.columns))
    names = []
    for i, name in enumerate(index.names):
        if name is None:
            name = "index" if index.nlevels == 1 else f"level_{i}"
        name = str(name)
        while name in taken:
            name += "_index"
        taken.add(name)
        names.append(name)
    return names


def _declared_columns(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    in_index = [name for name in columns if name not in df.columns and name in df.index.names]
    if in_index:
        df = df.reset_index(level=in_index)
    return df[columns]


def _cells(column: pd.Series) -> np.ndarray:
    """One JSON fragment (bytes) per cell of ``column``, as an object array."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        naive = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        return _datetime_cells(naive, tz=column.dtype.tz)
    # Extension dtypes (nullable Int64, str, category) take the per-object route below, so a
    # missing int stays an int column and does not print as 1.0.
    values = column.to_numpy() if isinstance(column.dtype, np.dtype) else None
    kind = values.dtype.kind if values is not None else "O"
    if kind in _NATIVE_KINDS and values.dtype != np.float16:
        if kind == "f" and np.isinf(values).any():
            values = np.where(np.isinf(values), np.nan, values)
        # Numbers hold no comma, so the array's text splits into its cells.
        text = orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)
        return np.array(text[1:-1].split(b","), dtype=object)
    if kind == "M":
        return _datetime_cells(values)
    if kind == "m":
        seconds = values.astype("timedelta64[us]").astype(np.float64) / 1e6
        cells = _cells(pd.Series(seconds))
        cells[np.isnat(values)] = b"null"
        return cells
    objects = column.to_numpy(dtype=object)
    missing = pd.isna(objects)
    if missing.any():
        objects = objects.copy()
        objects[missing] = None
    return _encode_each(objects)


def _datetime_cells(values: np.ndarray, tz: Any = None) -> np.ndarray:
    unit = _iso_unit(values)
    text = np.datetime_as_string(values, unit=unit, timezone="UTC" if tz is not None else "naive")
    text = np.char.add(np.char.add('"', text), '"')
    cells = _to_bytes(text.astype(object))
    cells[np.isnat(values)] = b"null"
    return cells


def series_json(series: pd.Series) -> bytes:
    """A list when the index is the default range, else an object keyed by index label; a
    MultiIndex (``groupby([...])[col].sum()``) makes records, as ``series.reset_index()`` shows
    them: a column per level, then the values under the Series' name (``0`` without one)."""
    if isinstance(series.index, pd.MultiIndex):
        return frame_json(series.to_frame())
    frame = series.to_frame("v")
    cells = _cells(frame["v"])
    if _default_index(series.index):
        return b"[" + b",".join(cells.tolist()) + b"]"
    index = series.index
    if isinstance(index, pd.DatetimeIndex):
        keys = _cells(pd.Series(index))
    else:
        keys = _encode_each(np.asarray(index.astype(str), dtype=object))
    return b"{" + b",".join((keys + b":" + cells).tolist()) + b"}"


def _default_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _encode_each(objects: np.ndarray) -> np.ndarray:
    # A C-level map of orjson over the cells: no Python frame per cell.
    cells = objects.tolist()
    try:
        return np.array(list(map(_dump_cell, cells)), dtype=object)
    except orjson.JSONEncodeError:
        # A cell orjson does not write (an integer past 64 bits, a lone surrogate): the column
        # is written cell by cell, with the standard library for those, on this rare path only.
        return np.array([_dump_cell_beyond_orjson(cell) for cell in cells], dtype=object)


def _dump_cell_beyond_orjson(value: Any) -> bytes:
    try:
        return _dump_cell(value)
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, TypeError | ValueError):
            raise exc.__cause__ from None  # not JSON at all: the caller says what to do
        return json.dumps(value, default=to_jsonable, separators=(",", ":")).encode("ascii")


def array_json(array: np.ndarray) -> bytes:
    if array.dtype.kind in _NATIVE_KINDS and array.dtype != np.float16 and array.ndim:
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            array = np.where(np.isinf(array), np.nan, array)
        return orjson.dumps(np.ascontiguousarray(array), option=_NUMPY)
    return orjson.dumps(to_jsonable(array), default=to_jsonable)


def to_jsonable(value: Any) -> Any:
    """What orjson should write for a numpy or pandas value it does not know natively."""
    if isinstance(value, pd.DataFrame):
        return orjson.loads(frame_json(value))
    if isinstance(value, pd.Series):
        return orjson.loads(series_json(value))
    if isinstance(value, pd.Index):
        return to_jsonable(value.to_numpy())
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "Mm":
            return [orjson.loads(cell) for cell in _cells(pd.Series(value.ravel()))] if \
                value.ndim == 1 else [to_jsonable(v) for v in value]
        return value.tolist()
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else pd.Timedelta(value).total_seconds()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.api.extensions.ExtensionArray):
        return to_jsonable(pd.Series(value))
    raise Unwritable(value)
