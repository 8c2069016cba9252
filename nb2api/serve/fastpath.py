"""The direct path: a valid JSON request to a notebook route, answered without FastAPI's
per-request machinery.

FastAPI answers a request through an exception layer, two exit stacks, the router, a ``Request``
object, a dependency solve and an error context around the endpoint; on a small route that costs
more than the route itself (``bench/run.py``: 1.7-2x the requests per second without it).
:class:`DirectRoutes` is the innermost middleware. For a notebook route whose only input is its
JSON body (or nothing) it makes exactly the calls FastAPI would make: ``route.matches(scope)``,
``json.loads`` of the body (what Starlette's ``Request.json()`` does), the route's own
``body_field.validate``, then awaits the endpoint and sends its ``Response``.

Whatever it cannot answer that way goes on to FastAPI untouched, with the body replayed: other
routes, a missing or unusual content type, an empty body, JSON that does not parse, a body that
fails validation (so every 422 is FastAPI's own), an ``Authorization`` header other than exactly
``Bearer <token>`` on a route behind ``--token`` (FastAPI's dependency then answers 401, or
accepts), query, path or upload parameters, FastAPI telemetry being on. An ``HTTPException`` from
the endpoint goes through Starlette's ``ExceptionMiddleware`` with the app's own handlers, as it
would have.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, params
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:  # FastAPI >= 0.160: OpenTelemetry spans around dependencies and the endpoint
    from fastapi.telemetry import get_telemetry_data
except ImportError:  # pragma: no cover - an older FastAPI has no telemetry to keep
    def get_telemetry_data() -> None:
        return None


class DirectRoutes:
    """Pure ASGI middleware that answers valid JSON requests to ``routes`` itself.

    ``routes`` are nb2api's own routes, whose endpoints take at most one JSON body parameter and
    always return a ``Response``. The app's routes and exception handlers are read when the
    middleware stack is built (the first request), so later additions count.
    """

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, routes: Iterable[APIRoute]) -> None:
        self.app = app
        # method -> (route, its body parameter's name, the Authorization header it accepts)
        self.by_method: dict[str, list[tuple[APIRoute, str, bytes | None]]] = {}
        for route, body in direct_routes(fastapi_app.router.routes, list(routes)):
            dependencies = route.dependant.dependencies
            token = dependencies[0].call.accepts if dependencies else None  # type: ignore[union-attr]
            for method in route.methods:
                self.by_method.setdefault(method, []).append((route, body, token))
        # The handlers FastAPI gives its ExceptionMiddleware (500 and Exception go elsewhere).
        self.handlers = {key: handler for key, handler in fastapi_app.exception_handlers.items()
                         if key not in (500, Exception)}
        self.debug = fastapi_app.debug

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route, body, token in self.by_method.get(scope["method"], ()):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    await self._answer(route, body, token, child_scope, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, route: APIRoute, body_name: str, token: bytes | None,
                      child_scope: Scope, scope: Scope, receive: Receive, send: Send) -> None:
        if (get_telemetry_data() is not None or (body_name and not _is_json(scope))
                or (token is not None and not _authorized(scope, token))):
            await self.app(scope, receive, send)
            return
        arguments: dict[str, Any] = {}
        if body_name:
            try:
                body = await _read_body(receive)
            except Exception as exc:  # noqa: BLE001 - a limit's 413, a client gone
                await self.app(scope, _failing(exc), send)  # FastAPI answers it as it would
                return
            value, ok = _validated(route, body)
            if not ok:
                await self.app(scope, _replay(body, receive), send)
                return
            arguments[body_name] = value
        scope.update(child_scope)  # route, endpoint, path_params: what the router would set
        try:
            response = await route.dependant.call(**arguments)  # type: ignore[misc]
        except Exception as exc:
            await self._handled(exc, scope, receive, send)
            return
        if not isinstance(response, Response):  # nb2api's endpoints always return one
            raise TypeError(f"endpoint {route.name} returned {type(response).__name__}")
        await response(scope, receive, send)

    async def _handled(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Turn ``exc`` into a response with the app's handlers, or raise it on (a 500)."""

        async def raising(scope: Scope, receive: Receive, send: Send) -> None:
            raise exc

        await ExceptionMiddleware(raising, self.handlers, self.debug)(scope, receive, send)


def direct_routes(in_order: list[BaseRoute], candidates: list[APIRoute]) -> list[
        tuple[APIRoute, str]]:
    """The candidates the direct path may answer, each with its body parameter's name (``""``
    for none). A route qualifies only while no route before it in the app's order could match
    the same request, so the router would have picked it too."""
    found = []
    paths_before: set[str] = set()
    for route in in_order:
        if not isinstance(route, Route) or "{" in route.path:
            break  # a mount or a path with parameters could shadow any route after it
        if route in candidates and route.path not in paths_before:
            body = direct_body(route)  # type: ignore[arg-type]
            if body is not None:
                found.append((route, body))
        paths_before.add(route.path)
    return found


def direct_body(route: APIRoute) -> str | None:
    """The body parameter's name if the direct path can answer ``route``, ``""`` if it takes no
    parameters, ``None`` if FastAPI's handler must answer every request."""
    d = route.dependant
    if (
        "{" in route.path or not _token_only(d.dependencies) or d.path_params or d.query_params
        or d.header_params or d.cookie_params or d.request_param_name or d.websocket_param_name
        or d.http_connection_param_name or d.response_param_name
        or d.background_tasks_param_name or d.security_scopes_param_name
        or len(d.body_params) > 1
    ):
        return None
    if not d.body_params:
        return ""
    field = d.body_params[0]
    if isinstance(field.field_info, params.Form) or getattr(field.field_info, "embed", False):
        return None
    if route.body_field is not field:
        return None  # FastAPI wraps it in an embedding model: not the single-body case
    return field.name


def _token_only(dependencies: list[Any]) -> bool:
    """No dependencies, or just nb2api's bearer token (``auth.require_token``) when it says
    which header it accepts."""
    return not dependencies or (
        len(dependencies) == 1 and isinstance(getattr(dependencies[0].call, "accepts", None), bytes)
    )


def _first_header(scope: Scope, wanted: bytes) -> bytes | None:
    """The first header of that (lower-case) name, as Starlette's ``Headers.get`` reads it."""
    for name, value in scope["headers"]:
        if name == wanted:
            return value
    return None


def _authorized(scope: Scope, accepted: bytes) -> bool:
    value = _first_header(scope, b"authorization")  # what HTTPBearer reads
    return value is not None and secrets.compare_digest(value, accepted)


def _validated(route: APIRoute, body: bytes) -> tuple[Any, bool]:
    if not body:
        return None, False  # FastAPI decides what an empty body means for this route
    try:
        data = json.loads(body)  # what Starlette's Request.json() does
    except Exception:  # noqa: BLE001 - FastAPI's handler makes the 422 or 400 from it
        return None, False
    value, errors = route.body_field.validate(data, {}, loc=("body",))  # type: ignore[union-attr]
    return value, not errors


def _is_json(scope: Scope) -> bool:
    value = _first_header(scope, b"content-type")
    return value is not None and value.split(b";", 1)[0].strip().lower() == b"application/json"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:  # as Starlette's Request.stream() reads it
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _failing(exc: Exception) -> Receive:
    """``receive`` that fails as reading the body did."""

    async def failing() -> Message:
        raise exc

    return failing


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that hands over the already-read body once, then defers to the server."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
