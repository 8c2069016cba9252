"""What an app runs notebook code with: its pools, metrics and auth, and their lifetime."""

from __future__ import annotations

from typing import Any

from ..load import LoadedNotebook
from ..routes import RouteSpec
from ..settings import Settings
from . import streaming
from .auth import TokenAuth, require_token
from .batching import Batcher, batch_calls, batchers
from .jobs import Jobs, default_db
from .jobs.api import accepted_response
from .limits import Call, openapi_responses, route_call
from .metrics import Metrics
from .pools import WorkerPool
from .processes import ProcessPool
from .telemetry import Reported, error_tracking, reporter, tracing_for


class Runtime:
    """The pools, metrics and auth of one app; :meth:`start` and :meth:`stop` bracket its life."""

    def __init__(self, loaded: LoadedNotebook, specs: list[RouteSpec], settings: Settings):
        self.settings = settings
        self.pool = WorkerPool(settings.max_workers)
        calls = batch_calls(specs)  # '#| batch' routes: their pools call these
        in_processes = {
            s.name: calls.get(s.name, s.func) for s in specs
            if s.options.executor == "process" and not s.is_async
        }
        self.processes = ProcessPool(in_processes, settings.processes) if in_processes else None
        self.pools: dict[str, WorkerPool] = {"thread": self.pool}
        if self.processes is not None:
            self.pools["process"] = self.processes
        self.metrics = Metrics() if settings.metrics else None
        if self.metrics is not None:
            self.metrics.load_seconds.set(loaded.load_seconds)
            for pool in self.pools.values():
                self.metrics.watch_pool(pool)
        self.batchers: dict[str, Batcher] = batchers(specs, calls, settings, self.pools,
                                                     self.metrics)
        token = settings.bearer_token()
        self.auth: TokenAuth | None = require_token(token) if token else None
        self.tracing = tracing_for(settings, loaded.notebook.name)  # None when off
        self.error_tracking = error_tracking()
        for batcher in self.batchers.values():  # batches' spans, failed batches to Sentry
            batcher.observe(self.tracing, self.error_tracking)
        # A process claims at most one job per thread worker: they may all wait for a route.
        self._job_settings = settings.updated(
            timeout=None, max_queue=max(settings.max_queue, self.pool.max_workers))
        self.jobs = Jobs(settings, settings.jobs_db or default_db(loaded.notebook.path),
                         loaded.notebook.path.name, slots=self.pool.max_workers,
                         metrics_on=self.metrics is not None,
                         registry=self.metrics.registry if self.metrics is not None else None)
        self.jobs.tracing = self.tracing  # a job's run: a span linked to the request's

    def start(self) -> None:
        """Fork the process pool (after setup, before the first request)."""
        if self.processes is not None:
            self.processes.start()
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        for pool in self.pools.values():
            pool.shutdown()
        if self.metrics is not None:
            self.metrics.close()

    def call(self, spec: RouteSpec) -> Call:
        """``await call(args, kwargs)``: the route's function on its pool, within its limits."""
        return route_call(spec, self.settings, self.pools, self.metrics)

    def job_call(self, spec: RouteSpec) -> Call:
        """As :meth:`call`, for jobs: long-running work is not bound by ``--timeout`` (a
        function's own ``#| timeout:`` still holds), and the jobs a process claimed may all
        wait for the route."""
        return route_call(spec, self._job_settings, self.pools, self.metrics)

    def responses(self, spec: RouteSpec) -> dict[int | str, dict[str, Any]]:
        """The answers nb2api itself may give on ``spec``'s route, for its OpenAPI document."""
        responses = openapi_responses(spec, self.settings)
        responses.update(accepted_response())
        if spec.streams:
            responses.update(streaming.openapi_responses(spec))
        if self.auth is not None:
            responses[401] = {"description": "Missing or invalid bearer token"}
        return responses

    def reporter(self, spec: RouteSpec) -> Reported | None:
        """What hears of each 500 of ``spec``'s route: tracing, error tracking, or None."""
        return reporter(spec.name, self.tracing, self.error_tracking)

    def failed(self, spec: RouteSpec, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.exceptions.labels(spec.path, type(exc).__name__).inc()
