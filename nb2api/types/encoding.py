"""Turn a route function's return value into JSON bytes.

One encoder per route, built at load from the return annotation: a declared type is validated and
dumped by pydantic (in Rust); an undeclared one goes through orjson. DataFrames, Series and arrays,
declared or found in a result, are written by :mod:`nb2api.frames` column by column; numpy and
pandas scalars, NaN, NaT and timestamps become JSON wherever they sit (dicts, lists, models).
A media-type return annotation (a Figure, ``Annotated[bytes, "text/csv"]``) makes the route
answer with those bytes instead.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from . import datatypes, images
from ._lazy import LazyModule, data_types, in_use

pd = LazyModule("pandas")
frames = LazyModule(".frames", __package__)  # imports pandas and numpy

Encoder = Callable[[Any], bytes]

# No OPT_SERIALIZE_NUMPY here: orjson would then write every ndarray itself, and some orjson
# releases crash the process on a datetime64 array holding NaT. numpy values reach ``_fallback``
# instead, and ``frames`` hands orjson only the numeric arrays it writes safely.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_FRAGMENT = getattr(orjson, "Fragment", None)  # orjson >= 3.9 embeds ready JSON bytes


class ResultError(Exception):
    """The function returned something that does not fit its return annotation."""


class NotJSONError(TypeError):
    """A result holds a value JSON cannot write: ``value``, found in the whole ``result``.

    When ``value`` is the result itself, the route can still answer through the display
    protocol (:mod:`.display`) or pass a ``Response`` through.
    """

    def __init__(self, message: str, value: Any) -> None:
        super().__init__(message)
        self.value = value
        self.result: Any = value

    @property
    def whole(self) -> bool:
        """True when the result itself, not a value inside it, is what JSON cannot write."""
        return self.value is self.result


def _fallback(value: Any) -> Any:
    if _FRAGMENT is not None and isinstance(value, data_types()):
        return _FRAGMENT(_dump_data(value))
    try:
        return _data_jsonable(value)
    except TypeError:
        pass
    if images.is_figure(value):
        raise NotJSONError(
            "a matplotlib Figure is not JSON; annotate the return as Figure to answer image/png",
            value,
        )
    try:
        return to_jsonable_python(value, fallback=_data_jsonable)
    except (TypeError, PydanticSerializationError):
        raise NotJSONError(f"{type(value).__name__} is not JSON serializable", value) from None


def _data_jsonable(value: Any) -> Any:
    """A numpy or pandas value as plain JSON data; TypeError for anything else."""
    if not in_use():
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return frames.to_jsonable(value)


def _dump_data(value: Any) -> bytes:
    """A DataFrame, Series or ndarray, written by :mod:`nb2api.frames`."""
    try:
        if isinstance(value, pd.DataFrame):
            return frames.frame_json(value)
        if isinstance(value, pd.Series):
            return frames.series_json(value)
        return frames.array_json(value)
    except TypeError as exc:
        cause = exc if isinstance(exc, frames.Unwritable) else exc.__cause__
        if not isinstance(cause, frames.Unwritable):
            raise
        error = NotJSONError(str(cause), cause.value)  # a cell holds it: not the whole result
        error.result = value
        raise error from None


def dumps(value: Any) -> bytes:
    """JSON bytes for any value: orjson first, pydantic's encoder for what orjson lacks."""
    kinds = data_types()
    if kinds and isinstance(value, kinds):
        return _dump_data(value)
    try:
        return orjson.dumps(value, default=_fallback, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, NotJSONError):
            exc.__cause__.result = value
        if isinstance(exc.__cause__, TypeError | ValueError):
            raise exc.__cause__ from None  # ours says what to do; orjson's only names the type
        if exc.__cause__ is None and str(exc).startswith("Dict key"):
            # A numpy or pandas scalar as a key (value_counts().to_dict(), groupby dicts):
            # orjson takes only plain keys, so rewrite them, on this rare path only.
            return orjson.dumps(_plain_keys(value), default=_fallback, option=_ORJSON_OPTIONS)
        if exc.__cause__ is None and str(exc).startswith(_BEYOND_ORJSON):
            return _dumps_beyond_orjson(value)
        raise


# What JSON can hold and orjson does not write: an integer past 64 bits (plain FastAPI writes
# it), a string holding a lone surrogate (Python's json reads "\ud800" from a request and
# writes it back so), nesting deeper than 255 levels (Python's json reads up to its recursion
# limit). Written by the standard library instead, on this rare path only.
_BEYOND_ORJSON = ("Integer exceeds 64-bit range", "str is not valid UTF-8",
                  "Recursion limit reached")


def _dumps_beyond_orjson(value: Any) -> bytes:
    plain = _plain_data(value)
    try:
        return json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: written as its escape, "\ud800"
        return json.dumps(plain, separators=(",", ":")).encode("ascii")


def _plain_data(value: Any) -> Any:
    """``value`` as dicts, lists, str, int, float and None, written as orjson writes each leaf
    (NaN as null). Without recursion, so that any depth Python's json can write is fine; a
    value deeper than the recursion limit (or holding itself) is refused."""
    limit = sys.getrecursionlimit()
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, slot, depth = stack.pop()
        if depth > limit:
            raise ValueError(f"the result is nested deeper than {limit} levels, or holds itself")
        if isinstance(item, dict):
            parent[slot] = out = {}
            for key, child in item.items():
                key = _plain_json_key(key)
                out[key] = None  # the slot, in order; filled when the stack gets to it
                stack.append((child, out, key, depth + 1))
        elif isinstance(item, list | tuple):
            parent[slot] = out = [None] * len(item)
            stack.extend((child, out, index, depth + 1) for index, child in enumerate(item))
        elif isinstance(item, float):
            parent[slot] = item if math.isfinite(item) else None
        elif isinstance(item, str | int) or item is None:
            parent[slot] = item
        else:  # a leaf orjson or the fallback writes: as they write it
            try:
                parent[slot] = orjson.loads(
                    orjson.dumps(item, default=_fallback, option=_ORJSON_OPTIONS))
            except orjson.JSONEncodeError as exc:
                if isinstance(exc.__cause__, TypeError | ValueError):
                    raise exc.__cause__ from None
                stack.append((to_jsonable_python(item, fallback=_data_jsonable), parent, slot,
                              depth + 1))
    return root[0]


def _plain_json_key(key: Any) -> Any:
    if isinstance(key, str | int | float | bool) or key is None:
        return key
    return next(iter(orjson.loads(orjson.dumps({_plain_key(key): None},
                                               option=_ORJSON_OPTIONS))))


_KEY_TYPES = "str, int, float, bool, None, a datetime, a UUID, an Enum or a numpy or pandas scalar"


def _plain_keys(value: Any) -> Any:
    """``value`` with every dict key orjson cannot write replaced by its plain JSON form."""
    if isinstance(value, dict):
        return {_plain_key(key): _plain_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_keys(item) for item in value]
    return value


def _plain_key(key: Any) -> Any:
    if type(key) in (str, int, float, bool) or key is None:  # np.float64 is a float subclass
        return key
    try:
        return _data_jsonable(key)
    except TypeError:
        pass
    try:
        orjson.dumps({key: None}, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        raise TypeError(
            f"a dict key of type {type(key).__name__} ({key!r:.40}) cannot be a JSON object key; "
            f"use {_KEY_TYPES}"
        ) from None
    return key


def make_encoder(returns: Any) -> Encoder:
    if returns is inspect.Parameter.empty or returns is Any:
        return dumps
    if images.media_type(returns) is not None:
        return _image_encoder(returns)
    annotation = datatypes.response_type(returns)
    if annotation is None or annotation is type(None):
        return dumps
    data = datatypes.data_schema(annotation)
    if data is not None:
        return _data_encoder(data)
    adapter = TypeAdapter(annotation)

    def encode(value: Any) -> bytes:
        try:
            checked = adapter.validate_python(value, from_attributes=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ResultError(f"{where + ': ' if where else ''}{first['msg']}") from None
        try:
            return adapter.dump_json(checked, fallback=_data_jsonable)
        except PydanticSerializationError:
            # A loosely declared result (``-> dict``) holding values pydantic takes for others
            # it knows: pd.NaT passes for a datetime, then fails to serialize as one.
            return dumps(checked)

    return encode


def _image_encoder(annotation: Any) -> Encoder:
    """Bytes of the image the function returned; ResultError for anything else."""
    figure = images.is_figure_type(annotation)
    text = (images.media_type(annotation) or "").startswith("text/")

    def encode(value: Any) -> bytes:
        if figure and images.is_figure(value):
            return images.render_png(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if text and isinstance(value, str):
            return value.encode("utf-8")
        expected = "a matplotlib Figure" if figure else "bytes or str" if text else "bytes"
        raise ResultError(f"expected {expected}, got {type(value).__name__}")

    return encode


def encode_after(func: Callable[..., Any], encode: Encoder) -> Callable[..., bytes]:
    """``func`` then ``encode``, as one call: for a worker thread to run both, so that writing a
    large table or rendering a figure never holds the event loop."""

    @functools.wraps(func)
    def call_and_encode(*args: Any, **kwargs: Any) -> bytes:
        return encode(func(*args, **kwargs))

    return call_and_encode


def _data_encoder(data: datatypes.DataSchema) -> Encoder:
    """A declared DataFrame, Series or ndarray: checked and written without pydantic."""

    def encode(value: Any) -> bytes:
        try:
            return data.encode(value)
        except (TypeError, ValueError) as exc:
            raise ResultError(str(exc)) from None

    return encode
