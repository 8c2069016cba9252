"""The fast path: a valid JSON request to a body-only notebook route, answered without FastAPI's
per-request machinery.

FastAPI answers a request through an exception layer, two exit stacks, the router, a ``Request``
object, a dependency solve and an error context around the endpoint; on a small route that costs
more than the route itself (``bench/run.py --only fastpath``). :class:`DirectRoutes` is the
innermost middleware. On a route it fully knows, it makes exactly the calls FastAPI would make:
``route.matches(scope)``, the body read as JSON (as Starlette's ``Request.json()`` reads it), the
route's own ``body_field.validate``, then awaits the endpoint and sends its ``Response``; an
exception from the endpoint goes through Starlette's ``ExceptionMiddleware`` with the app's own
handlers, as it would have.

It lists what it handles; everything else goes on to FastAPI untouched, with the body replayed.
Checked once, when the middleware stack is built (the first request):

- the stack inside it is FastAPI's own: ``ExceptionMiddleware``, ``AsyncExitStackMiddleware``, the
  router without router-level middleware;
- the route is an ``APIRoute`` (exactly, not a subclass) that nb2api added for the notebook, on a
  fixed path (no parameters), with an ``async def`` endpoint;
- the router would pick it: every route before it in ``app.router.routes`` provably cannot match
  its requests (a ``Route`` or ``APIRoute`` whose path regex does not match its path or whose
  methods do not overlap, a ``Mount`` whose path regex does not match it, a websocket route).
  Any other kind of route before it (a ``Host``, an included router, anything new) rules it out;
- its ``Dependant`` holds the endpoint, at most one body parameter, and at most nb2api's bearer
  token dependency when that names the one header it accepts (:class:`.auth.TokenAuth`); every
  other ``Dependant`` field holds its default, so a field a later FastAPI adds rules it out;
- the body parameter is a plain ``Body`` (not ``Form``, ``File`` or another kind), not embedded,
  and is the route's ``body_field`` itself;
- every attribute of the route is one this module knows (:data:`_ROUTE_ATTRIBUTES`), and those
  that change what FastAPI's handler does hold nb2api's values: no route-level
  ``max_body_size``, ``dependency_overrides_provider`` is the app, no streaming response class.
  The response model, status code and their options are not read: FastAPI only uses them when
  an endpoint returns something other than a ``Response``, and nb2api's endpoints never do.

Then, per request:

- ``app.dependency_overrides`` is empty (it may change while the app runs) and FastAPI's
  telemetry is off;
- on a route with a body parameter, the content type is ``application/json`` (parameters
  allowed), and the body parses as JSON and passes validation, so every 422 and 400 is FastAPI's
  own; or it is an Arrow or Parquet table (:mod:`.tables`), handed as bytes to the body field as
  FastAPI hands it, and read without a refusal (every 413, 415 and 422 is FastAPI's own too);
- on a route behind ``--token``, the first ``Authorization`` header is exactly ``Bearer <token>``
  (any other header goes to FastAPI's dependency, which answers 401, or accepts).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import secrets
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, params
from fastapi.datastructures import DefaultPlaceholder
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.responses import Response
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..types.columnar import body_media_type
from .auth import TokenAuth
from .jsonbody import loads

try:  # FastAPI >= 0.160: OpenTelemetry spans around dependencies and the endpoint
    from fastapi.telemetry import get_telemetry_data
except ImportError:  # pragma: no cover - an older FastAPI has no telemetry to keep
    def get_telemetry_data() -> None:
        return None

try:  # FastAPI >= 0.135 streams Server-Sent Events when the response class is this one
    from fastapi.sse import EventSourceResponse as _Streaming
except ImportError:  # pragma: no cover
    _Streaming = None  # type: ignore[assignment,misc]

# Every attribute of an APIRoute, by what the fast path makes of it. An attribute not listed
# here (a later FastAPI's) leaves the route to FastAPI.
_ROUTE_ATTRIBUTES = frozenset({
    # checked by _body_parameter
    "path", "path_regex", "path_format", "param_convertors", "methods", "endpoint", "dependant",
    "dependencies", "body_field", "_embed_body_fields", "dependency_overrides_provider",
    "max_body_size", "response_class", "is_sse_stream", "is_json_stream", "stream_item_type",
    "stream_item_field",
    # FastAPI's handler for the route, which the fast path stands in for
    "app",
    # used only when the endpoint returns something other than a Response
    "status_code", "response_model", "response_field", "response_model_include",
    "response_model_exclude", "response_model_by_alias", "response_model_exclude_unset",
    "response_model_exclude_defaults", "response_model_exclude_none",
    # used only for bodies that are not JSON (no content type, forms)
    "strict_content_type", "form_limits",
    # OpenAPI and naming only
    "name", "summary", "description", "response_description", "deprecated", "operation_id",
    "unique_id", "include_in_schema", "tags", "responses", "response_fields", "callbacks",
    "openapi_extra", "generate_unique_id_function",
})

# The Dependant fields the fast path checks itself; every other one must hold its default.
_DEPENDANT_CHECKED = frozenset({"call", "body_params", "dependencies", "path", "scope"})


class DirectRoutes:
    """Pure ASGI middleware that answers valid JSON requests to ``routes`` itself.

    ``routes`` are nb2api's own notebook routes; ``auth`` is the app's token check, whose
    accepted header lets a request skip the dependency. The app's routes and exception handlers
    are read when the middleware stack is built (the first request), so later additions count.
    """

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, routes: Iterable[APIRoute],
                 auth: TokenAuth | None = None) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        # method -> (route, its body parameter's name, the Authorization header it accepts)
        self.by_method: dict[str, list[tuple[APIRoute, str, bytes | None]]] = {}
        if _inner_stack_is_fastapis(app, fastapi_app):
            for route, body in handled_routes(fastapi_app, list(routes), auth):
                token = auth.accepted_header if auth is not None and route.dependencies else None
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
        if (self.fastapi_app.dependency_overrides or scope.get("fastapi.telemetry") is not None
                or get_telemetry_data() is not None or (body_name and not _body_kind(scope))
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
            value, ok = _validated(route, body, table=_body_kind(scope) == "table")
            if not ok:
                await self.app(scope, _replay(body, receive), send)
                return
            arguments[body_name] = value
        # What the router sets: itself, then the route's child scope (route, endpoint, params).
        scope.setdefault("router", self.fastapi_app.router)
        scope.update(child_scope)
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


def handled_routes(fastapi_app: FastAPI, candidates: list[APIRoute],
                   auth: TokenAuth | None) -> list[tuple[APIRoute, str]]:
    """The candidates the fast path answers, each with its body parameter's name (``""`` for
    none): those whose shape it knows and that the router would pick for their requests."""
    found = []
    wanted = {id(route) for route in candidates}
    in_order = fastapi_app.router.routes
    for index, route in enumerate(in_order):
        if id(route) not in wanted or not isinstance(route, APIRoute):
            continue
        body = _body_parameter(route, fastapi_app, auth)
        if body is not None and _first_to_match(route, in_order[:index]):
            found.append((route, body))
    return found


def _inner_stack_is_fastapis(app: ASGIApp, fastapi_app: FastAPI) -> bool:
    """Whether what the fast path stands in for is FastAPI's own stack, with nothing added."""
    router = fastapi_app.router
    return (type(app) is ExceptionMiddleware
            and type(app.app) is AsyncExitStackMiddleware  # type: ignore[attr-defined]
            and app.app.app is router  # type: ignore[attr-defined]
            and router.middleware_stack == router.app)


def _first_to_match(route: APIRoute, before: list[BaseRoute]) -> bool:
    """Whether no route in ``before`` can fully match a request that ``route`` matches, so the
    router, trying them in order, would pick ``route``."""
    # route's regex is "^<path>$" (checked in _body_parameter), and "$" also matches before a
    # final newline: these two paths are all that it matches.
    paths = (route.path, route.path + "\n")
    for other in before:
        kind = type(other)
        if kind in (Route, APIRoute):
            methods = other.methods  # type: ignore[attr-defined]
            if ((methods is None or methods & route.methods)
                    and any(other.path_regex.match(p) for p in paths)):  # type: ignore[attr-defined]
                return False
        elif kind is Mount:
            if any(other.path_regex.match(p) for p in paths):  # type: ignore[attr-defined]
                return False
        elif kind not in (WebSocketRoute, APIWebSocketRoute):  # those match websockets only
            return False  # a route the fast path does not know could match anything
    return True


def _body_parameter(route: APIRoute, fastapi_app: FastAPI, auth: TokenAuth | None) -> str | None:
    """The body parameter's name if the fast path knows every feature of ``route``, ``""`` if it
    takes no parameters, ``None`` if FastAPI's handler must answer every request."""
    if (
        type(route) is not APIRoute
        or not set(vars(route)) <= _ROUTE_ATTRIBUTES
        or route.param_convertors
        or route.path_regex != re.compile("^" + re.escape(route.path) + "$")
        or route.max_body_size is not None
        or route.dependency_overrides_provider is not fastapi_app
        or route._embed_body_fields
        or route.is_sse_stream or route.is_json_stream
        or route.stream_item_type is not None or route.stream_item_field is not None
        or not _plain_response_class(route.response_class)
        or route.endpoint is not route.dependant.call
        or not inspect.iscoroutinefunction(route.endpoint)
        or not _only_token(route, auth)
    ):
        return None
    dependant = route.dependant
    for field in dataclasses.fields(dependant):
        if field.name not in _DEPENDANT_CHECKED and getattr(dependant, field.name) != (
                field.default_factory() if field.default is dataclasses.MISSING  # type: ignore[misc]
                else field.default):
            return None
    if dependant.path != route.path or dependant.scope not in (None, "function"):
        return None
    if not dependant.body_params:
        return "" if route.body_field is None else None
    if len(dependant.body_params) > 1:
        return None
    field = dependant.body_params[0]
    if (route.body_field is not field or type(field.field_info) is not params.Body
            or field.field_info.embed):
        return None
    return field.name


def _only_token(route: APIRoute, auth: TokenAuth | None) -> bool:
    """No dependencies, or just the app's token check when it names the header it accepts."""
    if not route.dependencies and not route.dependant.dependencies:
        return True
    return (auth is not None and auth.accepted_header is not None
            and len(route.dependencies) == 1 and route.dependencies[0] is auth.depends
            and len(route.dependant.dependencies) == 1
            and route.dependant.dependencies[0].call is auth.depends.dependency)


def _plain_response_class(response_class: Any) -> bool:
    """Whether FastAPI's handler only uses the class for results that are not a Response."""
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    return (isinstance(response_class, type) and issubclass(response_class, Response)
            and (_Streaming is None or not issubclass(response_class, _Streaming)))


def _first_header(scope: Scope, wanted: bytes) -> bytes | None:
    """The first header of that (lower-case) name, as Starlette's ``Headers.get`` reads it."""
    for name, value in scope["headers"]:
        if name == wanted:
            return value
    return None


def _authorized(scope: Scope, accepted: bytes) -> bool:
    value = _first_header(scope, b"authorization")  # what HTTPBearer reads
    return value is not None and secrets.compare_digest(value, accepted)


def _validated(route: APIRoute, body: bytes, table: bool = False) -> tuple[Any, bool]:
    if not body:
        return None, False  # FastAPI decides what an empty body means for this route
    if table:
        # The bytes, as FastAPI hands a body that is not JSON to the route's body field, whose
        # validator reads the table (serve/tables.py); what it refuses (a 413, 415 or 422) it
        # refuses again under FastAPI's handler, which answers.
        try:
            value, errors = route.body_field.validate(  # type: ignore[union-attr]
                body, {}, loc=("body",))
        except Exception:  # noqa: BLE001
            return None, False
        return value, not errors
    try:
        data = loads(body)  # what Starlette's Request.json() reads, faster when large
    except Exception:  # noqa: BLE001 - FastAPI's handler makes the 422 or 400 from it
        return None, False
    value, errors = route.body_field.validate(data, {}, loc=("body",))  # type: ignore[union-attr]
    return value, not errors


def _body_kind(scope: Scope) -> str | None:
    """"json" for ``application/json`` (parameters allowed), "table" for an Arrow or Parquet
    body, None for any other content type (or none)."""
    value = _first_header(scope, b"content-type")
    if value is None:
        return None
    kind = value.split(b";", 1)[0].strip().lower()
    if kind == b"application/json":
        return "json"
    return "table" if body_media_type(kind.decode("latin-1")) else None


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
