"""A table result as JSON, Arrow or Parquet, as the request's ``Accept`` header asks.

A route that returns a DataFrame, a Series or an ndarray (declared, or found in an undeclared
result) answers JSON by default, and an Arrow IPC stream or a Parquet file when ``Accept``
prefers one (:mod:`.columnar`). The endpoint picks the media type before the call
(:func:`choose`, a 406 when ``Accept`` takes none it can give) and sets :data:`answer_as`; the
route's encoder, wrapped by :func:`negotiable`, reads it where it runs (a worker thread copies the
request's context), so the table is written once, in the chosen format.
"""

from __future__ import annotations

import inspect
from contextvars import ContextVar
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response

from . import columnar, datatypes
from ._lazy import LazyModule, loaded
from .columnar import ARROW, JSON, PARQUET
from .encoding import Encoder

frames = LazyModule(".frames", __package__)  # imports pandas and numpy
pd = LazyModule("pandas")
np = LazyModule("numpy")

_EVERY = (JSON, ARROW, PARQUET)

# What the request being answered asked a table to be: (media type, whether JSON would do too);
# None: JSON, as ever.
answer_as: ContextVar[tuple[str, bool] | None] = ContextVar("nb2api_answer_as", default=None)


def declares_table(returns: Any) -> bool:
    """Whether the return annotation is a DataFrame, a Series or an ndarray."""
    return _declared(returns) is not None


def answers_tables(returns: Any) -> bool:
    """Whether a route with this return annotation may answer a table: no annotation, or a
    DataFrame, Series or ndarray."""
    return returns is inspect.Parameter.empty or returns is Any or _declared(returns) is not None


def _declared(returns: Any) -> datatypes.DataSchema | None:
    annotation = datatypes.response_type(returns)
    schema = datatypes.data_schema(annotation) if annotation is not None else None
    if isinstance(schema, datatypes.FrameSchema | datatypes.SeriesSchema | datatypes.ArraySchema):
        return schema
    return None


def choose(accept: str | None, strict: bool = True) -> tuple[str, bool] | None:
    """The media type to answer a table with, and whether JSON is acceptable too. ``strict``
    (a route declared to return a table): a 406 when ``Accept`` takes none of JSON, Arrow and
    Parquet (or only those, without pyarrow). Otherwise (an undeclared result, which may be
    anything Jupyter displays), None unless ``Accept`` prefers Arrow or Parquet."""
    if not accept:
        return None
    wanted = columnar.negotiate(accept, _EVERY)
    json_ok = columnar.negotiate(accept, (JSON,)) is not None
    if wanted in (ARROW, PARQUET) and not columnar.available():
        wanted = JSON if json_ok else None
        if wanted is None:
            raise HTTPException(406, f"{columnar.NEEDS_EXTRA}, or accept {JSON}")
    if wanted is None and strict:
        raise HTTPException(406, f"this route answers {', '.join(_offered())}; the Accept "
                                 "header takes none of them")
    if wanted is None or (wanted == JSON and not strict):
        return None
    return wanted, json_ok


def answer_for(headers: Any, strict: bool) -> None:
    """Called first by an exported endpoint of a route that answers tables: the format its
    request's ``Accept`` asks for (``headers``) becomes the one :func:`negotiable` writes, as
    under ``nb2api serve`` (a 406 when none will do)."""
    answer_as.set(choose(headers.get("accept"), strict))


def _offered() -> tuple[str, ...]:
    return _EVERY if columnar.available() else (JSON,)


def negotiable(encode: Encoder, returns: Any) -> Encoder:
    """``encode``, or Arrow or Parquet bytes when the request asked for them (:data:`answer_as`):
    then the result is a ``Response`` with that media type."""
    declared = _declared(returns)

    def answer(value: Any) -> Any:
        chosen = answer_as.get()
        if chosen is None or chosen[0] == JSON:
            return encode(value)
        media_type, json_ok = chosen
        if declared is not None or columnar.is_table(value):
            table = _table(value, declared)
            if table is None:
                return encode(value)  # not what the annotation says: its ResultError
            try:
                content = columnar.write(table, media_type)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
                # Columns Arrow has no type for (objects of mixed types, say): JSON if it will
                # do, else this representation is not available (406).
                if json_ok:
                    return Response(encode(value), media_type=JSON, headers={"Vary": "Accept"})
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise HTTPException(406, f"the result cannot be written as {media_type} "
                                         f"({text:.200}); accept {JSON}") from None
            return Response(content, media_type=media_type, headers={"Vary": "Accept"})
        if json_ok:  # an undeclared result that is no table
            return Response(encode(value), media_type=JSON, headers={"Vary": "Accept"})
        raise HTTPException(406, f"the result is a {type(value).__name__}, which is answered as "
                                 f"{JSON} only")

    return answer


def _table(value: Any, declared: datatypes.DataSchema | None) -> Any:
    """``value`` ready to be written as a table, or None when it does not fit ``declared``."""
    frame_type = loaded("pandas", "DataFrame")
    if isinstance(declared, datatypes.FrameSchema) or (
            declared is None and frame_type is not None and isinstance(value, frame_type)):
        try:
            columns = declared.declared(value) if declared is not None else None
        except (TypeError, ValueError):
            return None
        return frames.shown_table(value, columns)
    if isinstance(declared, datatypes.SeriesSchema) and not isinstance(value, pd.Series):
        return None
    if isinstance(declared, datatypes.ArraySchema) and not isinstance(value, np.ndarray):
        return None
    return value


def openapi_responses(returns: Any) -> dict[int | str, dict[str, Any]]:
    """The Arrow and Parquet answers of a route declared to return a table, for its OpenAPI
    ``responses`` (none without pyarrow: those would only be 406s)."""
    if _declared(returns) is None or not columnar.available():
        return {}
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {"content": {ARROW: binary, PARQUET: binary},
              "description": "The table: JSON records by default, an Arrow IPC stream or a "
                             "Parquet file when Accept asks for one"},
        406: {"description": "The Accept header takes none of JSON, Arrow and Parquet"},
    }
