"""Run jobs: submit, claim, run, cancel, recover, expire. One :class:`Jobs` per app (process).

Every server process of a service runs this loop on its event loop. Each turn it claims queued
jobs from the shared SQLite file while it has free slots (one per worker of its thread pool),
passes on cancellations made by other processes, writes progress, beats the heartbeat of its
running jobs, and now and then takes back the jobs of a process that died (``kill -9``, a crash):
those with retries left (``#| job: retries=N``) are queued again, the others fail with
"interrupted by a restart". A submit wakes the loop at once; otherwise it looks every
:data:`POLL` seconds, so a job submitted to one process may run in another.

A job runs exactly as the synchronous request would: the route's ``answer`` (the endpoint's own
call and encoding, within the route's pool and concurrency limit) gives the ``Response``, whose
status, media type and bytes are stored as the result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import secrets
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ...routes import RouteSpec
from ...settings import Settings
from ..context import current_scope
from .current import JobContext, current_job
from .store import TERMINAL, Claimed, JobStore, Result, iso
from .webhooks import Webhooks

if TYPE_CHECKING:
    from ..tracing import Tracing

logger = logging.getLogger("nb2api")

Answer = Callable[[tuple, dict], Awaitable[Response]]

POLL = 0.25  # seconds between looks at the shared file for work and cancellations
BEAT = 2.0  # seconds between heartbeats of a process's running jobs
STALE = 30.0  # a process whose heartbeat is older than this is taken for dead
SWEEP = 5.0  # seconds between looks for dead processes' jobs and expired jobs
INTERRUPTED = "interrupted by a restart"
_JSON = "application/json"


def default_db(notebook: Path) -> Path:
    """``.nb2api/jobs.db`` beside the notebook."""
    return notebook.resolve().parent / ".nb2api" / "jobs.db"


def asked_async() -> bool:
    """Whether the request being answered carries ``Prefer: respond-async`` (RFC 7240)."""
    scope = current_scope.get()
    if scope is None:
        return False
    for name, value in scope["headers"]:
        if name == b"prefer":
            for preference in value.split(b","):
                token = preference.split(b";", 1)[0].split(b"=", 1)[0].strip().lower()
                if token == b"respond-async":
                    return True
    return False


class Jobs:
    """The jobs of one app: the endpoint submits, the job endpoints read and cancel."""

    def __init__(self, settings: Settings, db_path: Path, notebook: str, slots: int,
                 registry: Any = None, metrics_on: bool = False) -> None:
        self.settings = settings
        self.path = db_path
        self.notebook = notebook  # its jobs, in a file the notebooks of a folder may share
        self.slots = max(1, slots)
        self.owner = _process_owner()
        self.answers: dict[str, Answer] = {}
        self.specs: dict[str, RouteSpec] = {}
        self.active: dict[str, JobContext] = {}
        self.webhooks = Webhooks(settings.webhook_allow, settings.signing_secret(),
                                 self._record_delivery)
        self._store: JobStore | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Future[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counted: Any = None
        self._durations: Any = None
        self.tracing: Tracing | None = None  # set by the runtime when tracing is on
        if metrics_on:
            self._counted, self._durations = job_metrics(registry)

    # -- wiring ----------------------------------------------------------------------------

    def register(self, spec: RouteSpec, answer: Answer) -> None:
        """``answer(args, kwargs)`` is what the route's synchronous request answers."""
        self.answers[spec.name] = answer
        self.specs[spec.name] = spec

    def wanted(self, spec: RouteSpec) -> bool:
        """Whether this request to ``spec``'s route becomes a job."""
        return spec.options.job or asked_async()

    def start(self) -> None:
        """Start claiming and running jobs on this event loop. (An app whose lifespan runs on
        two loops at once, as test clients do, runs one job loop on each; the last one started
        hears of submits and progress.)"""
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        self._changed = self._loop.create_future()
        self._loops.append(self._loop.create_task(self._run_loop(wake), name="nb2api-jobs"))

    def stop(self) -> None:
        """Stop the loop. The jobs still running are interrupted as by a restart: queued again
        with retries left, else failed (a function that runs on has its result discarded)."""
        self._closed = True
        for ctx in list(self.active.values()):
            ctx.on_cancel.clear()  # the pools stop with the server; nothing to stop one by one
        for task in (*self._loops, *self._tasks):
            task.cancel()
        self._loops.clear()
        if self._store is not None:
            if self.active:
                try:
                    self._take_back(self._store, self.owner, list(self.active))
                except sqlite3.Error as exc:
                    logger.error("jobs: %s (%s)", exc, self.path)
            self._store.close()
            self._store = None

    def store(self, create: bool = False) -> JobStore | None:
        """The open store; opened now if its file exists (or ``create``)."""
        if self._closed:
            return None
        if self._store is None and (create or self.path.exists()):
            self._store = JobStore(self.path, self.notebook)
        return self._store

    # -- submit ----------------------------------------------------------------------------

    async def submit(self, spec: RouteSpec, args: tuple, kwargs: dict) -> Response:
        """Queue a call of ``spec``'s route; the 202 that says where to follow it."""
        from ..context import request_headers

        webhook = self.webhooks.checked(request_headers().get("webhook-url"))
        try:
            arguments = pickle.dumps((args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an upload's open file, a lock, a generator
            raise HTTPException(
                422, f"{spec.name}() cannot run as a job: its arguments cannot be stored "
                f"({type(exc).__name__}: {exc}); call it without 'Prefer: respond-async'",
            ) from None
        try:
            store = self.store(create=True)
            if store is None:
                raise OSError("the server is stopping")
            job_id = secrets.token_urlsafe(18)  # 144 random bits
            traceparent = self.tracing.traceparent() if self.tracing is not None else None
            created = store.add(job_id, spec.name, arguments, retries=spec.options.retries,
                                webhook=webhook, max_active=self.settings.max_jobs,
                                traceparent=traceparent)
        except (sqlite3.Error, OSError) as exc:
            logger.error("cannot queue a job in %s: %s", self.path, exc)
            raise HTTPException(503, f"jobs are unavailable: cannot write {self.path.name}: "
                                     f"{exc}", headers={"Retry-After": "5"}) from None
        if created is None:
            raise HTTPException(
                503, f"too many jobs queued or running (--max-jobs {self.settings.max_jobs}); "
                "retry later", headers={"Retry-After": "5"},
            )
        if self.tracing is not None:
            self.tracing.job_submitted(job_id)
        self._count(spec.name, "queued")
        self._wake_up()
        self._notify()
        body = {"id": job_id, "status": "queued", "route": spec.name, "created": iso(created)}
        scope = current_scope.get()
        root = scope.get("root_path", "") if scope is not None else ""
        headers = {"Location": f"{root}/jobs/{job_id}"}
        if not spec.options.job or asked_async():
            headers["Preference-Applied"] = "respond-async"
        return Response(json.dumps(body).encode(), 202, headers=headers, media_type=_JSON)

    # -- reads and cancel ------------------------------------------------------------------

    def document(self, job_id: str) -> dict[str, Any] | None:
        store = self.store()
        return store.document(job_id) if store is not None else None

    def cancel(self, job_id: str) -> tuple[str | None, dict[str, Any] | None]:
        """Cancel ``job_id``: ``(status it had, its document now)``; ``(None, None)`` when
        there is no such job."""
        store = self.store()
        if store is None:
            return None, None
        before = store.cancel(job_id)
        if before is None:
            return None, None
        document = store.document(job_id)
        if before not in TERMINAL:
            ctx = self.active.get(job_id)
            if ctx is not None:
                ctx.cancel()
            route = document["route"] if document else "?"
            self._count(route, "cancelled")
            self._notify()
            if document is not None and document.get("webhook"):
                self._spawn(self.webhooks.deliver(job_id, document["webhook"]["url"],
                                                  lambda: self.document(job_id)))
        return before, document

    async def changed(self, timeout: float) -> None:
        """Wait until a job of this process changes, or ``timeout`` (others' changes)."""
        if self._changed is None or self._changed.get_loop() is not asyncio.get_running_loop():
            await asyncio.sleep(timeout)  # not started here: look again later
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)
        except asyncio.TimeoutError:
            pass

    def _notify(self) -> None:
        loop = self._loop
        if self._changed is None or loop is None or loop.is_closed():
            return
        if _running_loop() is not loop:
            loop.call_soon_threadsafe(self._notify)
            return
        done, self._changed = self._changed, loop.create_future()
        done.set_result(None)

    def _wake_up(self) -> None:
        """Wake the job loop (a job was queued, or a slot is free)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        if _running_loop() is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    # -- the loop --------------------------------------------------------------------------

    async def _run_loop(self, wake: asyncio.Event) -> None:
        next_sweep = next_look = next_beat = 0.0
        while True:
            wake.clear()
            try:
                store = self.store()
                if store is not None:
                    now = time.monotonic()
                    if now >= next_sweep:
                        next_sweep = now + SWEEP
                        self._recover(store)
                        store.expire(time.time() - self.settings.job_ttl)
                    if self.active and now >= next_look:
                        next_look = now + POLL
                        self._check_cancelled(store)
                    if self.active and now >= next_beat:
                        next_beat = now + BEAT
                        store.beat(self.owner)
                    free = self.slots - len(self.active)
                    if free > 0:
                        for claimed in store.claim(self.owner, free):
                            self._start(claimed)
            except sqlite3.Error as exc:
                logger.error("jobs: %s (%s); trying again", exc, self.path)
            try:
                await asyncio.wait_for(wake.wait(), POLL)
            except asyncio.TimeoutError:
                pass

    def _start(self, claimed: Claimed) -> None:
        ctx = JobContext(claimed.id, self._reported)
        self.active[claimed.id] = ctx
        self._count(claimed.route, "running")
        self._notify()
        self._spawn(self._run(claimed, ctx))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, claimed: Claimed, ctx: JobContext) -> None:
        started = time.monotonic()
        current_job.set(ctx)  # this task's own context, copied to the worker thread
        span = None
        if self.tracing is not None:
            spec = self.specs.get(claimed.route)
            span = self.tracing.job(claimed.route, spec.path if spec else f"/{claimed.route}",
                                    claimed.id, claimed.traceparent, claimed.attempts)
        try:
            result, error = await self._answer(claimed)
        except BaseException:
            if span is not None:
                span.end("interrupted", None)  # the server stops
            raise
        finally:
            self.active.pop(claimed.id, None)
            self._wake_up()  # a slot is free
        status = "succeeded" if error is None else "failed"
        store = self.store()
        if store is not None and (ctx.fraction is not None or ctx.message):
            store.set_progress(claimed.id, self.owner, ctx.fraction, ctx.message)  # the last
        finished = store is not None and store.finish(claimed.id, self.owner, status, result,
                                                      error)
        if span is not None:
            span.end(status if finished else "cancelled", error)
        if not finished:
            return  # cancelled (or taken back) meanwhile: the late result is discarded
        self._count(claimed.route, status, time.monotonic() - started)
        self._notify()
        if claimed.webhook:
            await self.webhooks.deliver(claimed.id, claimed.webhook,
                                        lambda: self.document(claimed.id))

    async def _answer(self, claimed: Claimed) -> tuple[Result, dict[str, str] | None]:
        answer = self.answers.get(claimed.route)
        if answer is None:
            return _failure(500, f"the route {claimed.route}() is no longer served")
        try:
            args, kwargs = pickle.loads(claimed.arguments)
            response = await answer(args, kwargs)
        except HTTPException as exc:  # answered as FastAPI answers it
            body = JSONResponse({"detail": exc.detail}, exc.status_code).body
            result = Result(exc.status_code, _JSON, bytes(body))
            return result, _error_of(result.body)
        except Exception as exc:  # noqa: BLE001 - the arguments no longer load, say
            logger.exception("job %s of %s() failed", claimed.id, claimed.route)
            return _failure(500, f"{claimed.route}() job failed: {type(exc).__name__}: {exc}")
        body = bytes(response.body)
        media_type = response.media_type or _JSON
        if len(body) > self.settings.max_result_size:
            return _failure(500, f"{claimed.route}() returned {len(body)} bytes, more than "
                                 f"--max-result-size {self.settings.max_result_size}")
        result = Result(response.status_code, media_type, body)
        if response.status_code < 400:
            return result, None
        return result, _error_of(body)

    def _check_cancelled(self, store: JobStore) -> None:
        """Stop the jobs of this process that another process cancelled."""
        for job_id, (status, owner) in store.statuses(list(self.active)).items():
            if status != "running" or owner != self.owner:
                ctx = self.active.get(job_id)
                if ctx is not None:
                    ctx.cancel()

    def _recover(self, store: JobStore) -> None:
        """Take back the running jobs of processes that died."""
        for owner, beat in store.running_owners():
            if owner == self.owner or _alive(owner, beat):
                continue
            self._take_back(store, owner)
            self._notify()
            self._wake_up()  # jobs queued again

    def _take_back(self, store: JobStore, owner: str, only: list[str] | None = None) -> None:
        for job_id, route, webhook in store.orphaned(owner, only):
            result, error = _failure(500, INTERRUPTED)
            if store.interrupted(job_id, owner, result, error):
                logger.warning("job %s of %s() was %s [error_id=%s]", job_id, route,
                               INTERRUPTED, error["error_id"])
                self._count(route, "failed")
                if webhook and not self._closed:
                    self._spawn(self.webhooks.deliver(job_id, webhook,
                                                      lambda j=job_id: self.document(j)))

    def _reported(self, ctx: JobContext) -> None:
        """Progress of a job, from any thread: written on the loop, once per turn."""
        if getattr(ctx, "_pending", False) or self._loop is None:
            return
        ctx._pending = True  # type: ignore[attr-defined]
        try:
            self._loop.call_soon_threadsafe(self._write_progress, ctx)
        except RuntimeError:  # the loop closed: the server is stopping
            pass

    def _write_progress(self, ctx: JobContext) -> None:
        ctx._pending = False  # type: ignore[attr-defined]
        store = self.store()
        if store is not None and ctx.job_id in self.active:
            try:
                store.set_progress(ctx.job_id, self.owner, ctx.fraction, ctx.message)
            except sqlite3.Error as exc:
                logger.warning("jobs: cannot write progress: %s", exc)
            self._notify()

    def _record_delivery(self, job_id: str, attempt: dict[str, Any]) -> None:
        store = self.store()
        if store is not None:
            store.record_delivery(job_id, attempt)
            self._notify()

    def _count(self, route: str, status: str, seconds: float | None = None) -> None:
        if self._counted is None:
            return
        self._counted.labels(route, status).inc()
        if seconds is not None:
            self._durations.labels(route, status).observe(seconds)


def _failure(status: int, detail: str) -> tuple[Result, dict[str, str]]:
    error = {"detail": detail, "error_id": uuid.uuid4().hex[:12]}
    return Result(status, _JSON, json.dumps(error).encode()), error


def _error_of(body: bytes) -> dict[str, str]:
    """``{detail, error_id}`` of an error answer (a 500 has both; an HTTPException a detail)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    detail = data.get("detail") if isinstance(data, dict) else None
    error_id = data.get("error_id") if isinstance(data, dict) else None
    return {"detail": detail if isinstance(detail, str) else json.dumps(detail),
            "error_id": error_id if isinstance(error_id, str) else uuid.uuid4().hex[:12]}


_OWNERS: dict[int, str] = {}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _process_owner() -> str:
    """``host:pid:token`` of this process (the token tells it from an earlier process that had
    its id, as a container's server has after a restart); every app of the process shares it."""
    pid = os.getpid()
    if pid not in _OWNERS:
        _OWNERS[pid] = f"{socket.gethostname()}:{pid}:{secrets.token_hex(6)}"
    return _OWNERS[pid]


def _alive(owner: str, heartbeat: float | None) -> bool:
    """Whether the process that claimed jobs as ``owner`` still runs."""
    parts = owner.rsplit(":", 2)  # host:pid:token
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if heartbeat is None or time.time() - heartbeat > STALE:
        return False
    if host != socket.gethostname():
        return True  # another machine sharing the file: its heartbeat says
    if pid == os.getpid():
        return owner == _process_owner()  # else an earlier process that had this id
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_metrics(registry: Any) -> tuple[Any, Any]:
    """The jobs' counter (by route and status reached) and duration histogram, in ``registry``
    (the app's; None under ``--workers``, whose metrics are kept in files)."""
    from prometheus_client import Counter, Histogram

    counted = Counter(
        "nb2api_jobs", "Jobs that reached each status, by route.", ["route", "status"],
        registry=registry,
    )
    durations = Histogram(
        "nb2api_job_duration_seconds", "Seconds from a job's start to its end.",
        ["route", "status"], registry=registry,
        buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
    )
    return counted, durations
