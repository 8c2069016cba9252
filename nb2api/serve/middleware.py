"""The request middleware: request ids, Prometheus counts and latency, one log line per request.

Plain ASGI (no ``BaseHTTPMiddleware``, which costs a task and a stream per request): it takes the
request id from ``X-Request-ID`` or makes one, echoes it, counts and times the request for
Prometheus, and writes one log line when the response is done.
"""

from __future__ import annotations

import logging
import re
from random import getrandbits as _getrandbits
from time import perf_counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .context import RECEIVE, current_scope
from .limits import BodySizeLimit
from .logs import access_logger, log_request, request_id
from .metrics import Metrics

OPS_PATHS = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: logged at debug level
UNMATCHED = "<unmatched>"  # the route of a request that no route answered (a 404)

# What a client may send as a request id: short, printable, no spaces (it goes into log lines).
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=@-]{1,128}$").match


class RequestMiddleware:
    """Request id in and out, Prometheus count and latency, one log line per request.

    With ``max_body_size`` it also answers 413 to a request body over that many bytes (what
    :class:`BodySizeLimit` does, without a second middleware layer per request).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None, log: bool = True,
                 max_body_size: int = 0, version: str | None = None) -> None:
        self.app = app
        # X-Notebook-Version: which version of the notebook answered
        self.version = (b"x-notebook-version", version.encode()) if version else None
        self.metrics = metrics
        self.log = log
        self.max_body_size = max_body_size
        self.limited = BodySizeLimit(app, max_body_size) if max_body_size else None
        self._templates: dict[int, str] = {}  # id of an endpoint -> its route's template

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
        scope_token = _set_scope(scope)
        scope[RECEIVE] = receive  # a batched request watches it for the client going away
        header = (b"x-request-id", rid.encode())
        version = self.version
        status = 500  # what the client gets if the app raises before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
                if version is not None:
                    message["headers"].append(version)
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.request_started()
        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = perf_counter() - started
            template = getattr(scope.get("route"), "path", None) or self._template(scope)
            if metrics is not None:
                metrics.request_finished(template, scope["method"], status, seconds)
            if self.log:
                _log(scope, template, status, seconds)
            _reset_request_id(token)
            _reset_scope(scope_token)

    def _template(self, scope: Scope) -> str:
        """The template of a route that does not put itself in the scope: FastAPI's
        ``/openapi.json`` and the mount of the docs' assets, ``/_nb2api/static``. The router
        names the endpoint it called; its route is looked up once."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return UNMATCHED
        template = self._templates.get(id(endpoint))
        if template is None:
            template = UNMATCHED
            for route in getattr(scope.get("router"), "routes", ()):
                if endpoint is getattr(route, "endpoint", None) or endpoint is getattr(
                        route, "app", None):
                    template = route.path
                    break
            self._templates[id(endpoint)] = template
        return template


_set_request_id = request_id.set
_reset_request_id = request_id.reset
_set_scope = current_scope.set
_reset_scope = current_scope.reset


def _log(scope: Scope, template: str, status: int, seconds: float) -> None:
    path = scope["path"]
    level = logging.DEBUG if path in OPS_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    client = scope.get("client")
    ms = round(seconds * 1000, 3)
    method = scope["method"]
    fields = {
        "method": method,
        "path": path,
        "route": template,
        "status": status,
        "duration_ms": ms,
        "client": client[0] if client else None,
    }
    log_request(level, f"{method} {path} {status} {ms:.1f} ms", fields)


class RootPath:
    """Pure ASGI middleware: the prefix a proxy serves the app under, unless the server set one."""

    def __init__(self, app: Any, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            scope["root_path"] = self.root_path
        await self.app(scope, receive, send)
