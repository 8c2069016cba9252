"""nb2api's own bounded worker pool for plain ``def`` route functions.

A plain function may hold the CPU for a long time; it runs on one of ``max_workers`` threads that
belong to this pool alone, so the event loop (health checks, ``async def`` routes) stays free and
no other library's use of the default pool competes with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .faults import contain

T = TypeVar("T")


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class WorkerPool:
    """A pool of fixed size; :meth:`submit` starts a call, :meth:`run` awaits one.

    ``pending`` counts calls submitted and not yet returned (on the event loop's thread), so the
    pool knows how many workers are busy and how many calls queue, for metrics and ``/readyz``.
    """

    kind = "thread"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or default_workers()
        self._executor: Executor | None = None
        self.pending = 0
        self.last_return = time.monotonic()  # when a call last returned (or the pool started)
        self.saturated_since = 0.0  # when every worker last became busy
        self.on_change: Callable[[WorkerPool], None] | None = None  # metrics hook
        self._queued: dict[asyncio.Future, Future] = {}  # calls not yet returned

    @property
    def busy(self) -> int:
        return min(self.pending, self.max_workers)

    @property
    def queued(self) -> int:
        return max(0, self.pending - self.max_workers)

    def _pool(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.max_workers, thread_name_prefix="nb2api-worker"
            )
        return self._executor

    def _prepare(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Callable[[], Any]:
        # Notebook code sees the request's context variables (the request id in its logs).
        # sys.exit() in it fails the call, not the server (see faults).
        return functools.partial(contextvars.copy_context().run, contain(func), *args, **kwargs)

    def submit(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Start ``func(*args, **kwargs)`` on a worker; the future resolves when it returns.

        Cancelling the returned future does not stop a call that has started: the worker stays
        busy until the function returns, and ``pending`` says so.
        """
        loop = asyncio.get_running_loop()
        call = self._pool().submit(self._prepare(func, args, kwargs))
        future = asyncio.wrap_future(call, loop=loop)
        self._queued[future] = call
        self.pending += 1
        if self.pending == self.max_workers:
            self.saturated_since = time.monotonic()
        self._changed()
        future.add_done_callback(self._returned)
        return future

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Shielded: a client that goes away must not make a running call look finished.
        return await asyncio.shield(self.submit(func, *args, **kwargs))

    def abandon(self, future: asyncio.Future) -> None:
        """The caller no longer waits for ``future``: drop its call if no worker has started it
        (a running call cannot be stopped, and runs on to its end)."""
        call = self._queued.get(future)
        if call is not None:
            call.cancel()  # only succeeds while the call waits for a worker

    def _returned(self, future: asyncio.Future) -> None:
        self._queued.pop(future, None)
        self.pending -= 1
        self.last_return = time.monotonic()
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def wedged_for(self) -> float:
        """Seconds every worker has been busy without any call returning (0 when not wedged)."""
        if self.pending < self.max_workers:
            return 0.0
        return time.monotonic() - max(self.last_return, self.saturated_since)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
