"""The request being answered, for code below the endpoint's signature.

An endpoint's signature is what FastAPI reads for validation and OpenAPI, so per-request facts that
are not parameters of the notebook function (``Prefer``, ``Accept``, ``Webhook-URL``, the trace
context) are read from here. :class:`.middleware.RequestMiddleware`, the outermost layer, sets it
for every HTTP request, and the fast path runs inside it, so both ways to an endpoint see it.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import Receive, Scope

current_scope: ContextVar[Scope | None] = ContextVar("nb2api_scope", default=None)
RECEIVE = "nb2api.receive"  # the server's own receive, kept in the scope by the middleware


def request_headers() -> Headers:
    """The headers of the request being answered (empty outside a request)."""
    scope = current_scope.get()
    return Headers(scope=scope) if scope is not None else Headers()


def request_receive() -> Receive | None:
    """The server's ``receive`` of the request being answered: once its body has been read, it
    answers ``http.disconnect`` when the client goes away (None outside a request)."""
    scope = current_scope.get()
    return scope.get(RECEIVE) if scope is not None else None
