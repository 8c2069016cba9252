"""Calls that end in something other than an exception: ``sys.exit()``, Ctrl-C, a dead worker.

``SystemExit`` and ``KeyboardInterrupt`` are not ``Exception``s: raised by notebook code they would
pass every ``except Exception`` on their way and, in an asyncio task, stop the event loop. So they
are turned into :class:`CallFailed` where the notebook function is called (thread, process or
event loop), and the route answers the usual 500 with an ``error_id``.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Awaitable, Callable
from typing import Any


class CallFailed(Exception):
    """A call that failed without an ordinary exception; the 500's detail is
    ``"<route>() <what>: <text>"``. Picklable: it crosses back from a worker process."""

    def __init__(self, what: str, text: str = "") -> None:
        super().__init__(what, text)
        self.what = what
        self.text = text

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_exit(cls, exc: BaseException) -> CallFailed:
        text = str(exc).strip()
        failed = cls(f"raised {type(exc).__name__}", text)
        failed.__cause__ = exc
        return failed

    @classmethod
    def worker_lost(cls, exitcode: int | None) -> CallFailed:
        if exitcode is None:
            how = "ended its worker process"
        elif exitcode < 0:
            try:
                name = signal.Signals(-exitcode).name
            except ValueError:
                name = f"signal {-exitcode}"
            how = f"ended its worker process (killed by {name})"
        else:
            how = f"ended its worker process (exit code {exitcode})"
        return cls(how)


def contain(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with ``SystemExit`` and ``KeyboardInterrupt`` turned into :class:`CallFailed`."""

    @functools.wraps(func)
    def contained(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise CallFailed.from_exit(exc) from exc

    return contained


def contain_async(func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The same for an ``async def`` function, before the exception reaches the event loop."""

    @functools.wraps(func)
    async def contained(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise CallFailed.from_exit(exc) from exc

    return contained
