"""Mount route specs on a FastAPI app.

Fourth stage of the pipeline: list of :class:`RouteSpec` -> ``FastAPI``. Each route's endpoint is a
small async function whose signature FastAPI reads, so validation, 422s and OpenAPI are FastAPI's
own; the endpoint calls the notebook function (awaited, or on the worker pool) and encodes the
result straight to JSON bytes.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from . import __version__, images, uploads
from .direct import DirectRoutes
from .docs import mount_docs
from .encoding import ResultError, encode_after, make_encoder
from .loader import LoadedNotebook, Progress, load_notebook
from .ops import Runtime
from .schema import RouteSpec, build_routes
from .settings import Settings

logger = logging.getLogger("nb2api")

_BODY = "nb2api_body"
_QUERY = "nb2api_query"


class ErrorBody(BaseModel):
    """What a route answers when the notebook code raised."""

    detail: str
    error_id: str


def create_app(
    notebook: str | Path | LoadedNotebook,
    *,
    progress: Progress | None = None,
    **settings: Any,
) -> FastAPI:
    """Load ``notebook`` (running its setup and api cells) and return its FastAPI app.

    ``settings`` are the fields of :class:`nb2api.Settings` (``debug``, ``max_workers``, ...).
    Raises :class:`nb2api.NotebookError` when the notebook cannot be served.
    """
    config = Settings().updated(**settings)
    loaded = notebook if isinstance(notebook, LoadedNotebook) else load_notebook(
        notebook, progress=progress
    )
    specs = build_routes(loaded)
    for message in loaded.warnings + [w for s in specs for w in s.warnings]:
        logger.warning(message)
    return build_app(loaded, specs, config)


def build_app(loaded: LoadedNotebook, specs: list[RouteSpec], settings: Settings) -> FastAPI:
    runtime = Runtime(loaded, specs, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            runtime.stop()

    nb = loaded.notebook
    app = FastAPI(
        title=nb.title or nb.name,
        description=f"Served by nb2api from the notebook `{nb.path.name}`.",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.notebook = loaded
    app.state.routes = specs
    app.state.pool = runtime.pool
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.ready = True
    if settings.root_path:
        # FastAPI(root_path=...) is deprecated in favour of the server's setting; this does the
        # same for servers that are not told (create_app under any ASGI server).
        app.add_middleware(_RootPath, root_path=settings.root_path)
    mount_docs(app)
    runtime.install(app)  # health, readiness, metrics, request logs, CORS, body limit
    notebook_routes: list[APIRoute] = []
    for spec in specs:
        options = runtime.route_options(spec)  # auth dependency, 401/413/503/504 answers
        app.add_api_route(
            spec.path,
            _endpoint(spec, runtime, settings),
            methods=[spec.method],
            name=spec.name,
            operation_id=spec.name,
            summary=spec.summary,
            description=spec.description or "",
            response_model=spec.response_model,
            response_class=images.response_class(spec.returns),
            responses={
                500: {"model": ErrorBody, "description": "The notebook code raised"},
                **images.openapi_responses(spec.returns),
                **options["responses"],
            },
            dependencies=options["dependencies"],
        )
        notebook_routes.append(app.router.routes[-1])
    runtime.routes_first(app)
    # The innermost middleware (inside CORS, limits and request logs): valid JSON requests to
    # the notebook's routes skip FastAPI's per-request handler.
    app.user_middleware.append(Middleware(DirectRoutes, fastapi_app=app, routes=notebook_routes))
    return app


class _RootPath:
    """Pure ASGI middleware: the prefix a proxy serves the app under, unless the server set one."""

    def __init__(self, app: Any, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            scope["root_path"] = self.root_path
        await self.app(scope, receive, send)


def _endpoint(spec: RouteSpec, runtime: Runtime, settings: Settings) -> Callable[..., Any]:
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
            await uploads.receive(tables, arguments)
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
            return _error_response(spec, exc, settings)
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
