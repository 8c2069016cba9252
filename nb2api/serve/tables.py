"""Tables as Arrow and Parquet on a route: the request body that is one, and the answer's format.

A route whose body takes one DataFrame parameter also takes a whole body that is an Arrow IPC
stream or a Parquet file (its ``Content-Type`` says which): FastAPI hands a body that is not JSON
to the body model as bytes, and the validator added here reads them into that parameter, bounded
as an upload is (``max_upload_rows``). A route that answers tables reads ``Accept`` on entry
(:func:`.answers.choose`) and its encoder writes the format chosen. Both ways read the request's
headers from :mod:`.context`, so the fast path and FastAPI's handler behave alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BeforeValidator

from ..routes import ParamSpec, RouteSpec
from ..settings import Settings
from ..types import answers, columnar, datatypes, uploads
from ..types.encoding import Encoder
from .context import request_headers

_BINARY = {"schema": {"type": "string", "format": "binary"}}


def table_param(spec: RouteSpec) -> ParamSpec | None:
    """The route's one DataFrame body parameter, which a whole Arrow or Parquet body fills."""
    found = []
    for p in spec.params:
        if p.source != "body":
            continue
        annotation, _ = uploads.unwrap_optional(p.annotation)
        if isinstance(datatypes.data_schema(datatypes.request_type(annotation)),
                      datatypes.FrameSchema):
            found.append(p)
    return found[0] if len(found) == 1 else None


def body_validators(spec: RouteSpec, settings: Settings) -> tuple[Any, ...]:
    """Metadata for the body model's annotation: a validator that reads a whole Arrow or Parquet
    body into the table parameter (none on a route without exactly one)."""
    param = table_param(spec)
    if param is None:
        return ()

    def read(value: Any) -> Any:
        if not isinstance(value, bytes | bytearray):
            return value  # JSON, already read
        media_type = columnar.body_media_type(request_headers().get("content-type"))
        if media_type is None:
            return value  # not a table: refused by the model, as before
        frame = uploads.read_body(param, bytes(value), media_type, settings.max_upload_rows)
        return {param.name: frame}

    return (BeforeValidator(read),)


def openapi_extra(spec: RouteSpec) -> dict[str, Any] | None:
    """The Arrow and Parquet request bodies of a route with one table parameter."""
    if table_param(spec) is None or not columnar.available():
        return None
    return {"requestBody": {"content": {columnar.ARROW: _BINARY, columnar.PARQUET: _BINARY}}}


def encoder(spec: RouteSpec, encode: Encoder) -> Encoder:
    """The route's encoder, which writes Arrow or Parquet when the request asked for them."""
    return answers.negotiable(encode, spec.returns) if answers.answers_tables(spec.returns) \
        else encode


def answer_format(spec: RouteSpec) -> Callable[[], None]:
    """Called first on each request: on a route that answers tables, the format its ``Accept``
    asks for becomes the one the encoder writes (or a 406 is raised)."""
    if not answers.answers_tables(spec.returns):
        return _nothing

    strict = answers.declares_table(spec.returns)  # else any result, shown as Jupyter would

    def choose() -> None:
        # Set, never reset: each request runs in its own context, and sets it on entry.
        answers.answer_as.set(answers.choose(request_headers().get("accept"), strict))

    return choose


def _nothing() -> None:
    return None
