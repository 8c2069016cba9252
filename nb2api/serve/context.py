"""The request being answered, for code below the endpoint's signature.

An endpoint's signature is what FastAPI reads for validation and OpenAPI, so per-request facts that
are not parameters of the notebook function (``Prefer``, ``Accept``, ``Webhook-URL``, the trace
context) are read from here. :class:`.middleware.RequestMiddleware`, the outermost layer, sets it
for every HTTP request, and the fast path runs inside it, so both ways to an endpoint see it.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import Scope

current_scope: ContextVar[Scope | None] = ContextVar("nb2api_scope", default=None)


def request_headers() -> Headers:
    """The headers of the request being answered (empty outside a request)."""
    scope = current_scope.get()
    return Headers(scope=scope) if scope is not None else Headers()
