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
from starlette.types import Message, Receive, Scope, Send

from . import direct
from .server import NotebookTools, build_server

MCP_PATH = "/mcp"
_NO_LIMIT = 2**62  # the app's own body limit applies (--max-body-size)


class MCPEndpoint:
    """The ASGI app at ``/mcp``: the running session manager's, or a 503 outside the lifespan.
    A plain ``tools/call`` is answered directly (:mod:`.direct`) unless ``direct`` is off."""

    def __init__(self, tools: NotebookTools, server: Server[Any]) -> None:
        self.tools = tools
        self.server = server
        self.manager: StreamableHTTPSessionManager | None = None
        self.direct = True

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
        if self.direct and scope["method"] == "POST":
            version = direct.handshake_version(scope["headers"])
            if version is not None:
                body = await _read_body(receive)
                answer = await direct.answer(self.tools.calls, body, version)
                if answer is not None:
                    await _send_json(send, answer)
                    return
                receive = _replay(body)
        await manager.handle_request(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that gives ``body`` again, then waits for the disconnect."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a request's body is read once; nothing else comes
        return {"type": "http.disconnect"}

    return receive


async def _send_json(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


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
    tools = NotebookTools(app)
    endpoint = MCPEndpoint(tools, build_server(app, tools))
    # First: no notebook route can be /mcp (a reserved path), and it is matched soonest.
    app.router.routes.insert(0, Route(MCP_PATH, endpoint=endpoint, include_in_schema=False))
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
