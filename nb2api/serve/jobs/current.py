"""The job a notebook function runs for, and what it may ask of it: ``nb2api.progress`` and
``nb2api.cancelled``.

The runner sets :data:`current_job` in the task that calls the function; the worker pool copies
the task's context into its thread, so a plain ``def`` sees it there. A ``#| executor: process``
function runs in a forked child: :mod:`..processes` sets a :class:`ChildJob` there, which sends
progress back over a queue. Outside a job both functions do nothing and cost a lookup.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["ChildJob", "JobContext", "cancelled", "current_job", "progress"]

RECENT_REPORTS = 64  # how many of a worker process's reports come back with its result


class JobContext:
    """One running job, seen from the thread or task that runs its function. An MCP tool call
    that reports progress runs with one too: ``report`` is what reaches its client."""

    def __init__(self, job_id: str, report: Callable[[JobContext], None]) -> None:
        self.job_id = job_id
        self.fraction: float | None = None
        self.message = ""
        self.items = 0  # a streamed job: items produced so far
        self._report = report  # called on any thread; the runner hands it to its loop
        self._cancelled = threading.Event()
        self._seq = 0
        self._ordered = threading.Lock()  # a worker's reports come from two threads at its end
        self.on_cancel: list[Callable[[], None]] = []  # a process pool stops its child here

    def progress(self, fraction: float | None, message: str = "", seq: int | None = None
                 ) -> None:
        """A report; ``seq`` numbers those of a worker process, which may arrive late and out
        of order with its result: an older one than the last is dropped."""
        with self._ordered:
            if seq is not None:
                if seq <= self._seq:
                    return
                self._seq = seq
            self.fraction = fraction
            self.message = message
            self._report(self)

    def cancel(self) -> None:
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        for stop in self.on_cancel:
            stop()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class ChildJob:
    """A job seen from a worker process: progress goes to the server over ``send``."""

    def __init__(self, job_id: str, send: Callable[[Any], None]) -> None:
        self.job_id = job_id
        self._send = send
        self.cancelled = False  # the server stops the process instead
        self.last: tuple[int, float | None, str] | None = None
        # The latest reports, returned with the result: the queue may deliver them after it.
        self.recent: deque[tuple[int, float | None, str]] = deque(maxlen=RECENT_REPORTS)

    def progress(self, fraction: float | None, message: str = "") -> None:
        seq = self.last[0] + 1 if self.last else 1
        self.last = (seq, fraction, message)
        self.recent.append(self.last)
        self._send((self.job_id, *self.last))


current_job: ContextVar[JobContext | ChildJob | None] = ContextVar("nb2api_job", default=None)


def progress(fraction: float | None, message: str = "") -> None:
    """Report how far the job running this function is: ``fraction`` from 0 to 1 (or None when
    unknown) and a short ``message``. ``GET /jobs/{id}`` and its events show the latest report.
    In an MCP tool call whose client asked for progress (a ``progressToken``), each report is
    sent to the client as a progress notification.

    Elsewhere (a plain request, a Jupyter kernel) it does nothing.
    """
    job = current_job.get()
    if job is None:
        return
    if fraction is not None:
        fraction = float(fraction)
        if not math.isfinite(fraction):
            raise ValueError(f"progress fraction must be a number from 0 to 1, not {fraction}")
        fraction = min(1.0, max(0.0, fraction))
    job.progress(fraction, str(message)[:500])


def cancelled() -> bool:
    """True once the job running this function was cancelled (``DELETE /jobs/{id}``): a long
    loop may check it and return early; its result is discarded. False outside a job.

    On ``#| executor: process`` the worker process is stopped instead, within 2 s.
    """
    job = current_job.get()
    return job is not None and job.cancelled
