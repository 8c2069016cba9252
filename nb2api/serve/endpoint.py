"""One notebook function as one FastAPI endpoint.

The endpoint is a small async function whose signature FastAPI reads (path parameters, a query
model, a body model, upload and form fields), so validation, 422s and OpenAPI are FastAPI's own.
It calls the notebook function through the runtime (awaited, or on its pool within its limits)
and encodes the result straight to bytes with :mod:`nb2api.types`.
"""

from __future__ import annotations

import copy
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
from ..types import datatypes, display, images, uploads
from ..types.encoding import NotJSONError, ResultError, dumps, encode_after, make_encoder
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
    query_names = [p.name for p in spec.params if p.source == "query" and p.marker is None]
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
            await uploads.receive(tables, arguments)
        try:
            result = await call(arguments)
            content = encode(result)
        except HTTPException:
            raise
        except ResultError as exc:
            return _error_response(spec, exc, settings, "returned a value that does not match "
                                   "its return annotation")
        except NotJSONError as exc:  # only now: the JSON path pays nothing for these checks
            shown = display.response(exc.result, dumps) if exc.whole else None
            if shown is not None:
                return shown  # a Response passed through, or the result as Jupyter shows it
            runtime.failed(spec, exc)
            return _not_shown(spec, exc, settings)
        except Exception as exc:
            runtime.failed(spec, exc)
            return _error_response(spec, exc, settings)
        return Response(content, media_type=media_type)

    endpoint.__name__ = spec.name
    parameters = _endpoint_parameters(spec, body_optional)
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint


def _encoded(content: bytes) -> bytes:
    return content


def _not_shown(spec: RouteSpec, exc: NotJSONError, settings: Settings) -> JSONResponse:
    """The 500 for a result neither JSON nor the display protocol covers: the type, the fix."""
    kind = type(exc.value).__name__
    if images.is_figure(exc.value):
        what, fix = f"returned a {kind} inside a {type(exc.result).__name__}", str(exc)
    elif exc.whole:
        what = f"returned a value of type {kind}, which is not JSON and has no display method"
        fix = (
            "return JSON data (a dict, list, pydantic model, dataclass, DataFrame) or a "
            f"fastapi.Response, or give {kind} a display method (_repr_json_, _repr_html_, ...)"
        )
    else:
        container = type(exc.result).__name__
        what = f"returned a {container} holding a value of type {kind}, which is not JSON"
        fix = "turn it into JSON data (a dict, a list, a str) before returning it"
    return _error_response(spec, ResultError(fix), settings, what)


def _endpoint_parameters(spec: RouteSpec, body_optional: bool) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(
            p.name, kw, annotation=Annotated[p.annotation, PathParam(description=p.description)]
        )
        for p in spec.params
        if p.source == "path" and p.marker is None
    ]
    params.extend(_marked_parameters(spec))
    if spec.query_model is not None:
        query = Annotated[spec.query_model, Query()]
        params.append(inspect.Parameter(_QUERY, kw, annotation=query))
    if spec.body_model is not None:
        body = Annotated[spec.body_model, Body()]
        default = None if body_optional else inspect.Parameter.empty
        params.append(inspect.Parameter(_BODY, kw, annotation=body, default=default))
    unmarked = dataclasses.replace(spec, params=tuple(p for p in spec.params if p.marker is None))
    params.extend(uploads.endpoint_parameters(unmarked))  # multipart: files and form fields
    return params


def _marked_parameters(spec: RouteSpec) -> list[inspect.Parameter]:
    """Parameters the notebook marked ``Header()``, ``Cookie()``, ``Query()``, ``Path()`` or
    ``Form()``: handed to FastAPI with their own marker, which means what it means there."""
    result = []
    for p in spec.params:
        if p.marker is None:
            continue
        marker = p.marker
        if p.description and marker.description is None:
            marker = copy.copy(marker)
            marker.description = p.description
            # FastAPI rebuilds the marker from the attributes set on it.
            marker._attributes_set = {**marker._attributes_set, "description": p.description}
        annotation = Annotated[datatypes.request_type(p.annotation), marker]
        default = inspect.Parameter.empty if p.required else p.default
        result.append(inspect.Parameter(
            p.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
        ))
    return result


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
