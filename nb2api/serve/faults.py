"""Calls that end in something other than an exception: ``sys.exit()``, Ctrl-C, a dead worker.

``SystemExit`` and ``KeyboardInterrupt`` are not ``Exception``s: raised by notebook code they would
pass every ``except Exception`` on their way and, in an asyncio task, stop the event loop. So they
are turned into :class:`CallFailed` where the notebook function is called (thread, process or
event loop), and the route answers the usual 500 with an ``error_id``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..types.errors import CallFailed

__all__ = ["CallFailed", "contain"]


def contain(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with ``SystemExit`` and ``KeyboardInterrupt`` turned into :class:`CallFailed`."""

    @functools.wraps(func)
    def contained(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise CallFailed.from_exit(exc) from exc

    return contained
