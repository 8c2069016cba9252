"""One notebook function as one FastAPI endpoint.

The endpoint is a small async function whose signature FastAPI reads (path parameters, a query
model, a body model, upload and form fields), so validation, 422s and OpenAPI are FastAPI's own.
It calls the notebook function through the runtime (awaited, or on its pool within its limits)
and encodes the result straight to bytes with :mod:`nb2api.types`, whose ``respond`` also turns
a failure into the 500 (the same code an exported app runs).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from ..routes import RouteSpec
from ..settings import Settings
from ..types import images, uploads
from ..types.encoding import Encoder, encode_after, make_encoder
from ..types.errors import respond
from .runtime import Runtime

logger = logging.getLogger("nb2api")

_BODY = "nb2api_body"
_QUERY = "nb2api_query"


def make_endpoint(spec: RouteSpec, runtime: Runtime, settings: Settings) -> Callable[..., Any]:
    """An async endpoint for ``spec`` with a signature FastAPI can read."""
    encode: Encoder | None = make_encoder(spec.returns)
    if not spec.is_async and spec.options.executor == "thread":
        # Encode on the worker thread too: a big table or a figure never holds the event loop.
        spec = dataclasses.replace(spec, func=encode_after(spec.func, encode))
        encode = None  # the call gives bytes
    run = runtime.call(spec)  # on its pool, within its concurrency limit, queue and timeout
    positional = [p.name for p in spec.params if p.positional_only]
    body_names = [p.name for p in spec.params if p.source == "body"]
    query_names = [p.name for p in spec.params if p.source == "query"]
    body_model = spec.body_model
    body_optional = body_model is not None and all(not p.required for p in spec.params
                                                   if p.source == "body")
    media_type = images.media_type(spec.returns) or "application/json"
    tables = uploads.frame_params(spec)  # uploaded CSV/Parquet files read into DataFrames
    failed = functools.partial(runtime.failed, spec)

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
        return await respond(spec.name, call(arguments), encode, media_type=media_type,
                             debug=settings.debug, logger=logger, failed=failed)

    endpoint.__name__ = spec.name
    parameters = _endpoint_parameters(spec, body_optional)
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint


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

