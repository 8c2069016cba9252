"""A process pool for pure-Python CPU-bound route functions (``#| executor: process``).

Threads share one GIL, so pure-Python work on the thread pool runs one call at a time. Processes
don't; but re-running a notebook's setup in each would be slow and could differ. So the workers are
forked (``multiprocessing`` fork context) after the setup and api cells ran: each child starts with
the loaded notebook in memory, and a call sends only the function's name and its arguments.
Arguments and results cross the process boundary by pickle.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from .pools import WorkerPool

logger = logging.getLogger("nb2api")

# name -> function, filled in before the fork so that every child has it.
_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _child_init() -> None:
    # The server process handles Ctrl-C and SIGTERM and then ends the pool; a child that also
    # reacted would print a KeyboardInterrupt traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _call(key: str, args: tuple, kwargs: dict) -> Any:
    return _FUNCTIONS[key](*args, **kwargs)


def _noop() -> int:
    return os.getpid()


class ProcessPool(WorkerPool):
    """``max_workers`` forked processes; :meth:`start` forks them (after the notebook loaded)."""

    kind = "process"

    def __init__(self, functions: dict[str, Callable[..., Any]], max_workers: int | None = None):
        super().__init__(max_workers or os.cpu_count() or 1)
        self._keys = {id(func): f"{id(self)}:{name}" for name, func in functions.items()}
        for func in functions.values():
            _FUNCTIONS[self._keys[id(func)]] = func
        self.broken = False

    def start(self) -> None:
        """Fork every worker now, so none forks later from a busy server."""
        if not fork_available():
            raise RuntimeError("'#| executor: process' needs the fork start method (Linux, macOS)")
        executor = ProcessPoolExecutor(
            self.max_workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_child_init,
        )
        futures = [executor.submit(_noop) for _ in range(self.max_workers)]
        for future in futures:
            future.result()
        self._executor = executor
        self.broken = False

    def _pool(self) -> Executor:
        if self._executor is None:
            self.start()
        assert self._executor is not None
        return self._executor

    def _prepare(self, func: Callable[..., Any], args: tuple, kwargs: dict) -> Callable[[], Any]:
        return functools.partial(_call, self._keys[id(func)], args, kwargs)

    def _returned(self, future) -> None:
        super()._returned(future)
        exc = None if future.cancelled() else future.exception()
        if exc is not None and type(exc).__name__ == "BrokenProcessPool" and not self.broken:
            # A worker died (killed, out of memory, a crash in C code): fork a fresh pool for the
            # next requests; the calls that were running on the broken one fail with a 500.
            self.broken = True
            logger.error("a process-pool worker died; forking a new pool")
            self._terminate()

    def _terminate(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list(getattr(executor, "_processes", {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # calls still running are abandoned with the server
            if process.is_alive():
                process.terminate()

    def shutdown(self) -> None:
        self._terminate()
        for key in self._keys.values():
            _FUNCTIONS.pop(key, None)
