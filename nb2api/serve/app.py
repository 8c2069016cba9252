"""Compose a FastAPI app from a loaded notebook's route specs.

Third stage of the pipeline: list of :class:`RouteSpec` -> ``FastAPI``. The app gets nb2api's own
endpoints (docs, health, metrics), one endpoint per route (:mod:`.endpoint`), and its middleware,
outermost first: request ids, metrics and logs (with the body limit), CORS, the fast path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from typing_extensions import Unpack

from .._version import __version__
from ..load import LoadedNotebook, Progress, load_notebook
from ..routes import RouteSpec, build_routes
from ..settings import Settings, SettingsKeywords
from ..types import answers, datatypes, images
from ..types.documents import document_answered_floats
from ..types.errors import body_error_responses, error_responses, exception_handlers
from . import health, tables
from .auth import TokenGate
from .docs import mount_docs
from .endpoint import make_endpoint
from .fastpath import DirectRoutes
from .limits import BodySizeLimit
from .middleware import RequestMiddleware, RootPath
from .runtime import Runtime

logger = logging.getLogger("nb2api")


def create_app(
    notebook: str | Path | LoadedNotebook,
    settings: Settings | None = None,
    *,
    progress: Progress | None = None,
    **changes: Unpack[SettingsKeywords],
) -> FastAPI:
    """Load ``notebook`` (running its setup and api cells) and return its FastAPI app.

    ``settings`` defaults to :class:`nb2api.Settings` read from the ``NB2API_*`` environment
    variables; keywords (``debug=True``, ``max_workers=4``, ...) change single fields of it.
    Raises :class:`nb2api.NotebookError` when the notebook cannot be served.
    """
    config = settings if settings is not None else Settings()
    if changes:
        config = config.updated(**changes)
    if isinstance(notebook, LoadedNotebook):
        loaded = notebook
        for message in loaded.warnings:
            logger.warning(message)
    else:  # warnings are logged as they arise, so also when a cell then fails
        loaded = load_notebook(notebook, progress=progress, warn=logger.warning)
    specs = build_routes(loaded)
    for message in [w for s in specs for w in s.warnings]:
        logger.warning(message)
    return build_app(loaded, specs, config)


def build_app(loaded: LoadedNotebook, specs: list[RouteSpec], settings: Settings) -> FastAPI:
    """The FastAPI app serving ``specs``; its lifespan starts and stops the runtime's pools."""
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
        exception_handlers=exception_handlers(),
    )
    app.state.notebook = loaded
    app.state.routes = specs
    app.state.runtime = runtime
    app.state.settings = settings
    if settings.root_path:
        # FastAPI(root_path=...) is deprecated in favour of the server's setting; this does the
        # same for servers that are not told (create_app under any ASGI server).
        app.add_middleware(RootPath, root_path=settings.root_path)
    mount_docs(app)
    token_check = runtime.auth.depends if runtime.auth is not None else None
    health.mount(app, list(runtime.pools.values()), runtime.metrics, token_check)
    _add_middleware(app, settings, runtime)
    notebook_routes: list[APIRoute] = []
    for spec in specs:
        app.add_api_route(
            spec.path,
            make_endpoint(spec, runtime, settings, loaded.notebook),
            methods=[spec.method],
            name=spec.name,
            operation_id=spec.name,
            summary=spec.summary,
            description=spec.description or "",
            response_model=spec.response_model,
            response_class=datatypes.response_class(spec.returns),
            responses={
                **error_responses(images.media_type(spec.returns)),
                **(body_error_responses(images.media_type(spec.returns))
                   if spec.body_model is not None else {}),
                **datatypes.openapi_responses(spec.returns),
                **answers.openapi_responses(spec.returns),  # Arrow and Parquet tables
                **runtime.responses(spec),
            },
            openapi_extra=tables.openapi_extra(spec),
            dependencies=[token_check] if token_check is not None else None,
        )
        notebook_routes.append(app.router.routes[-1])  # type: ignore[arg-type]
    document_answered_floats(app)  # NaN answered as null: float fields of models say so too
    if settings.fast_path:
        # The innermost middleware (inside CORS, limits and request logs): valid JSON requests
        # to the notebook's routes skip FastAPI's per-request handler.
        app.user_middleware.append(
            Middleware(DirectRoutes, fastapi_app=app, routes=notebook_routes, auth=runtime.auth)
        )
    return app


def _add_middleware(app: FastAPI, settings: Settings, runtime: Runtime) -> None:
    """Request ids, metrics and logs outermost, then CORS, then the body limit, then the token
    (inside CORS, so that a browser sees the 401 with its CORS headers)."""
    if runtime.auth is not None:
        app.add_middleware(TokenGate, auth=runtime.auth, fastapi_app=app)
    if settings.max_body_size and settings.cors_origins:
        # Inside CORS, so that a browser sees the 413 with its CORS headers.
        app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_size)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(
        RequestMiddleware, metrics=runtime.metrics, log=settings.access_log,
        max_body_size=0 if settings.cors_origins else settings.max_body_size,
    )

