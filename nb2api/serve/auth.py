"""Optional bearer-token auth for the notebook's routes (``--token`` / ``NB2API_TOKEN``).

A FastAPI dependency on ``HTTPBearer``, so ``/docs`` shows the security scheme and its Authorize
button, and the same check in :class:`TokenGate`, an ASGI layer that answers 401 before any body
is read (FastAPI reads and parses the body before it solves dependencies, so a malformed body
would get a 422 first). Tokens are compared in constant time. ``/healthz``, ``/readyz`` and the
docs stay open.
"""

# No "from __future__ import annotations": FastAPI reads check_token's annotations at runtime,
# and they name a local (bearer).

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette._utils import get_route_path
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

SCHEME_NAME = "bearerToken"

# What stays open behind --token: probes, the docs and the OpenAPI document, the docs' assets.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/_nb2api/static/",)


@dataclass(frozen=True)
class TokenAuth:
    """The token check of an app: the dependency its routes carry, and the one ``Authorization``
    header value that the dependency certainly accepts (``None`` when no single value is
    certain, e.g. a token with spaces)."""

    depends: DependsParam
    accepted_header: bytes | None
    verify: Callable[[HTTPConnection], Awaitable[None]]  # raises the 401 HTTPException


def require_token(token: str) -> TokenAuth:
    """A ``Depends`` that answers 401 (with ``WWW-Authenticate: Bearer``) unless the request
    carries ``Authorization: Bearer <token>``, and that header's exact value."""
    if not token:
        raise ValueError("the token must not be empty")
    expected = token.encode()
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name=SCHEME_NAME,
        description="The token the service was started with (`--token` or `NB2API_TOKEN`).",
    )

    async def check_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if credentials is None:
            raise HTTPException(
                401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not secrets.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(
                401,
                "invalid bearer token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )

    async def verify(connection: HTTPConnection) -> None:
        await check_token(await bearer(connection))  # type: ignore[arg-type]

    # HTTPBearer takes what follows the first space, stripped: for a token of printable ASCII
    # without whitespace, "Bearer <token>" is certainly accepted. Other headers may be too; the
    # dependency decides those.
    plain = token.isascii() and token.isprintable() and not any(c.isspace() for c in token)
    return TokenAuth(Depends(check_token), b"Bearer " + expected if plain else None, verify)


class TokenGate:
    """Pure ASGI middleware: the token check of ``auth`` on every HTTP request outside
    :data:`OPEN_PATHS`, before the app reads the body; the 401 the dependency would give.

    An entry for the check in ``fastapi_app.dependency_overrides`` (a test's, say) turns the
    gate off: the override decides, in FastAPI, as it would without the gate."""

    def __init__(self, app: ASGIApp, auth: TokenAuth, fastapi_app: Any) -> None:
        self.app = app
        self.auth = auth
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http"
                and self.auth.depends.dependency not in self.fastapi_app.dependency_overrides):
            path = get_route_path(scope)
            if path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
                try:
                    await self.auth.verify(HTTPConnection(scope))
                except HTTPException as exc:
                    _name_route(scope, self.fastapi_app.router.routes)  # for metrics and logs
                    response = JSONResponse({"detail": exc.detail}, exc.status_code,
                                            headers=exc.headers)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _name_route(scope: Scope, routes: list[Any]) -> None:
    """Set the route a refused request was for, as the router would have: request lines and
    metrics then count a 401 under its route, not as unmatched."""
    for route in routes:
        match, child_scope = route.matches(scope)
        if match is Match.FULL:
            scope["route"] = child_scope.get("route", route)
            return
