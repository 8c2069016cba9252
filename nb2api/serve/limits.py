"""Limits on requests and on notebook code: body size (413), timeout (504), queue bound (503).

Per route, at most ``limit`` calls run at once (``#| max-concurrency: N``; by default the size of
the route's pool for ``def`` routes, no limit for ``async def``). Requests beyond it wait in the
route's queue, first come first served, up to ``max_queue``; past that the answer is 503 with
``Retry-After`` rather than an unbounded queue. A timeout (``#| timeout: S`` or ``--timeout``)
covers the wait and the call: 504 when it passes. A thread cannot be stopped, so its worker stays
busy, and the route's slot stays taken, until the function returns.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from .faults import CallFailed
from .pools import WorkerPool

if TYPE_CHECKING:
    from ..routes import RouteSpec
    from .metrics import Metrics

class BodySizeLimit:
    """Pure ASGI middleware: a request body over ``max_bytes`` gets 413 before the app sees it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await self._reject(send)
                    return
                # A declared length the server enforces: no need to count.
                await self.app(scope, receive, send)
                return
        # Chunked body: count as it arrives.
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = too_large_body(self.max_bytes)
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})


def too_large_body(max_bytes: int) -> bytes:
    """The 413's JSON body (also what the Jupyter proxy answers for its apps)."""
    return b'{"detail":"request body larger than %d bytes"}' % max_bytes


class _TooLarge(HTTPException):
    # An HTTPException, so that FastAPI's body reading lets it through (as a 413) rather than
    # turning it into "400 error parsing the body".
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class Busy(HTTPException):
    """503: the route's queue is full."""

    def __init__(self, route: str, retry_after: int) -> None:
        super().__init__(
            503,
            f"{route}() is busy: too many requests waiting; retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


class TimedOut(HTTPException):
    """504: the call (with its wait in the queue) took longer than the route's timeout."""

    def __init__(self, route: str, seconds: float) -> None:
        super().__init__(504, f"{route}() did not finish within {seconds:g} s")


class RouteLimiter:
    """At most ``limit`` calls at once, at most ``max_queue`` waiting, first come first served."""

    def __init__(self, name: str, limit: int | None, max_queue: int) -> None:
        self.name = name
        self.limit = limit
        self.max_queue = max_queue
        self.running = 0
        self.average = 0.0  # seconds per call, a moving average, for Retry-After
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.on_queue: Callable[[int], None] | None = None  # metrics hook: +1 / -1

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        if not self.limit:
            return 1
        return max(1, math.ceil(self.average * (self.waiting / self.limit + 1)))

    async def enter(self) -> None:
        if self.limit is None or (self.running < self.limit and not self._waiters):
            self.running += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise Busy(self.name, self.retry_after())
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self.on_queue:
            self.on_queue(1)
        try:
            await waiter  # ``leave`` hands its slot over: ``running`` stays the same
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave(None)  # the slot arrived with the cancellation: pass it on
            else:
                self._waiters.remove(waiter)
                if self.on_queue:
                    self.on_queue(-1)
            raise

    def leave(self, seconds: float | None) -> None:
        if seconds is not None:
            self.average += 0.2 * (seconds - self.average)
        while self._waiters:
            waiter = self._waiters.popleft()
            if self.on_queue:
                self.on_queue(-1)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1


Call = Callable[[tuple, dict], Awaitable[Any]]


def make_call(
    name: str,
    func: Callable[..., Any],
    *,
    is_async: bool,
    pool: WorkerPool | None,
    limiter: RouteLimiter,
    timeout: float | None,
) -> Call:
    """``await call(args, kwargs)``: run ``func`` within the route's limits."""

    # sys.exit() or Ctrl-C in an ``async def`` function fails the call before it reaches the
    # event loop (``faults``); caught here, in the call's own frame, at no cost per request.
    async def run_async(args: tuple, kwargs: dict) -> Any:
        await limiter.enter()
        started = time.perf_counter()
        try:
            return await func(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise CallFailed.from_exit(exc) from exc
        finally:
            limiter.leave(time.perf_counter() - started)

    async def run_pooled(args: tuple, kwargs: dict) -> Any:
        assert pool is not None
        await limiter.enter()
        started = time.perf_counter()
        try:
            future = pool.submit(func, *args, **kwargs)
        except BaseException:
            limiter.leave(None)
            raise
        # The slot frees when the function returns, not when the request gives up on it.
        future.add_done_callback(lambda done: limiter.leave(
            None if done.cancelled() else time.perf_counter() - started))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:  # a timeout: a call still waiting for a worker never runs
            pool.abandon(future)
            raise

    async def run_direct(args: tuple, kwargs: dict) -> Any:
        try:
            return await func(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise CallFailed.from_exit(exc) from exc

    if is_async:
        run = run_direct if limiter.limit is None else run_async
    else:
        run = run_pooled
    if timeout is None:
        return run

    async def run_with_timeout(args: tuple, kwargs: dict) -> Any:
        try:
            return await asyncio.wait_for(run(args, kwargs), timeout)
        except asyncio.TimeoutError:
            raise TimedOut(name, timeout) from None

    return run_with_timeout


def route_call(
    spec: RouteSpec,
    settings: Settings,
    pools: dict[str, WorkerPool],
    metrics: Metrics | None = None,
) -> Call:
    """The call for one route: its pool, its concurrency limit and queue, its timeout."""
    pool, limiter, timeout = route_limits(spec, settings, pools, metrics)
    return make_call(
        spec.name, spec.func, is_async=spec.is_async, pool=pool, limiter=limiter, timeout=timeout
    )


def route_limits(
    spec: RouteSpec,
    settings: Settings,
    pools: dict[str, WorkerPool],
    metrics: Metrics | None = None,
) -> tuple[WorkerPool | None, RouteLimiter, float | None]:
    """One route's pool (None for ``async def``), concurrency limiter and timeout."""
    options = spec.options
    pool = None if spec.is_async else pools[options.executor]
    limit = options.max_concurrency or settings.max_concurrency
    if limit is None and pool is not None:
        limit = pool.max_workers  # more would only queue inside the pool, out of sight
    limiter = RouteLimiter(spec.name, limit, settings.max_queue)
    if metrics is not None:
        limiter.on_queue = metrics.queue_hook(spec.path)
    return pool, limiter, options.timeout or settings.timeout


def openapi_responses(spec: RouteSpec, settings: Settings) -> dict[int | str, dict[str, Any]]:
    """The limit answers a route can give, for its OpenAPI document."""
    responses: dict[int | str, dict[str, Any]] = {}
    if spec.body_model is not None and settings.max_body_size:
        responses[413] = {"description": "Request body too large"}
    if not spec.is_async or spec.options.max_concurrency or settings.max_concurrency:
        responses[503] = {"description": "Too many requests waiting; see Retry-After"}
    if spec.options.timeout or settings.timeout:
        responses[504] = {"description": "The call did not finish within the route's timeout"}
    return responses
