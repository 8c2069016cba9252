"""A process pool for pure-Python CPU-bound route functions (``#| executor: process``).

Threads share one GIL, so pure-Python work on the thread pool runs one call at a time. Processes
don't; but re-running a notebook's setup in each would be slow and could differ. So the workers are
forked (``multiprocessing`` fork context) after the setup and api cells ran: each child starts with
the loaded notebook in memory, and a call sends only the function's name and its arguments.
Arguments and results cross the process boundary by pickle.

Each worker is a slot of its own: a one-process ``ProcessPoolExecutor`` that is given a call only
when it is idle, while further calls wait here. ``concurrent.futures`` fails every call of an
executor when one of its processes dies; with one process per executor, a worker that dies (killed,
out of memory, ``os._exit``, a crash in C code) fails only the call it was running, and its slot is
forked anew at once. Workers die with the server: they ask Linux for SIGKILL when their parent goes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .faults import CallFailed
from .jobs.current import ChildJob, JobContext, current_job
from .pools import WorkerPool

logger = logging.getLogger("nb2api")

# name -> function, filled in before the fork so that every child has it.
_FUNCTIONS: dict[str, Callable[..., Any]] = {}
# pool id -> the queue its workers send job progress on (nb2api.progress), made before the fork.
_PROGRESS: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1
_EXITCODE_WAIT = 1.0  # seconds to learn a dead worker's exit code, for the 500's detail


def fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _child_init(parent: int) -> None:
    # The server process handles Ctrl-C and SIGTERM and then ends the pool; a child that also
    # reacted would print a KeyboardInterrupt traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this worker when the server process ends, however it ends (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the server ended before prctl took effect
        os._exit(1)


class _JobResult:
    """A job call's result with its latest progress reports, which the queue may deliver after
    the result: the job then still gets them, in order, before the result."""

    def __init__(self, value: Any, reports: list[tuple[int, float | None, str]]) -> None:
        self.value = value
        self.reports = reports


def _call(key: str, args: tuple, kwargs: dict, job_id: str | None = None) -> Any:
    job = None
    if job_id is not None:  # nb2api.progress() in the function reports to the server
        job = ChildJob(job_id, _PROGRESS[key.partition(":")[0]].put)
        current_job.set(job)
    try:
        value = _FUNCTIONS[key](*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise CallFailed.from_exit(exc) from None
    finally:
        if job is not None:
            current_job.set(None)
    return value if job is None or job.last is None else _JobResult(value, list(job.recent))


def _noop() -> int:
    return os.getpid()


class _Slot:
    """One forked worker in an executor of its own; ``busy`` while it runs a call."""

    def __init__(self) -> None:
        self.executor = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork"), initializer=_child_init,
            initargs=(os.getpid(),),
        )
        self.busy = True  # until the fork answers
        self.future: asyncio.Future[Any] | None = None  # the call it runs
        self.job_id: str | None = None  # the job that call is for
        self.started: Future[int] = self.executor.submit(_noop)  # forks now, on this thread
        self.process = next(iter(self.executor._processes.values()))  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.process.is_alive():  # a call still running is abandoned with the server
            self.process.terminate()


class ProcessPool(WorkerPool):
    """``max_workers`` forked processes; :meth:`start` forks them (after the notebook loaded)."""

    kind = "process"

    def __init__(self, functions: dict[str, Callable[..., Any]], max_workers: int | None = None):
        super().__init__(max_workers or os.cpu_count() or 1)
        self._keys = {id(func): f"{id(self)}:{name}" for name, func in functions.items()}
        for func in functions.values():
            _FUNCTIONS[self._keys[id(func)]] = func
        self._slots: list[_Slot] = []
        self._waiting: deque[tuple[asyncio.Future[Any], str, tuple, dict, str | None]] = deque()
        self._jobs: dict[str, JobContext] = {}  # job id -> the job a call runs for
        self._progress = multiprocessing.get_context("fork").SimpleQueue()
        _PROGRESS[str(id(self))] = self._progress
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._replacing = 0  # slots forked anew after a worker died, not answering yet

    @property
    def broken(self) -> bool:
        """A worker died and its replacement is not ready yet (``/readyz`` says so)."""
        return self._replacing > 0

    def start(self) -> None:
        """Fork every worker now, so none forks later from a busy server."""
        if not fork_available():
            raise RuntimeError("'#| executor: process' needs the fork start method (Linux, macOS)")
        slots = [_Slot() for _ in range(self.max_workers)]
        for slot in slots:
            slot.started.result()
            slot.busy = False
        self._slots = slots
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_progress, daemon=True,
                                            name="nb2api-job-progress")
            self._reader.start()

    def _read_progress(self) -> None:
        """Hand the workers' progress reports to their jobs (on this thread, until shutdown)."""
        while True:
            report = self._progress.get()
            if report is None:
                return
            job_id, seq, fraction, message = report
            job = self._jobs.get(job_id)
            if job is not None:
                job.progress(fraction, message, seq)

    def submit(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Start ``func`` on an idle worker, or queue it until one is idle."""
        self._loop = asyncio.get_running_loop()
        if not self._slots:
            self.start()
        future = self._loop.create_future()
        job = current_job.get()
        job_id = None
        if isinstance(job, JobContext):  # a job's call: progress comes back, cancel stops it
            job_id = job.job_id
            self._jobs[job_id] = job
            job.on_cancel.append(lambda: self._stop(future))
            future.add_done_callback(lambda _: self._jobs.pop(job_id, None))
        self._waiting.append((future, self._keys[id(func)], args, kwargs, job_id))
        self.pending += 1
        if self.pending == self.max_workers:
            self.saturated_since = time.monotonic()
        self._changed()
        future.add_done_callback(self._returned)
        self._dispatch()
        return future

    def abandon(self, future: asyncio.Future) -> None:
        """Drop the call of ``future`` if it still waits for a worker."""
        if any(waiting is future for waiting, *_ in self._waiting):
            future.cancel()  # _dispatch skips it

    def _stop(self, future: asyncio.Future) -> None:
        """Stop the call of ``future`` (a cancelled job): dropped while it waits, its worker
        ended (SIGTERM, and forked anew) while it runs."""
        if future.done():
            return
        self.abandon(future)
        for slot in self._slots:
            if slot.future is future and slot.process.is_alive():
                slot.process.terminate()

    def _dispatch(self) -> None:
        for index, slot in enumerate(self._slots):
            if not self._waiting:
                return
            if slot.busy:
                continue
            if not slot.process.is_alive():  # died while idle: nothing to fail, replace it
                self._lost(index, slot, None)
                continue
            future, key, args, kwargs, job_id = self._waiting.popleft()
            while future.done():  # given up on before it started
                if not self._waiting:
                    return
                future, key, args, kwargs, job_id = self._waiting.popleft()
            try:
                call = slot.executor.submit(_call, key, args, kwargs, job_id)
            except BrokenProcessPool:  # it died just now: the call waits for another worker
                self._waiting.appendleft((future, key, args, kwargs, job_id))
                self._lost(index, slot, None)
                continue
            slot.busy = True
            slot.future = future
            slot.job_id = job_id
            call.add_done_callback(self._threadsafe(self._finished, index, slot, future))

    def _threadsafe(self, method: Callable[..., None], *args: Any) -> Callable[[Future], None]:
        loop = self._loop
        assert loop is not None

        def callback(done: Future) -> None:  # on the executor's thread
            if not loop.is_closed():
                loop.call_soon_threadsafe(method, *args, done)

        return callback

    def _finished(self, index: int, slot: _Slot, future: asyncio.Future, done: Future) -> None:
        exc = None if done.cancelled() else done.exception()
        if isinstance(exc, BrokenProcessPool):
            self._lost(index, slot, future)
            return
        slot.busy = False
        slot.future = None
        job_id, slot.job_id = slot.job_id, None
        if not future.done():
            if exc is not None:
                future.set_exception(exc)
            else:
                result = done.result()
                if isinstance(result, _JobResult):
                    job = self._jobs.get(job_id or "")
                    if job is not None:  # those the queue has not delivered yet
                        for seq, fraction, message in result.reports:
                            job.progress(fraction, message, seq)
                    result = result.value
                future.set_result(result)
        self._dispatch()

    def _lost(self, index: int, slot: _Slot, future: asyncio.Future | None) -> None:
        """The worker in ``slot`` died: fail its one call, fork its replacement now."""
        logger.error("a process-pool worker (pid %s) died; forking a new one", slot.process.pid)
        slot.stop()
        if self._slots and self._slots[index] is slot:
            fresh = _Slot()
            self._slots[index] = fresh
            self._replacing += 1
            fresh.started.add_done_callback(self._threadsafe(self._ready, index, fresh))
        if future is not None:
            self._report_exit(slot, future, _EXITCODE_WAIT)

    def _report_exit(self, slot: _Slot, future: asyncio.Future, patience: float) -> None:
        # The executor's own thread reaps the process, a moment after it fails the call.
        code = slot.process.exitcode
        if code is None and patience > 0 and self._loop is not None:
            self._loop.call_later(0.02, self._report_exit, slot, future, patience - 0.02)
            return
        if not future.done():
            future.set_exception(CallFailed.worker_lost(code))

    def _ready(self, index: int, slot: _Slot, started: Future) -> None:
        self._replacing -= 1
        if self._slots and self._slots[index] is slot:
            if started.cancelled() or started.exception() is not None:  # died at once: again
                self._lost(index, slot, None)
                return
            slot.busy = False
            self._dispatch()

    def shutdown(self) -> None:
        slots, self._slots = self._slots, []
        for slot in slots:
            slot.stop()
        for key in self._keys.values():
            _FUNCTIONS.pop(key, None)
        if self._reader is not None:
            self._progress.put(None)
            self._reader = None
        _PROGRESS.pop(str(id(self)), None)
