"""``/mcp``: the MCP Streamable HTTP endpoint, mounted on the notebook's own app.

Stateless: every POST is answered on its own, with no session kept between requests, so the
endpoint works the same under ``--workers N`` (any process may answer) and behind a proxy; both
the initialize handshake (MCP 2025-11-25 and before) and the 2026-07-28 per-request protocol are
answered. It sits
behind the app's middleware like any route: the bearer token (401 without it), the body-size
limit, request ids, logs and metrics. The SDK's session manager lives inside the app's lifespan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .server import build_server

MCP_PATH = "/mcp"
_NO_LIMIT = 2**62  # the app's own body limit applies (--max-body-size)


class MCPEndpoint:
    """The ASGI app at ``/mcp``: the running session manager's, or a 503 outside the lifespan."""

    def __init__(self, server: Server[Any]) -> None:
        self.server = server
        self.manager: StreamableHTTPSessionManager | None = None

    def new_manager(self) -> StreamableHTTPSessionManager:
        """A session manager for one run of the app's lifespan (the SDK runs each only once)."""
        # JSON answers, not an event stream per call: a third of the time per call, and a tool
        # call sends nothing before its result.
        return StreamableHTTPSessionManager(self.server, stateless=True, json_response=True,
                                            max_request_body_size=_NO_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        manager = self.manager
        if manager is None:
            response = JSONResponse({"detail": "/mcp answers once the app has started (its "
                                     "lifespan); run it with an ASGI server"}, 503)
            await response(scope, receive, send)
            return
        await manager.handle_request(scope, receive, send)


@asynccontextmanager
async def _running(endpoint: MCPEndpoint) -> AsyncIterator[None]:
    """A fresh session manager for ``endpoint`` while the block runs. The manager runs in a task
    of its own, so the block may end in another task than it began in (``--reload`` starts and
    stops an app's lifespan from different tasks)."""
    manager = endpoint.new_manager()
    started = asyncio.Event()
    stop = asyncio.Event()

    async def run() -> None:
        async with manager.run():
            endpoint.manager = manager
            started.set()
            try:
                await stop.wait()
            finally:
                endpoint.manager = None

    task = asyncio.create_task(run(), name="nb2api-mcp")
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiting.cancel()
        task.result()  # raises what stopped it
    try:
        yield
    finally:
        stop.set()
        await task


def mount_mcp(app: FastAPI) -> MCPEndpoint:
    """Add ``/mcp`` to ``app`` (built by :func:`nb2api.serve.build_app`), its session manager
    running within the app's lifespan."""
    endpoint = MCPEndpoint(build_server(app))
    app.router.routes.append(Route(MCP_PATH, endpoint=endpoint, include_in_schema=False))
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with app_lifespan(application) as state:
            async with _running(endpoint):
                yield state

    app.router.lifespan_context = lifespan
    app.state.mcp = endpoint
    return endpoint


# The SDK says "Terminating session: None" at info level after every stateless request.
_transport_log = logging.getLogger("mcp.server.streamable_http")
if _transport_log.level == logging.NOTSET:
    _transport_log.setLevel(logging.WARNING)
