"""Operations built into every app: health, readiness, metrics, request ids and request logs.

The request middleware is plain ASGI (no ``BaseHTTPMiddleware``, which costs a task and a stream
per request): it takes the request id from ``X-Request-ID`` or makes one, echoes it, counts and
times the request for Prometheus, and writes one log line when the response is done.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from random import getrandbits as _getrandbits
from time import perf_counter, time
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import require_token
from .executor import WorkerPool
from .limits import BodySizeLimit, Call, openapi_responses, route_call
from .loader import LoadedNotebook
from .logs import access_json_handler, access_logger, log_request, request_id, timestamp
from .metrics import CONTENT_TYPE, Metrics
from .processes import ProcessPool
from .schema import RouteSpec
from .settings import Settings

WEDGED_AFTER = 60.0  # seconds with every worker busy and no call returning: not ready
OPS_PATHS = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: logged at debug level

# What a client may send as a request id: short, printable, no spaces (it goes into log lines).
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,128}$").match


class RequestMiddleware:
    """Request id in and out, Prometheus count and latency, one log line per request.

    With ``max_body_size`` it also answers 413 to a request body over that many bytes (what
    :class:`BodySizeLimit` does, without a second middleware layer per request).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, log: bool = True,
                 max_body_size: int = 0) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log
        self.max_body_size = max_body_size
        self.limited = BodySizeLimit(app, max_body_size) if max_body_size else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        rid = None
        app = self.app
        limited = self.limited
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if rid is None and _REQUEST_ID(value):
                    rid = value.decode()
            elif name == b"content-length" and limited is not None:
                if value.isdigit() and int(value) > self.max_body_size:
                    app = limited  # answers 413
                limited = None  # a declared length the server enforces: no need to count
        if limited is not None:
            app = limited  # a chunked body: counted as it arrives
        if rid is None:
            # An id, not a secret: no getrandom system call per request (os.urandom). Python
            # reseeds ``random`` in a forked worker, so workers do not repeat each other.
            rid = f"{_getrandbits(64):016x}"
        token = _set_request_id(rid)
        header = (b"x-request-id", rid.encode())
        status = 500  # what the client gets if the app raises before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.request_started()
        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            if metrics is not None:
                metrics.request_finished(template, scope["method"], status, seconds)
            if self.log:
                _log(scope, template, status, seconds, rid)
            _reset_request_id(token)


_set_request_id = request_id.set
_reset_request_id = request_id.reset
_LEVEL_TEXT = {logging.DEBUG: "debug", logging.INFO: "info"}


def _log(scope: Scope, template: str, status: int, seconds: float, rid: str) -> None:
    path = scope["path"]
    level = logging.DEBUG if path in OPS_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    client = scope.get("client")
    ms = round(seconds * 1000, 3)
    method = scope["method"]
    message = f"{method} {path} {status} {ms:.1f} ms"
    fields = {
        "method": method,
        "path": path,
        "route": template,
        "status": status,
        "duration_ms": ms,
        "client": client[0] if client else None,
    }
    handler = access_json_handler(level)
    if handler is None:
        log_request(level, message, fields)
        return
    # nb2api's own JSON setup: the line JSONFormatter would make, made here in one go.
    handler.write_line(orjson.dumps({
        "time": timestamp(time()),
        "level": _LEVEL_TEXT[level],
        "logger": "nb2api.access",
        "message": message,
        "request_id": rid,
        **fields,
    }).decode() + "\n")


class Runtime:
    """What an app runs notebook code with: its pools, metrics and auth, and their lifetime."""

    def __init__(self, loaded: LoadedNotebook, specs: list[RouteSpec], settings: Settings):
        self.settings = settings
        self.pool = WorkerPool(settings.max_workers)
        in_processes = {
            s.name: s.func for s in specs if s.options.executor == "process" and not s.is_async
        }
        self.processes = ProcessPool(in_processes, settings.processes) if in_processes else None
        self.pools: dict[str, WorkerPool] = {"thread": self.pool}
        if self.processes is not None:
            self.pools["process"] = self.processes
        self.metrics = Metrics() if settings.metrics else None
        if self.metrics is not None:
            self.metrics.load_seconds.set(loaded.load_seconds)
            for pool in self.pools.values():
                self.metrics.watch_pool(pool)
        self.auth = require_token(settings.token) if settings.token else None

    def start(self) -> None:
        """Fork the process pool (after setup, before the first request)."""
        if self.processes is not None:
            self.processes.start()

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()
        if self.metrics is not None:
            self.metrics.close()

    def install(self, app: FastAPI) -> None:
        install(app, self.settings, self.metrics, list(self.pools.values()), self.auth)
        self._own_routes = list(app.router.routes)  # docs, health, metrics

    def routes_first(self, app: FastAPI) -> None:
        """Once the notebook's routes are mounted: try its fixed paths first (faster)."""
        routes_first(app, self._own_routes)

    def call(self, spec: RouteSpec) -> Call:
        return route_call(spec, self.settings, self.pools, self.metrics)

    def route_options(self, spec: RouteSpec) -> dict[str, Any]:
        """Extra ``add_api_route`` arguments: the auth dependency, the limit answers."""
        return {
            "dependencies": [self.auth] if self.auth is not None else None,
            "responses": {
                **openapi_responses(spec, self.settings),
                **({401: {"description": "Missing or invalid bearer token"}} if self.auth else {}),
            },
        }

    def failed(self, spec: RouteSpec, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.exceptions.labels(spec.path, type(exc).__name__).inc()


def install(
    app: FastAPI,
    settings: Settings,
    metrics: Metrics | None,
    pools: Sequence[WorkerPool],
    auth: DependsParam | None = None,
) -> None:
    """Mount ``/healthz``, ``/readyz`` and ``/metrics`` and add the middleware, outermost last."""
    _mount_health(app, pools)
    if metrics is not None:
        _mount_metrics(app, metrics, auth)
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
        RequestMiddleware, metrics=metrics, log=settings.access_log,
        max_body_size=0 if settings.cors_origins else settings.max_body_size,
    )


def routes_first(app: FastAPI, ours: list[Any]) -> None:
    """Match the notebook's fixed-path routes before nb2api's own (docs, health, metrics).

    Starlette tries routes in order, so every route ahead of ``/predict`` costs each request a
    regex match. A fixed path cannot shadow a different one, so those go first; routes with path
    parameters (``/species/{name}``) stay behind nb2api's own, which they could shadow, and so
    does a notebook route on one of nb2api's own paths.
    """
    reserved = {getattr(route, "path", None) for route in ours}
    first = [
        route for route in app.router.routes
        if route not in ours and "{" not in getattr(route, "path", "{")
        and route.path not in reserved
    ]
    app.router.routes[:] = first + [r for r in app.router.routes if r not in first]


def not_ready_reason(app: FastAPI, pools: Sequence[WorkerPool]) -> str | None:
    if not getattr(app.state, "ready", False):
        return "the notebook's setup cells have not finished"
    for pool in pools:
        if getattr(pool, "broken", False):
            return f"the {pool.kind} pool lost a worker and is being replaced"
        wedged = pool.wedged_for()
        if wedged > WEDGED_AFTER:
            return (
                f"all {pool.max_workers} {pool.kind} workers busy and none returned "
                f"for {wedged:.0f} s"
            )
    return None


def _mount_health(app: FastAPI, pools: Sequence[WorkerPool]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reason = not_ready_reason(app, pools)
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})


def _mount_metrics(app: FastAPI, metrics: Metrics, auth: DependsParam | None) -> None:
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        include_in_schema=False,
        dependencies=[auth] if auth is not None else None,
    )
