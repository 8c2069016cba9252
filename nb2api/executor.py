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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class WorkerPool:
    """A thread pool of fixed size; :meth:`run` awaits a function call on it."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or default_workers()
        self._executor: ThreadPoolExecutor | None = None
        self.busy = 0  # calls running or waiting for a thread

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.max_workers, thread_name_prefix="nb2api-worker"
            )
        return self._executor

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
        self.busy += 1
        try:
            return await loop.run_in_executor(self._pool(), call)
        finally:
            self.busy -= 1

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
