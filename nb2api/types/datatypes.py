"""Which Python annotations a route accepts, and how each becomes a pydantic type.

``schema`` asks this module, per parameter and per return annotation, for the type pydantic should
validate against; data-science types plug in here. ``pd.DataFrame``, ``pd.Series``, ``np.ndarray``
(and ``NDArray[np.float64]``), numpy scalars and ``pd.Timestamp`` are rewritten, wherever they sit
in an annotation, into ``Annotated[<type>, <schema>]`` where the schema object tells pydantic how to
validate, serialize and document them. The conversions themselves live in :mod:`nb2api.frames`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import types
import typing
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter
from pydantic_core import PydanticCustomError
from pydantic_core import core_schema as cs
from typing_extensions import is_typeddict

from . import display, images
from ._lazy import LazyModule, in_use, loaded

np = LazyModule("numpy")
pd = LazyModule("pandas")
frames = LazyModule(".frames", __package__)  # imports pandas and numpy

ADVICE = (
    "use a type pydantic can validate (int, str, list[float], a BaseModel, a dataclass or a "
    "TypedDict) or a data-science type (pd.DataFrame, Annotated[pd.DataFrame, Row], pd.Series, "
    "np.ndarray, NDArray[np.float64]); an object such as a trained model belongs in a setup "
    "cell, not in the request"
)

_SCALARS: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    uuid.UUID,
    decimal.Decimal,
)
_SEQUENCES = (list, tuple, set, frozenset)


def request_type(annotation: Any) -> Any:
    """The type pydantic validates a request field against."""
    return _rewrite(annotation)


def response_type(annotation: Any) -> Any:
    """The type that documents a response, or None when the media type says it all (bytes of
    a declared media type, a figure, a ``Response``, a class Jupyter displays)."""
    if images.media_type(annotation) is not None:
        return None
    rewritten = _rewrite(annotation)
    if rewritten is annotation and display.is_shown_type(annotation):
        return None
    return rewritten


def nullable_floats(annotation: Any) -> Any:
    """``annotation`` as a response documents it: a float, also in a list, tuple, dict or
    union, is a number or null, since NaN and infinities are written as null. (A float field
    of a model keeps its model's schema.) The result is still checked against ``annotation``."""
    if annotation is float or (typing.get_origin(annotation) is Annotated
                               and typing.get_args(annotation)[0] is float):
        return typing.Optional[annotation]  # noqa: UP045 (a runtime value, not an annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset, dict, typing.Union, types.UnionType) and args:
        documented = tuple(arg if arg is Ellipsis else nullable_floats(arg) for arg in args)
        if documented != args:
            if origin in (typing.Union, types.UnionType):
                return typing.Union[documented]  # noqa: UP007 (a runtime value)
            return origin[documented]
    return annotation


def openapi_responses(annotation: Any) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries that document a route whose result has no JSON schema: its
    declared media type, or what a ``Response`` class or a class Jupyter displays can answer
    with. Empty for a result with a schema (a DataFrame has display methods, and a schema)."""
    if images.media_type(annotation) is not None:
        return images.openapi_responses(annotation)
    if annotation is inspect.Parameter.empty:
        # No annotation: JSON as a rule, but whatever Jupyter would show for a value that is
        # not JSON (a figure as PNG, a table as HTML), or a Response of any type.
        return {200: {"content": {"application/json": {}, "*/*": {}}}}
    if response_type(annotation) is None:
        return display.shown_responses(annotation)
    return {}


def response_class(annotation: Any) -> Any:
    """The route's response class: the declared media type's; for a ``Response`` or a class
    Jupyter displays, one without a media type (:func:`openapi_responses` lists them); else
    JSON."""
    if images.media_type(annotation) is None and response_type(annotation) is None:
        return Response
    return images.response_class(annotation)


def data_schema(annotation: Any) -> DataSchema | None:
    """The schema object of a rewritten annotation that is itself a data-science type."""
    if typing.get_origin(annotation) is Annotated:
        for meta in typing.get_args(annotation)[1:]:
            if isinstance(meta, DataSchema):
                return meta
    return None


# -- the schema objects ----------------------------------------------------------------------


class DataSchema:
    """Annotated metadata that makes a pandas or numpy type a pydantic type."""

    title = ""
    description = ""

    def encode(self, value: Any) -> bytes:
        """JSON bytes for a result of this type; TypeError or ValueError when it does not fit."""
        raise NotImplementedError

    def _serializer(self, return_schema: cs.CoreSchema) -> cs.SerSchema:
        return cs.plain_serializer_function_ser_schema(
            lambda value: orjson.loads(self.encode(value)),
            return_schema=return_schema,
            when_used="json",
        )

    def __get_pydantic_json_schema__(
        self, schema: cs.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema = handler.resolve_ref_schema(handler(schema))
        if self.title:
            json_schema.setdefault("title", self.title)
        if self.description:
            json_schema.setdefault("description", self.description)
        return json_schema


def _split_schema(columns: cs.CoreSchema) -> cs.CoreSchema:
    return cs.typed_dict_schema(
        {
            "columns": cs.typed_dict_field(cs.list_schema(columns)),
            "data": cs.typed_dict_field(cs.list_schema(cs.list_schema(cs.any_schema()))),
            "index": cs.typed_dict_field(cs.list_schema(cs.any_schema()), required=False),
        },
        extra_behavior="forbid",  # as frames.split_parts reads it: no other keys
    )


class FrameSchema(DataSchema):
    """``pd.DataFrame``, optionally with a declared ``Row`` (pydantic model, dataclass, TypedDict).

    In: an array of records or the split form. Out: an array of records. With a ``Row``, each
    row is validated (errors name the row index and the column), the columns get the declared
    dtypes and order, and the schema in /docs shows the columns.
    """

    title = "DataFrame"

    def __init__(self, row: type | None = None) -> None:
        self.row = row
        self.fields = row_fields(row) if row is not None else None
        self.description = (
            f"A table of {row.__name__} rows: an array of records, or the split form "
            '{"columns": [...], "data": [[...], ...]}; returned as records of its columns.'
            if row is not None
            else 'A table: an array of records, or the split form {"columns": [...], "data": '
            "[[...], ...]}; returned as records, an informative index as the leading column(s) "
            f"and MultiIndex column names joined with '{frames.COLUMN_SEPARATOR}'."
        )

    def __repr__(self) -> str:
        return f"FrameSchema({self.row.__name__ if self.row else ''})"

    def encode(self, value: Any) -> bytes:
        return frames.frame_json(value, columns=self.declared(value))

    def declared(self, value: Any) -> list[str] | None:
        """The columns of the declared ``Row`` that ``value`` is written with (None: all);
        TypeError or ValueError when ``value`` does not fit."""
        if not isinstance(value, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(value).__name__}")
        if self.fields is None:
            return None
        missing = [
            name for name in self.fields
            if name not in value.columns and name not in value.index.names
        ]
        if missing:
            raise ValueError(
                f"the DataFrame lacks the column(s) {', '.join(map(repr, missing))} of "
                f"{self.row.__name__}"  # type: ignore[union-attr]
            )
        return list(self.fields)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> cs.CoreSchema:
        if self.row is None:
            records = cs.list_schema(cs.dict_schema(cs.str_schema(), cs.any_schema()))
            return cs.no_info_plain_validator_function(
                _value_error(frames.frame_from_json, "dataframe"),
                json_schema_input_schema=cs.union_schema([records, _split_schema(cs.str_schema())]),
                serialization=self._serializer(records),
            )
        row_schema = handler.generate_schema(self.row)
        rows = cs.list_schema(row_schema)
        dump = _row_dumper(self.row)
        fields = self.fields
        assert fields is not None

        def validate(value: Any, validate_rows: cs.ValidatorFunctionWrapHandler) -> pd.DataFrame:
            if isinstance(value, pd.DataFrame):
                return value
            index = None
            if isinstance(value, collections.abc.Mapping):
                try:
                    value, index = frames.records_from_split(value)
                except frames.FrameError as exc:
                    raise PydanticCustomError("dataframe", str(exc)) from None
            frame = frames.typed_frame(dump(validate_rows(value)), fields)
            if index is not None:
                frame.index = pd.Index(index)
            return frame

        split = _split_schema(cs.literal_schema(list(fields)))
        return cs.no_info_wrap_validator_function(
            validate,
            rows,
            json_schema_input_schema=cs.union_schema([rows, split]),
            serialization=self._serializer(rows),
        )


class SeriesSchema(DataSchema):
    """``pd.Series``: a list (default index) or an object keyed by index label, in and out."""

    title = "Series"
    description = ("A list of values, or an object keyed by index label (records, a column "
                   "per level, for a MultiIndex).")

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, pd.Series):
            raise TypeError(f"expected a pandas Series, got {type(value).__name__}")
        return frames.series_json(value)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> cs.CoreSchema:
        shape = cs.union_schema(
            [cs.list_schema(cs.any_schema()), cs.dict_schema(cs.str_schema(), cs.any_schema())]
        )
        return cs.no_info_plain_validator_function(
            _value_error(frames.series_from_json, "series"),
            json_schema_input_schema=shape,
            serialization=self._serializer(shape),
        )


class ArraySchema(DataSchema):
    """``np.ndarray``: nested lists of numbers, rectangular, of ``dtype`` when declared."""

    title = "ndarray"

    def __init__(self, dtype: np.dtype | None = None, ndim: int | None = None) -> None:
        self.dtype = dtype
        self.ndim = ndim
        kind = f"{dtype} " if dtype is not None else ""
        dims = f"{ndim}-dimensional" if ndim is not None else "n-dimensional"
        self.description = f"An {dims} {kind}array, as nested lists of numbers."

    def __repr__(self) -> str:
        return f"ArraySchema({self.dtype}, ndim={self.ndim})"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, np.ndarray):
            raise TypeError(f"expected a numpy ndarray, got {type(value).__name__}")
        return frames.array_json(value)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> cs.CoreSchema:
        kind = self.dtype.kind if self.dtype is not None else "f"
        item: cs.CoreSchema = (
            cs.bool_schema() if kind == "b" else cs.int_schema() if kind in "iu" else
            cs.float_schema()
        )
        shape: cs.CoreSchema
        if self.ndim is None:
            shape = cs.list_schema(cs.any_schema())
        else:
            shape = item
            for _ in range(max(self.ndim, 1)):
                shape = cs.list_schema(shape)
        dtype, ndim = self.dtype, self.ndim
        return cs.no_info_plain_validator_function(
            _value_error(lambda value: frames.array_from_json(value, dtype, ndim), "ndarray"),
            json_schema_input_schema=shape,
            serialization=self._serializer(shape),
        )


class ScalarSchema(DataSchema):
    """A numpy scalar type (``np.float64``, ``np.int32``, ...) or ``pd.Timestamp``."""

    def __init__(self, kind: type) -> None:
        self.kind = kind

    def encode(self, value: Any) -> bytes:
        return orjson.dumps(value, default=frames.to_jsonable)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> cs.CoreSchema:
        if self.kind is pd.Timestamp:
            base: cs.CoreSchema = cs.datetime_schema()
        else:
            char = np.dtype(self.kind).kind
            base = (
                cs.bool_schema() if char == "b" else cs.int_schema() if char in "iu" else
                cs.float_schema()
            )
        kind = self.kind
        written = cs.str_schema() if kind is pd.Timestamp else base  # ISO 8601 text

        def convert(value: Any) -> Any:
            try:
                return value if isinstance(value, kind) else kind(value)
            except (OverflowError, ValueError) as exc:  # np.int8(300)
                raise PydanticCustomError("numpy_scalar", str(exc)) from None

        return cs.no_info_after_validator_function(
            convert,
            base,
            serialization=cs.plain_serializer_function_ser_schema(
                frames.to_jsonable, return_schema=written, when_used="json"
            ),
        )


class _Refused:
    """An annotation that looked like a data-science type but is not one; fails at load."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        raise TypeError(self.reason)


def _value_error(convert, error_type: str):
    """Turn a conversion's FrameError into the pydantic error a 422 reports."""

    def validate(value: Any) -> Any:
        try:
            return convert(value)
        except frames.FrameError as exc:
            raise PydanticCustomError(error_type, str(exc)) from None

    return validate


# -- rows ------------------------------------------------------------------------------------


def is_row(candidate: Any) -> bool:
    """A class that can describe one row: a pydantic model, a dataclass or a TypedDict."""
    return isinstance(candidate, type) and (
        issubclass(candidate, BaseModel)
        or dataclasses.is_dataclass(candidate)
        or is_typeddict(candidate)
    )


def row_fields(row: type) -> dict[str, Any]:
    """Column name -> annotation, in declaration order."""
    if issubclass(row, BaseModel):
        return {name: f.annotation for name, f in row.model_fields.items()}
    hints = typing.get_type_hints(row, include_extras=True)
    if dataclasses.is_dataclass(row):
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(row)}
    return dict(hints)


def _row_dumper(row: type):
    if is_typeddict(row):
        return lambda rows: rows  # validated TypedDict rows are dicts already
    adapter = TypeAdapter(list[row])  # type: ignore[valid-type]
    return adapter.dump_python  # in Rust, not a Python loop over rows


# -- rewriting annotations -------------------------------------------------------------------


def _rewrite(annotation: Any) -> Any:
    if not in_use():
        return annotation  # no numpy, so no array, table or numpy scalar in any annotation
    origin = typing.get_origin(annotation)
    frame_type = loaded("pandas", "DataFrame")  # None unless the notebook imported pandas
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        if frame_type is not None and base is frame_type:
            rows = [m for m in meta if is_row(m)]
            others = [m for m in meta if not is_row(m)]
            strays = [m for m in others if isinstance(m, type)]
            if strays or len(rows) > 1:
                what = strays[0].__name__ if strays else "more than one Row"
                return Annotated[pd.DataFrame, _Refused(
                    f"Annotated[pd.DataFrame, {what}] does not describe one row; declare the "
                    "columns with one pydantic BaseModel, dataclass or TypedDict"
                )]
            return Annotated[(pd.DataFrame, FrameSchema(rows[0] if rows else None), *others)]
        if any(isinstance(m, DataSchema) for m in meta):
            return annotation
        rewritten = _rewrite(base)
        return annotation if rewritten is base else Annotated[(rewritten, *meta)]
    if frame_type is not None:
        if annotation is frame_type:
            return Annotated[pd.DataFrame, FrameSchema()]
        if annotation is pd.Series:
            return Annotated[pd.Series, SeriesSchema()]
        if annotation is pd.Timestamp:
            return Annotated[annotation, ScalarSchema(annotation)]
    if annotation is np.ndarray or origin is np.ndarray:
        return Annotated[np.ndarray, _array_schema(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, np.number | np.bool_):
        return Annotated[annotation, ScalarSchema(annotation)]
    if origin is None or origin is Literal:
        return annotation
    args = typing.get_args(annotation)
    new_args = tuple(_rewrite(a) for a in args)
    if all(a is b for a, b in zip(args, new_args, strict=True)):
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new_args]  # noqa: UP007 (built from a tuple)
    try:
        return origin[new_args]
    except TypeError:
        return annotation


def _array_schema(annotation: Any) -> ArraySchema:
    """``np.ndarray[tuple[int, int], np.dtype[np.float64]]`` (NDArray[...]) -> dtype and ndim."""
    args = typing.get_args(annotation)
    dtype = ndim = None
    if len(args) == 2:
        shape, dtype_arg = args
        shape_args = typing.get_args(shape)
        if shape_args and Ellipsis not in shape_args:
            ndim = len(shape_args)
        scalar = typing.get_args(dtype_arg)
        if scalar and isinstance(scalar[0], type) and issubclass(scalar[0], np.generic):
            if scalar[0] in (np.generic, np.number, np.floating, np.integer, np.inexact):
                dtype = None
            else:
                dtype = np.dtype(scalar[0])
    return ArraySchema(dtype, ndim)


# -- plain values in the path and the query string -------------------------------------------


def is_scalar(annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return is_scalar(typing.get_args(annotation)[0])
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(is_scalar(a) for a in typing.get_args(annotation) if a is not type(None))
    return isinstance(annotation, type) and (
        issubclass(annotation, _SCALARS) or issubclass(annotation, enum.Enum)
    )


def is_scalar_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return is_scalar_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and is_scalar_list(args[0])
    return origin in _SEQUENCES and all(
        is_scalar(a) for a in typing.get_args(annotation) if a is not Ellipsis
    )
