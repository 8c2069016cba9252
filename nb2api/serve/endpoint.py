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
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from ..load import ParsedNotebook, missing_name_hint
from ..routes import RouteSpec
from ..settings import Settings
from ..types import datatypes, images, uploads
from ..types.encoding import Encoder, encode_after, make_encoder
from ..types.errors import respond
from .runtime import Runtime
from .streaming import Streamer
from .tables import answer_format, body_validators
from .tables import encoder as table_encoder

logger = logging.getLogger("nb2api")

_BODY = "nb2api_body"
_QUERY = "nb2api_query"


def make_endpoint(spec: RouteSpec, runtime: Runtime, settings: Settings,
                  notebook: ParsedNotebook | None = None) -> Callable[..., Any]:
    """An async endpoint for ``spec`` with a signature FastAPI can read. With ``notebook``, a
    NameError of the function says which unmarked cell defines the name, as a load does."""
    stream = Streamer(spec, runtime.pool, settings) if spec.streams else None
    encode: Encoder | None = table_encoder(spec, make_encoder(spec.returns))  # JSON, Arrow...
    tracing = runtime.tracing  # spans around the call, its wait and the encoding (when on)
    if tracing is not None:
        spec, encode = tracing.wrap(spec, encode)
    if not spec.is_async and spec.options.executor == "thread":
        # Encode on the worker thread too: a big table or a figure never holds the event loop.
        spec = dataclasses.replace(spec, func=encode_after(spec.func, encode))
        encode = None  # the call gives bytes
    run = runtime.call(spec)  # on its pool, within its concurrency limit, queue and timeout
    batched = runtime.batchers.get(spec.name)  # '#| batch': merged with other requests
    if tracing is not None:
        run = tracing.wrap_call(spec, run, settings)
    reported = runtime.reporter(spec)
    run_job = runtime.job_call(spec)
    if tracing is not None:  # a job's wait for a worker, under its job span
        run_job = tracing.wrap_call(spec, run_job, settings)
    positional = [p.name for p in spec.params if p.positional_only]
    body_names = [p.name for p in spec.params if p.source == "body"]
    query_names = [p.name for p in spec.params if p.source == "query" and p.marker is None]
    body_model = spec.body_model
    body_optional = body_model is not None and all(not p.required for p in spec.params
                                                   if p.source == "body")
    media_type = images.media_type(spec.returns) or "application/json"
    tables = uploads.frame_params(spec)  # uploaded CSV/Parquet files read into DataFrames
    choose_format = answer_format(spec)  # what Accept asks a table to be answered as

    def failed(exc: Exception) -> None:
        """Heard before the 500 is made: count it, and name the unmarked cell behind a
        NameError (only then, so a request pays nothing for the hint)."""
        if notebook is not None and isinstance(exc, NameError):
            _explain(exc, missing_name_hint(notebook, spec.function.cell, exc))
        runtime.failed(spec, exc)

    async def answer(args: tuple, kwargs: dict) -> Response:
        """A job's result: what the synchronous request answers."""
        if stream is not None:
            return await stream.collect(args, kwargs)
        return await respond(spec.name, run_job(args, kwargs), encode, media_type=media_type,
                             debug=settings.debug, logger=logger, failed=failed,
                             reported=reported)

    jobs = runtime.jobs
    jobs.register(spec, answer)

    async def endpoint(**kwargs: Any) -> Response:
        if tracing is not None:
            tracing.validated()
        choose_format()
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
        if batched is not None:
            return await batched.answer(arguments, failed, reported)
        args = tuple(arguments.pop(name) for name in positional) if positional else ()
        if jobs.wanted(spec):
            return await jobs.submit(spec, args, arguments)
        if stream is not None:
            return stream.respond(args, arguments)
        return await respond(spec.name, run(args, arguments), encode, media_type=media_type,
                             debug=settings.debug, logger=logger, failed=failed,
                             reported=reported)

    endpoint.__name__ = spec.name
    if tracing is not None:
        tracing.endpoints.add(id(endpoint))
    parameters = _endpoint_parameters(spec, body_optional, body_validators(spec, settings))
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint


def _explain(exc: NameError, hint: str) -> None:
    """Add ``hint`` to the error's message, which the 500's detail and the log both quote."""
    if hint and exc.args and isinstance(exc.args[0], str) and hint not in exc.args[0]:
        exc.args = (exc.args[0] + hint, *exc.args[1:])


def _endpoint_parameters(spec: RouteSpec, body_optional: bool,
                         body_validators: tuple[Any, ...] = ()) -> list[inspect.Parameter]:
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
        body = Annotated[(spec.body_model, *body_validators, Body())]
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
