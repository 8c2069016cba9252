"""Prometheus metrics at ``/metrics``, with ``prometheus-client``.

One process: each app has its own registry. Several processes (``nb2api serve --workers N``): the
CLI sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, every worker writes its values to
files there, and a scrape of any worker adds them all up (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import math
import os
from bisect import bisect_left
from collections.abc import Callable
from contextvars import ContextVar
from itertools import accumulate
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .pools import WorkerPool

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
FLUSH_AFTER = 0.1  # seconds: the most a process's figures lag in the files under --workers N
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0)


class _RouteFigures:
    """One route and method's requests since the process started (one process): what
    :class:`_RequestCollector` reports, in the buckets ``Histogram.observe`` would use."""

    __slots__ = ("statuses", "buckets", "sum")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one: above the largest bound (+Inf)
        self.sum = 0.0

    def add(self, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds
        self.sum += seconds


class _Pending:
    """One route and method's requests since the last flush (several processes)."""

    __slots__ = ("statuses", "durations")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.durations: list[float] = []

    def add(self, status: int, seconds: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.durations.append(seconds)


BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)
_REQUESTS = ("nb2api_requests", "HTTP requests answered, by route template, method and status.")
_DURATION = ("nb2api_request_duration_seconds", "Time from request to the end of the response.")
_BOUNDS = [floatToGoString(bound) for bound in (*BUCKETS, math.inf)]


class _RequestCollector(Collector):
    """The request count and latency histogram of one process, from :class:`_RouteFigures`."""

    def __init__(self, routes: dict[tuple[str, str], _RouteFigures]) -> None:
        self.routes = routes

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(*_REQUESTS, labels=["route", "method", "status"]),
                HistogramMetricFamily(*_DURATION, labels=["route", "method"])]

    def collect(self) -> list[Metric]:
        requests, duration = self.describe()
        for (route, method), figures in list(self.routes.items()):
            for status, count in list(figures.statuses.items()):
                requests.add_metric([route, method, str(status)], count)
            cumulative = accumulate(figures.buckets)
            duration.add_metric([route, method], list(zip(_BOUNDS, cumulative, strict=True)),
                                figures.sum)
        return [requests, duration]


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


# The notebook whose app is being built, when one server serves several (serve/multi.py sets
# it). In multiprocess mode its metrics carry it as a first label: two notebooks' metrics with
# equal labels would otherwise be one value in the files, each overwriting the other's.
metrics_notebook: ContextVar[str | None] = ContextVar("nb2api_metrics_notebook", default=None)


class _OfNotebook:
    """A metric whose first label, ``notebook``, is filled in: ``labels(route)`` gives the
    child of ``(notebook, route)``, and a metric without other labels is its one child."""

    def __init__(self, metric: Any, notebook: str) -> None:
        self.metric = metric
        self.notebook = notebook

    def labels(self, *values: str) -> Any:
        return self.metric.labels(self.notebook, *values)

    def __getattr__(self, name: str) -> Any:  # set, inc: on the notebook's child
        return getattr(self.metric.labels(self.notebook), name)


class Metrics:
    """The metrics of one app. A request costs a few dict lookups and additions."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        # In multiprocess mode values live in files, and a scrape builds a fresh registry.
        self.registry = None if self.multiprocess else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._figures: dict[tuple[str, str], _RouteFigures] = {}  # one process
        self._pending: dict[tuple[str, str], _Pending] = {}  # several processes
        notebook = metrics_notebook.get() if self.multiprocess else None

        def made(kind: Any, *args: Any, labels: list[str] | None = None, **options: Any) -> Any:
            if notebook is None:
                return kind(*args, labels or (), registry=r, **options)
            metric = kind(*args, ["notebook", *(labels or ())], registry=None, **options)
            return _OfNotebook(metric, notebook)

        if r is None:
            # Each process writes its values to files for a scrape of any process to add up:
            # requests count statuses and keep their durations, and ``flush``, every FLUSH_AFTER
            # seconds, adds the counts and observes each duration (exact, and public API).
            self.requests = made(Counter, *_REQUESTS, labels=["route", "method", "status"])
            self.duration = made(Histogram, *_DURATION, labels=["route", "method"],
                                 buckets=BUCKETS)
        else:
            # Requests add to plain numbers on the event loop's thread, which a scrape reads: the
            # same figures as a Counter and a Histogram, without their locks and bucket loop.
            r.register(_RequestCollector(self._figures))
        self.in_flight = made(
            Gauge, "nb2api_requests_in_flight", "Requests being handled now.",
            multiprocess_mode="livesum",
        )
        self.exceptions = made(
            Counter, "nb2api_route_exceptions", "Exceptions raised by notebook functions (500s).",
            labels=["route", "exception"],
        )
        self.queue_depth = made(
            Gauge, "nb2api_route_queue_depth", "Requests waiting for a route's concurrency limit.",
            labels=["route"], multiprocess_mode="livesum",
        )
        self.pool_busy = made(
            Gauge, "nb2api_pool_busy_workers", "Workers running a notebook function.",
            labels=["executor"], multiprocess_mode="livesum",
        )
        self.pool_queued = made(
            Gauge, "nb2api_pool_queued_calls", "Calls waiting for a free worker of the pool.",
            labels=["executor"], multiprocess_mode="livesum",
        )
        self.pool_size = made(
            Gauge, "nb2api_pool_workers", "Workers in the pool.",
            labels=["executor"], multiprocess_mode="livesum",
        )
        self.load_seconds = made(
            Gauge, "nb2api_notebook_load_seconds", "Seconds the setup and api cells took to run.",
            multiprocess_mode="max",
        )
        self.batch_size = Histogram(
            "nb2api_batch_size", "Items per call of a '#| batch' route.",
            ["route"], buckets=BATCH_SIZES, registry=r,
        )
        self.batch_wait = Histogram(
            "nb2api_batch_wait_seconds",
            "Time from a batch's first request to the call of its function.",
            ["route"], buckets=BUCKETS, registry=r,
        )
        self.in_flight_now = 0  # requests in the middleware now (counted on the event loop)
        self._flush_due = False
        if not self.multiprocess:
            self.in_flight.set_function(lambda: self.in_flight_now)

    def request_started(self) -> None:
        self.in_flight_now += 1

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        self.in_flight_now -= 1
        key = (route, method)
        if not self.multiprocess:
            figures = self._figures.get(key) or self._figures.setdefault(key, _RouteFigures())
            figures.add(status, seconds)
            return
        pending = self._pending.get(key) or self._pending.setdefault(key, _Pending())
        pending.add(status, seconds)
        # A scrape of another process reads this one's files, so write them soon, but once for
        # all the requests of the next FLUSH_AFTER seconds, not per request.
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        """Several processes: write what requests added since the last flush to the files."""
        self._flush_due = False
        if not self.multiprocess:
            return
        self.in_flight.set(self.in_flight_now)
        for (route, method), pending in self._pending.items():
            if not pending.statuses:
                continue
            statuses, pending.statuses = pending.statuses, {}
            durations, pending.durations = pending.durations, []
            for status, count in statuses.items():
                self.requests.labels(route, method, str(status)).inc(count)
            histogram = self.duration.labels(route, method)
            for seconds in durations:
                histogram.observe(seconds)

    def watch_pool(self, pool: WorkerPool) -> None:
        busy = self.pool_busy.labels(pool.kind)
        queued = self.pool_queued.labels(pool.kind)
        self.pool_size.labels(pool.kind).set(pool.max_workers)
        busy.set(0)
        queued.set(0)

        def changed(p: WorkerPool) -> None:
            busy.set(p.busy)
            queued.set(p.queued)

        pool.on_change = changed

    def queue_hook(self, route: str) -> Callable[[int], None]:
        return self.queue_depth.labels(route).inc

    def batch_hook(self, route: str) -> Callable[[int, float], None]:
        """``started(items, waited)``, heard as each batch of ``route`` starts."""
        sizes = self.batch_size.labels(route)
        waits = self.batch_wait.labels(route)

        def started(items: int, waited: float) -> None:
            sizes.observe(items)
            waits.observe(waited)

        return started

    def render(self) -> bytes:
        self.flush()
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)

    def close(self) -> None:
        """In multiprocess mode, drop this process's live gauges (it is going away)."""
        if self.multiprocess:
            self.flush()
            _multiprocess.mark_process_dead(os.getpid())
