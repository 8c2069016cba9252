"""``/mcp``: the MCP Streamable HTTP endpoint, mounted on the notebook's own app.

Stateless: every POST is answered on its own, with no session kept between requests, so the
endpoint works the same under ``--workers N`` (any process may answer) and behind a proxy; both
the initialize handshake (MCP 2025-11-25 and before) and the 2026-07-28 per-request protocol are
answered. A tool call that carries a progress token gets its progress notifications, then its
result, as an event stream; every other request gets one JSON body. It sits behind the app's
middleware like any route: the bearer token (401 without it), the body-size limit, request ids,
logs and metrics.

The ``mcp`` SDK takes about as long to import as FastAPI, so the app does not wait for it: the
app's lifespan starts importing it in a thread, and the first request to ``/mcp`` waits for that
import, then starts the SDK's session managers, which run until the lifespan ends.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ..serve.auth import TokenAuth, require_token

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from .server import CombinedTools, NotebookTools

MCP_PATH = "/mcp"
_NO_LIMIT = 2**62  # the app's own body limit applies (--max-body-size)
_SDK_MODULES = ("nb2api.mcp.server", "nb2api.mcp.direct",
                "mcp.server.streamable_http_manager")


def _import_sdk() -> None:
    for name in _SDK_MODULES:
        importlib.import_module(name)
    # The SDK says "Terminating session: None" at info level after every stateless request.
    transport_log = logging.getLogger("mcp.server.streamable_http")
    if transport_log.level == logging.NOTSET:
        transport_log.setLevel(logging.WARNING)


@dataclass
class _Run:
    """One run of the app's lifespan, in one event loop: the SDK's import, then the session
    manager that the first request starts."""

    loading: asyncio.Future[None]
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    manager: StreamableHTTPSessionManager | None = None
    streaming: StreamableHTTPSessionManager | None = None  # answers with an event stream
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    closed: bool = False


class MCPEndpoint:
    """The ASGI app at ``/mcp``: the SDK's session manager, started by the first request while
    the app's lifespan runs (a 503 outside it). A plain ``tools/call`` is answered directly
    (:mod:`.direct`) unless ``direct`` is off; one that asks for progress notifications (a
    ``_meta.progressToken``) is answered by a second manager, with an event stream. Each event
    loop that runs the app's lifespan has its own run (a test client and a schema tester may
    run one each, at once)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.direct = True
        self.tools: NotebookTools | CombinedTools | None = None
        self.route: Route | None = None  # named in the request's scope, as FastAPI's routes are
        self._runs: dict[asyncio.AbstractEventLoop, _Run] = {}

    # -- lifespan ------------------------------------------------------------------------------

    def open(self) -> _Run:
        """The app's lifespan began: import the SDK in a thread, out of the event loop's way."""
        loop = asyncio.get_running_loop()
        run = self._runs[loop] = _Run(loop.run_in_executor(None, _import_sdk))
        return run

    async def close(self, run: _Run) -> None:
        """The app's lifespan ends: stop the session manager, if a request started one."""
        run.closed = True
        loop = asyncio.get_running_loop()
        if self._runs.get(loop) is run:
            del self._runs[loop]
        if run.task is not None:
            run.stop.set()
            await run.task
        await asyncio.wait([run.loading])  # a thread cannot be stopped; let it finish

    async def _ready(self) -> _Run | None:
        """This event loop's lifespan run with its session managers running, started now if
        this is its first request; None outside the app's lifespan."""
        run = self._runs.get(asyncio.get_running_loop())
        if run is None:
            return None
        if run.manager is not None:
            return run
        async with run.starting:
            await run.loading
            if run.manager is None and not run.closed:
                await self._start_manager(run)
        return run if run.manager is not None else None

    async def _start_manager(self, run: _Run) -> None:
        """Run a fresh session manager (the SDK runs each once) in a task of its own, so that
        the lifespan may end in another task than the one it began in (``--reload``)."""
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        from .server import NotebookTools, build_server

        if self.tools is None:
            self.tools = NotebookTools(self.app)
        # JSON answers, not an event stream per call: a third of the time per call, and a tool
        # call sends nothing before its result. A call that asks for progress notifications
        # is answered by the second manager, with an event stream that carries them first.
        server = build_server(self.app, self.tools)
        manager, streaming = (
            StreamableHTTPSessionManager(server, stateless=True, json_response=json_response,
                                         max_request_body_size=_NO_LIMIT)
            for json_response in (True, False)
        )
        started = asyncio.Event()

        async def serve() -> None:
            async with manager.run(), streaming.run():
                run.manager, run.streaming = manager, streaming
                started.set()
                try:
                    await run.stop.wait()
                finally:
                    run.manager = run.streaming = None

        task = run.task = asyncio.create_task(serve(), name="nb2api-mcp")
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiting.cancel()
            run.task = None
            task.result()  # raises what stopped it

    # -- requests ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.route is not None:
            scope["route"] = self.route  # the request's span is "POST /mcp", its http.route /mcp
        run = await self._ready()
        if run is None:
            response = JSONResponse({"detail": "/mcp answers once the app has started (its "
                                     "lifespan); run it with an ASGI server"}, 503)
            await response(scope, receive, send)
            return
        manager = run.manager
        if scope["method"] == "POST":
            from . import direct

            body = await _read_body(receive)
            receive = _replay(body)
            if _asks_progress(body, scope["headers"]):
                manager = run.streaming
            elif self.direct:
                version = direct.handshake_version(scope["headers"])
                if version is not None:
                    assert self.tools is not None
                    answer = await direct.answer(self.tools.calls, body, version)
                    if answer is not None:
                        await _send_json(send, answer)
                        return
        assert manager is not None
        await manager.handle_request(scope, receive, send)


class _Guarded:
    """``/mcp`` of the root of several notebooks, behind the bearer token (401 without it)."""

    def __init__(self, app: MCPEndpoint, auth: TokenAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.auth.verify(HTTPConnection(scope))
        except HTTPException as exc:
            response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


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


def _asks_progress(body: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a POST is a ``tools/call`` with a ``_meta.progressToken`` from a client that
    takes an event stream (others are answered in JSON, where progress has no place)."""
    if b"progressToken" not in body:  # the common case, at the cost of one scan
        return False
    accept = b",".join(value for name, value in headers if name == b"accept").lower()
    if b"text/event-stream" not in accept:
        return False
    try:  # json, not orjson: the SDK takes a token of any size, as JSON allows
        message = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return isinstance(token, int | str) and not isinstance(token, bool)


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


def mount_mcp(app: FastAPI) -> MCPEndpoint:
    """Add ``/mcp`` to ``app`` (built by :func:`nb2api.serve.build_app`); it answers while the
    app's lifespan runs. On the root app of several notebooks (``app.state.notebooks``), the
    tools are every notebook's, named ``<prefix>_<function>``, behind the same token."""
    endpoint = MCPEndpoint(app)
    notebooks = getattr(app.state, "notebooks", None)
    served: Any = endpoint
    if notebooks is not None:
        from .server import CombinedTools

        endpoint.tools = CombinedTools(notebooks)
        token = app.state.settings.bearer_token()
        if token:  # the notebooks' apps check it themselves; the root's /mcp does here
            served = _Guarded(endpoint, require_token(token))
    # First: no notebook route can be /mcp (a reserved path), and it is matched soonest.
    endpoint.route = Route(MCP_PATH, endpoint=served, include_in_schema=False)
    app.router.routes.insert(0, endpoint.route)
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with app_lifespan(application) as state:
            run = endpoint.open()
            try:
                yield state
            finally:
                await endpoint.close(run)

    app.router.lifespan_context = lifespan
    app.state.mcp = endpoint
    return endpoint
