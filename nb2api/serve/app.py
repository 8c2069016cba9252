"""Compose a FastAPI app from a loaded notebook's route specs.

Third stage of the pipeline: list of :class:`RouteSpec` -> ``FastAPI``. The app gets nb2api's own
endpoints (docs, health, metrics), one endpoint per route (:mod:`.endpoint`), and its middleware,
outermost first: request ids, metrics and logs (with the body limit), CORS, the fast path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from typing_extensions import Unpack

from .._version import __version__
from ..load import LoadedNotebook, Progress, load_notebook, notebook_version
from ..routes import RouteSpec, build_routes
from ..settings import Settings, SettingsKeywords
from ..types import answers, datatypes, images
from ..types.documents import document_answered_floats
from ..types.errors import body_error_responses, error_responses, exception_handlers
from . import health, tables
from .auth import TokenGate
from .docs import mount_docs
from .endpoint import make_endpoint
from .examples import Answered, answer_at_load, document_examples, route_examples
from .fastpath import DirectRoutes
from .jobs import api as jobs_api
from .limits import BodySizeLimit
from .middleware import RequestMiddleware, RootPath
from .multi import Notebooks, Several, is_several
from .runtime import Runtime
from .telemetry import fastapi_options, tracing_for

logger = logging.getLogger("nb2api")


def create_app(
    notebook: str | Path | LoadedNotebook | Several,
    settings: Settings | None = None,
    *,
    progress: Progress | None = None,
    **changes: Unpack[SettingsKeywords],
) -> FastAPI:
    """Load ``notebook`` (running its setup and api cells) and return its FastAPI app.

    ``settings`` defaults to [`nb2api.Settings`][nb2api.Settings] read from the ``NB2API_*``
    environment variables; keywords (``debug=True``, ``max_workers=4``, ...) change single fields
    of it. Raises [`nb2api.NotebookError`][nb2api.NotebookError] when the notebook cannot be
    served.

    Several notebooks (a folder, a list of paths, or ``{"prefix": path}``) make one app that
    serves each under ``/<prefix>`` (`nb2api.serve.multi`).
    """
    config = settings if settings is not None else Settings()
    if changes:
        config = config.updated(**changes)
    if is_several(notebook):
        return Notebooks.build(notebook, config, _loader(progress))  # type: ignore[arg-type]
    if isinstance(notebook, LoadedNotebook):
        loaded = notebook
        for message in loaded.warnings:
            logger.warning(message)
    else:  # warnings are logged as they arise, so also when a cell then fails
        tracing = tracing_for(config, Path(notebook).stem)  # the start-up span, when on
        with tracing.startup(notebook, progress) if tracing else nullcontext(progress) as watch:
            loaded = load_notebook(notebook, progress=watch, warn=logger.warning)
    specs = build_routes(loaded)
    for message in [w for s in specs for w in s.warnings]:
        logger.warning(message)
    if loaded.notebook.max_workers is not None:  # '#| max-workers: N' wins over the setting
        config = config.updated(max_workers=loaded.notebook.max_workers)
    return build_app(loaded, specs, config)


def _loader(progress: Progress | None):
    """How :class:`.multi.Notebooks` loads one notebook: ``create_app`` with its settings."""

    def load(path: Path, settings: Settings) -> FastAPI:
        return create_app(path, settings, progress=progress)

    return load


def build_app(loaded: LoadedNotebook, specs: list[RouteSpec], settings: Settings) -> FastAPI:
    """The FastAPI app serving ``specs``; its lifespan starts and stops the runtime's pools."""
    examples = route_examples(loaded, specs)  # an example that does not fit: ExampleError
    runtime = Runtime(loaded, specs, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            runtime.stop()

    nb = loaded.notebook
    version = notebook_version(nb)
    app = FastAPI(
        title=nb.title or nb.name,
        description=f"Served by nb2api from the notebook `{nb.path.name}`, version `{version}` "
        "(each response's `X-Notebook-Version`).",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        **fastapi_options(runtime.tracing),
    )
    app.state.notebook = loaded
    app.state.routes = specs
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.version = version
    if settings.root_path:
        # FastAPI(root_path=...) is deprecated in favour of the server's setting; this does the
        # same for servers that are not told (create_app under any ASGI server).
        app.add_middleware(RootPath, root_path=settings.root_path)
    mount_docs(app)
    token_check = runtime.auth.depends if runtime.auth is not None else None
    health.mount(app, list(runtime.pools.values()), runtime.metrics, token_check)
    jobs_api.mount(app, runtime.jobs, token_check)
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
    answered = answer_at_load(examples, settings.examples_budget) if settings.examples else None
    document_examples(app, examples, answered or Answered())
    app.state.examples = examples
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
            expose_headers=["X-Request-ID", "Retry-After", "Location", "Preference-Applied"],
            max_age=600,
        )
    app.add_middleware(
        RequestMiddleware, metrics=runtime.metrics, log=settings.access_log,
        max_body_size=0 if settings.cors_origins else settings.max_body_size,
        version=app.state.version,
    )
    if runtime.tracing is not None:  # outermost: the request's log line carries its trace id
        app.add_middleware(runtime.tracing.middleware, tracing=runtime.tracing)

