"""One notebook function as one FastAPI endpoint.

The endpoint is a small async function whose signature FastAPI reads (path parameters, a query
model, a body model, upload and form fields), so validation, 422s and OpenAPI are FastAPI's own.
It calls the notebook function through the runtime (awaited, or on its pool within its limits)
and encodes the result straight to bytes with :mod:`nb2api.types`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import traceback
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..routes import RouteSpec
from ..settings import Settings
from ..types import images, uploads
from ..types.encoding import ResultError, encode_after, make_encoder
from .faults import CallFailed
from .runtime import Runtime

logger = logging.getLogger("nb2api")

_BODY = "nb2api_body"
_QUERY = "nb2api_query"


class ErrorBody(BaseModel):
    """What a route answers when the notebook code raised."""

    detail: str
    error_id: str


def make_endpoint(spec: RouteSpec, runtime: Runtime, settings: Settings) -> Callable[..., Any]:
    """An async endpoint for ``spec`` with a signature FastAPI can read."""
    encode = make_encoder(spec.returns)
    if not spec.is_async and spec.options.executor == "thread":
        # Encode on the worker thread too: a big table or a figure never holds the event loop.
        spec = dataclasses.replace(spec, func=encode_after(spec.func, encode))
        encode = _encoded
    run = runtime.call(spec)  # on its pool, within its concurrency limit, queue and timeout
    positional = [p.name for p in spec.params if p.positional_only]
    body_names = [p.name for p in spec.params if p.source == "body"]
    query_names = [p.name for p in spec.params if p.source == "query"]
    body_model = spec.body_model
    body_optional = body_model is not None and all(not p.required for p in spec.params
                                                   if p.source == "body")
    media_type = images.media_type(spec.returns) or "application/json"
    tables = uploads.frame_params(spec)  # uploaded CSV/Parquet files read into DataFrames

    async def call(arguments: dict[str, Any]) -> Any:
        args = tuple(arguments.pop(name) for name in positional)
        return await run(args, arguments)

    async def endpoint(**kwargs: Any) -> Response:
        body = kwargs.pop(_BODY, None)
        query = kwargs.pop(_QUERY, None)
        if body is None and body_model is not None:
            body = body_model()
        arguments = kwargs
        for source, names in ((body, body_names), (query, query_names)):
            for name in names:
                arguments[name] = getattr(source, name)
        if tables:
            await uploads.receive(tables, arguments, settings.max_upload_rows)
        try:
            result = await call(arguments)
            content = encode(result)
        except HTTPException:
            raise
        except ResultError as exc:
            return _error_response(spec, exc, settings, "returned a value that does not match "
                                   "its return annotation")
        except Exception as exc:
            runtime.failed(spec, exc)
            what = exc.what if isinstance(exc, CallFailed) else None
            return _error_response(spec, exc, settings, what)
        return Response(content, media_type=media_type)

    endpoint.__name__ = spec.name
    parameters = _endpoint_parameters(spec, body_optional)
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint


def _encoded(content: bytes) -> bytes:
    return content


def _endpoint_parameters(spec: RouteSpec, body_optional: bool) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(
            p.name, kw, annotation=Annotated[p.annotation, PathParam(description=p.description)]
        )
        for p in spec.params
        if p.source == "path"
    ]
    if spec.query_model is not None:
        query = Annotated[spec.query_model, Query()]
        params.append(inspect.Parameter(_QUERY, kw, annotation=query))
    if spec.body_model is not None:
        body = Annotated[spec.body_model, Body()]
        default = None if body_optional else inspect.Parameter.empty
        params.append(inspect.Parameter(_BODY, kw, annotation=body, default=default))
    params.extend(uploads.endpoint_parameters(spec))  # multipart: files and form fields
    return params


def _error_response(
    spec: RouteSpec, exc: Exception, settings: Settings, what: str | None = None
) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    ename = type(exc).__name__
    message = f"{spec.name}() {what}" if what else f"{spec.name}() raised {ename}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{message}: {text}" if text else message
    if len(detail) > 300:
        detail = detail[:297] + "..."
    logger.error(
        "%s [error_id=%s]",
        detail,
        error_id,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"error_id": error_id, "route": spec.name},
    )
    body: dict[str, Any] = {"detail": detail, "error_id": error_id}
    if settings.debug:
        body["traceback"] = traceback.format_exception(exc)
    return JSONResponse(body, status_code=500)
