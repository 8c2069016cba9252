"""Turn a route function's return value into JSON bytes.

One encoder per route, built at load from the return annotation: a declared type is validated and
dumped by pydantic (in Rust); an undeclared one goes through orjson, which handles numpy natively.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from . import datatypes

Encoder = Callable[[Any], bytes]

_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class ResultError(Exception):
    """The function returned something that does not fit its return annotation."""


def _fallback(value: Any) -> Any:
    return to_jsonable_python(value)


def dumps(value: Any) -> bytes:
    """JSON bytes for any value: orjson first, pydantic's encoder for what orjson lacks."""
    return orjson.dumps(value, default=_fallback, option=_ORJSON_OPTIONS)


def make_encoder(returns: Any) -> Encoder:
    if returns is inspect.Parameter.empty or returns is Any:
        return dumps
    annotation = datatypes.response_type(returns)
    if annotation is None or annotation is type(None):
        return dumps
    adapter = TypeAdapter(annotation)

    def encode(value: Any) -> bytes:
        try:
            checked = adapter.validate_python(value, from_attributes=True)
        except Exception as exc:
            raise ResultError(str(exc)) from None
        return adapter.dump_json(checked)

    return encode
