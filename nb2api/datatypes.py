"""Which Python annotations a route accepts, and how each becomes a pydantic type.

``schema`` asks this module, per parameter and per return annotation, for the type pydantic should
validate against; data-science types (DataFrame, ndarray, ...) plug in here.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import types
import typing
import uuid
from typing import Annotated, Any, Literal

ADVICE = (
    "use a type pydantic can validate: a builtin (int, str, list[float], ...), a pydantic "
    "BaseModel, a dataclass or a TypedDict"
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
    return annotation


def response_type(annotation: Any) -> Any:
    """The type that documents a response, or None when the media type says it all."""
    return annotation


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


def _is_scalar_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_scalar_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_scalar_list(args[0])
    return origin in _SEQUENCES and all(
        is_scalar(a) for a in typing.get_args(annotation) if a is not Ellipsis
    )


def check_scalar_param(param, method: str, fail) -> None:
    """Path and query parameters arrive as text: only scalars (and lists, in a query) fit."""
    annotation = param.annotation
    if is_scalar(annotation) or (param.source == "query" and _is_scalar_list(annotation)):
        return
    from .schema import type_name

    where = "the path" if param.source == "path" else f"the query string of a {method} route"
    from .errors import AnnotationError

    raise fail(
        AnnotationError,
        f"parameter '{param.name}: {type_name(annotation)}' comes from {where}, which holds only "
        "plain values (str, int, float, bool, date, UUID, Enum, Literal"
        + (", or a list of them" if param.source == "query" else "")
        + "); use a POST route to take it in a JSON body",
        param.name,
    )
