"""OpenTelemetry tracing: a server span per request, child spans for its stages, a start-up span.

Imported only when tracing is on (:mod:`.telemetry` decides), so a server without it loads
nothing of the OpenTelemetry SDK. Set up once per server process from the standard ``OTEL_*``
variables (``--workers`` starts each server process anew, and each sets up its own exporter
process): the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the sampler
(``OTEL_TRACES_SAMPLER`` and its argument), the exporter (``OTEL_TRACES_EXPORTER``: ``otlp``, the
default, over HTTP, with the ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_BSP_*`` variables; ``console``;
``none``).

Per request, :class:`TracingMiddleware` (the outermost layer) makes the ``SERVER`` span, named
``POST /predict`` and attributed after the HTTP semantic conventions, under the caller's W3C
``traceparent`` (probes and scrapes, ``/healthz``, ``/readyz``, ``/metrics``, get none). Its
children, the same on the fast path and through FastAPI's handler, since both reach the
endpoint:

- ``validate``: from the request's arrival to the endpoint's start (the body read, parsed and
  validated), or to the 4xx that refused it;
- ``queue``: the wait for the route's concurrency slot and a worker thread;
- ``call <function>``: the notebook function, the current span while it runs, so spans the
  notebook makes with ``opentelemetry.trace`` nest under it; an exception it raises is recorded on
  it as an ``exception`` event with the cell and line (the traceback's ``<notebook cell N>``
  frame);
- ``encode``: the result turned into the response body.

A 500's ``error_id`` goes on the server span (``nb2api.error_id``) with the exception event, and
the trace id into every log line of the request (:data:`.logs.trace_id`). Start-up runs inside an
``nb2api startup`` span with a ``cell N`` child per setup and api cell.

The request path records spans as plain tuples (:data:`.otlp.Record`), not SDK spans: the
SDK's spans and OTLP encoder cost more than a small request itself. :mod:`.otlp` hands them to
an exporter process that writes and sends the OTLP export requests. Other exporters (``console``, an
embedding app's or a test's) get SDK ``ReadableSpan`` objects made from the records, in the
serving process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from random import getrandbits
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..load import Cell, Progress
from ..routes import RouteSpec
from ..settings import Settings
from ..types.encoding import Encoder
from .limits import Call
from .logs import JSONFormatter, default_format
from .logs import trace_id as trace_id_var
from .middleware import OPS_PATHS
from .otlp import KIND_INTERNAL, KIND_SERVER, Exporter, Record, readable_maker, record

logger = logging.getLogger("nb2api")

SCOPE = "nb2api"
# A frame of notebook code: serve compiles each cell as "<{notebook} cell {index}>".
_CELL_FRAME = re.compile(r"^<.* cell (\d+)>$")
_REMOTE_FRAME = re.compile(r'File "(<[^"]* cell (\d+)>)", line (\d+)')
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_UNSAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)

Sink = Callable[[list[Record]], None]


# --- set up, once per process ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sampler:
    """``OTEL_TRACES_SAMPLER``: ``parentbased_always_on`` (the default), ``always_on``,
    ``always_off``, ``traceidratio``, ``parentbased_always_off``, ``parentbased_traceidratio``;
    the ratio from ``OTEL_TRACES_SAMPLER_ARG``."""

    parent_based: bool = True
    ratio: float = 1.0

    @classmethod
    def from_environment(cls) -> Sampler:
        name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
        try:
            ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1"))
        except ValueError:
            ratio = 1.0
        ratios = {"always_on": 1.0, "always_off": 0.0, "traceidratio": ratio}
        base = name.removeprefix("parentbased_")
        if base not in ratios:
            logger.warning("tracing: OTEL_TRACES_SAMPLER=%s is not one nb2api knows; sampling "
                           "every request", name)
            return cls()
        return cls(name.startswith("parentbased_"), min(1.0, max(0.0, ratios[base])))

    def sampled(self, trace_id: int, parent_sampled: bool | None) -> bool:
        if parent_sampled is not None and self.parent_based:
            return parent_sampled
        # TraceIdRatioBased: the low 64 bits of the trace id under the ratio's bound.
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self.ratio * 2**64


@dataclasses.dataclass
class Pipeline:
    """Where one process's spans go, and how it samples."""

    sink: Sink
    sampler: Sampler
    resource: Resource


_pipeline: Pipeline | None = None
_pipeline_pid: int | None = None


def process_pipeline(service_name: str) -> Pipeline:
    """This process's pipeline, made from the ``OTEL_*`` variables on first use (in each
    process: a spawned server process makes its own). ``service_name`` is used when neither
    ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` names the service."""
    global _pipeline, _pipeline_pid
    if _pipeline is not None and _pipeline_pid == os.getpid():
        return _pipeline
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    sinks = _sinks(resource)
    sink = sinks[0] if len(sinks) == 1 else _fan_out(sinks)
    _pipeline = Pipeline(sink, Sampler.from_environment(), resource)
    _pipeline_pid = os.getpid()
    # Spans the notebook's own code makes (opentelemetry.trace.get_tracer) go the same way,
    # under the request's call span; only when nothing else configured a provider.
    if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(_RecordingProcessor(sink))
        trace.set_tracer_provider(provider)
    return _pipeline


def use_exporter(exporter: SpanExporter | None, sampler: Sampler | None = None) -> None:
    """Send this process's spans to ``exporter`` from now on (an embedding app's, or a test's
    in-memory one), synchronously; ``None`` to set up from the environment again. Apps created
    before keep the pipeline they have."""
    global _pipeline, _pipeline_pid
    if exporter is None:
        _pipeline = _pipeline_pid = None
        return
    resource = Resource.create()
    _pipeline = Pipeline(_to_exporter(exporter, resource), sampler or Sampler(), resource)
    _pipeline_pid = os.getpid()


def _sinks(resource: Resource) -> list[Sink]:
    """The sinks ``OTEL_TRACES_EXPORTER`` names: ``otlp`` (the default), ``console``,
    ``none``."""
    found: list[Sink] = []
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").replace(",", " ").split():
        if name == "otlp":
            if importlib.util.find_spec("requests") is None:  # the exporter process's client
                logger.warning("tracing: the OTLP exporter's HTTP client is not installed: "
                               "pip install 'nb2api[otel]'; no spans are sent")
                continue
            attributes = {key: value for key, value in resource.attributes.items()}
            try:
                found.append(Exporter(attributes, SCOPE, __version__, _log_format()).emit)
            except OSError as error:  # no process to be had: serve, untraced
                logger.warning("tracing: could not start the span exporter process (%s); no "
                               "spans are sent", error)
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append(_to_exporter(ConsoleSpanExporter(), resource))
        elif name != "none":
            logger.warning("tracing: OTEL_TRACES_EXPORTER=%s is not one nb2api knows (otlp, "
                           "console, none); ignored", name)
    return found or [lambda spans: None]


def _log_format() -> str:
    """``json`` when the server writes JSON log lines (a handler of the ``nb2api`` logger or
    above formats them), else ``text``; logging not set up yet: the default of the terminal."""
    logger_: logging.Logger | None = logging.getLogger("nb2api")
    while logger_ is not None:
        for handler in logger_.handlers:
            if isinstance(handler.formatter, JSONFormatter):
                return "json"
            if handler.formatter is not None:
                return "text"
        logger_ = logger_.parent if logger_.propagate else None
    return default_format()


def _fan_out(sinks: list[Sink]) -> Sink:
    def emit(spans: list[Record]) -> None:
        for sink in sinks:
            sink(spans)

    return emit


def _to_exporter(exporter: SpanExporter, resource: Resource) -> Sink:
    """A sink giving ``exporter`` (the console's, a test's) the SDK's spans, synchronously."""
    readable = readable_maker(resource, InstrumentationScope(SCOPE, __version__))

    def emit(spans: list[Record]) -> None:
        exporter.export([readable(span) for span in spans])

    return emit


class _RecordingProcessor(SpanProcessor):
    """Spans made with the SDK (by notebook code) to the same sink, as records."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        parent = span.parent
        events = [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events]
        self.sink([record(
            span.name, context.trace_id, context.span_id, parent.span_id if parent else 0,
            span.start_time or 0, span.end_time or 0,
            kind=KIND_SERVER if span.kind is SpanKind.SERVER else 1,
            attributes=dict(span.attributes or {}), events=events or None,
            error=(span.status.description or "") if span.status.status_code is StatusCode.ERROR
            else None, remote_parent=bool(parent and parent.is_remote),
            links=[(link.context.trace_id, link.context.span_id, dict(link.attributes or {}))
                   for link in span.links] or None,
        )])


# --- per request ---------------------------------------------------------------------------------


class _Request:
    """The traced request being answered: its server span's ids and its finished children."""

    __slots__ = ("trace_id", "span_id", "sampled", "started", "children", "validated",
                 "waiting_since", "attributes", "events")

    def __init__(self, trace_id: int, span_id: int, sampled: bool, started: int) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.started = started  # ns, the server span's start
        self.children: list[Record] = []
        self.validated = False
        self.waiting_since = 0  # ns, while the call waits for a slot or a worker
        self.attributes: dict[str, Any] = {}  # set on the server span at its end
        self.events: list[tuple[str, int, dict[str, Any]]] = []

    def child(self, name: str, start: int, end: int, *, span_id: int = 0,
              attributes: dict[str, Any] | None = None, error: str | None = None,
              events: list | None = None) -> None:
        self.children.append((name, self.trace_id, span_id or _span_id(), self.span_id, start, end,
                              KIND_INTERNAL, attributes, None, events, error, False, None))

    def end_wait(self, now: int) -> None:
        since = self.waiting_since
        if since:
            self.waiting_since = 0
            self.child("queue", since, now)


_current: ContextVar[_Request | None] = ContextVar("nb2api_traced_request", default=None)


def _span_id() -> int:
    return getrandbits(64) or 1


class Tracing:
    """The spans of one app, sent to ``pipeline``'s sink."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.sink = pipeline.sink
        self.sampler = pipeline.sampler
        self.endpoints: set[int] = set()  # ids of the notebook routes' endpoints
        self.middleware = TracingMiddleware

    # --- start-up ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def startup(self, notebook: str | Path,
                progress: Progress | None = None) -> Iterator[Progress]:
        """Run the block inside an ``nb2api startup`` span; the progress callback it yields
        (which calls ``progress`` too) makes a ``cell N`` child per cell, with its seconds."""
        trace_id = getrandbits(128) or 1
        sampled = self.sampler.sampled(trace_id, None)
        startup = _Request(trace_id, _span_id(), sampled, time.time_ns())
        running: dict[int, tuple[int, int, Cell]] = {}  # index -> span id, start, cell

        def traced(cell: Cell, seconds: float | None) -> None:
            if seconds is None:
                running[cell.index] = (_span_id(), time.time_ns(), cell)
            else:
                span_id, start, _ = running.pop(cell.index, (0, time.time_ns(), cell))
                startup.child(f"cell {cell.index}", start, time.time_ns(), span_id=span_id,
                              attributes={**_cell_attributes(cell),
                                          "nb2api.cell.seconds": seconds})
            if progress is not None:
                progress(cell, seconds)

        error = None
        try:
            yield traced
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
            event = _exception_event(exc)
            now = time.time_ns()
            for span_id, start, cell in running.values():
                startup.child(f"cell {cell.index}", start, now, span_id=span_id,
                              attributes=_cell_attributes(cell), error=error, events=[event])
            startup.events.append(event)
            raise
        finally:
            if sampled:
                server = record("nb2api startup", trace_id, startup.span_id, 0,
                                startup.started, time.time_ns(),
                                attributes={"nb2api.notebook": str(notebook)},
                                events=startup.events or None, error=error)
                self.sink([*startup.children, server])

    # --- the endpoint's hooks ---------------------------------------------------------------

    def wrap(self, spec: RouteSpec, encode: Encoder | None) -> tuple[RouteSpec, Encoder | None]:
        """``spec`` whose function makes the ``call`` span (and ends the ``queue`` span), and
        ``encode`` making the ``encode`` span. A process-pool route keeps its function (the
        pool finds it by identity): its ``call`` span is made around the pool call instead."""
        func = spec.func
        if spec.is_async:
            func = _async_call(func, spec.name)
        elif spec.options.executor == "thread":
            func = _thread_call(func, spec.name)
        traced_encode = _encoder(encode) if encode is not None else None
        return dataclasses.replace(spec, func=func), traced_encode

    def wrap_call(self, spec: RouteSpec, run: Call, settings: Settings) -> Call:
        """``run`` (the route's call within its limits) inside the ``queue`` span, or, for a
        process-pool route, inside its ``call`` span. An ``async def`` route without a
        concurrency limit never waits: it has no ``queue`` span."""
        if spec.is_async and not (spec.options.max_concurrency or settings.max_concurrency):
            return run
        if not spec.is_async and spec.options.executor != "thread":
            name = f"call {spec.name}"

            async def in_process(args: tuple, kwargs: dict) -> Any:
                request = _current.get()
                if request is None or not request.sampled:
                    return await run(args, kwargs)
                start = time.time_ns()
                try:
                    result = await run(args, kwargs)
                except BaseException as exc:
                    failure = _failure(exc)
                    failure["attributes"]["nb2api.executor"] = "process"
                    request.child(name, start, time.time_ns(), **failure)
                    raise
                request.child(name, start, time.time_ns(),
                              attributes={"nb2api.executor": "process"})
                return result

            return in_process

        async def queued(args: tuple, kwargs: dict) -> Any:
            request = _current.get()
            if request is None or not request.sampled:
                return await run(args, kwargs)
            request.waiting_since = time.time_ns()
            try:
                return await run(args, kwargs)
            finally:
                request.end_wait(time.time_ns())  # never started: a full queue, a timeout

        return queued

    def validated(self) -> None:
        """The endpoint starts: the request was read and validated (the ``validate`` span)."""
        request = _current.get()
        if request is not None and not request.validated:
            request.validated = True
            if request.sampled:
                request.child("validate", request.started, time.time_ns())

    # --- batched calls, jobs and tool calls (see :class:`BatchSpans`, :class:`JobSpan`,
    # :class:`ToolSpan`) ----------------------------------------------------------------------

    def batches(self, name: str, path: str) -> BatchSpans:
        """The spans of the ``#| batch`` route ``name``."""
        return BatchSpans(self, name, path)

    def encoder(self, encode: Encoder) -> Encoder:
        """``encode`` making the request's ``encode`` span."""
        return _encoder(encode)

    def traceparent(self) -> str | None:
        """The span context of the request being answered, as a ``traceparent`` value (stored
        with a job it submits, for the job's span to link to), or None outside one."""
        request = _current.get()
        if request is None:
            return None
        flags = "01" if request.sampled else "00"
        return f"00-{request.trace_id:032x}-{request.span_id:016x}-{flags}"

    def job_submitted(self, job_id: str) -> None:
        """The request being answered queued ``job_id``: its span names the job."""
        request = _current.get()
        if request is not None:
            request.attributes["nb2api.job.id"] = job_id

    def job(self, route: str, path: str, job_id: str, traceparent: str | None,
            attempt: int) -> JobSpan:
        """The span of one run of a job of ``route`` (served at ``path``), current until
        :meth:`JobSpan.end`."""
        return JobSpan(self, route, path, job_id, traceparent, attempt)

    def tool_call(self, tool: str, path: str) -> ToolSpan:
        """The span of one MCP ``tools/call``, current until :meth:`ToolSpan.end`."""
        return ToolSpan(self, tool, path)

    def reported(self, exc: BaseException, error_id: str) -> None:
        """A 500 for ``exc``: its error id, and the exception with cell and line, on the
        request's server span."""
        request = _current.get()
        if request is None or not request.sampled:
            return
        _record_error(request.attributes, request.events, exc, error_id)


class _call_span:  # noqa: N801 - used as the function-like context manager it replaced
    """The ``call`` span of ``request`` around the notebook function, made current so that
    spans the notebook makes nest under it (and are unsampled when the request is). A class,
    not a generator: it runs for every request."""

    __slots__ = ("request", "name", "start", "span_id", "token")

    def __init__(self, request: Any, span_name: str) -> None:
        self.request = request
        self.name = span_name

    def __enter__(self) -> None:
        request = self.request
        if not request.sampled:
            self.token = otel_context.attach(
                _as_current(request.trace_id, request.span_id, False))
            return
        self.start = start = time.time_ns()
        if request.waiting_since:
            request.end_wait(start)
        self.span_id = span_id = _span_id()
        self.token = otel_context.attach(_as_current(request.trace_id, span_id))

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        otel_context.detach(self.token)
        request = self.request
        if not request.sampled:
            return
        if exc is None:
            request.child(self.name, self.start, time.time_ns(), span_id=self.span_id)
        else:
            request.child(self.name, self.start, time.time_ns(), span_id=self.span_id,
                          **_failure(exc))


def _thread_call(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    span_name = f"call {name}"

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        request = _current.get()
        if request is None:
            return func(*args, **kwargs)
        with _call_span(request, span_name):
            return func(*args, **kwargs)

    return call


def _async_call(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    span_name = f"call {name}"

    @functools.wraps(func)
    async def call(*args: Any, **kwargs: Any) -> Any:
        request = _current.get()
        if request is None:
            return await func(*args, **kwargs)
        with _call_span(request, span_name):
            return await func(*args, **kwargs)

    return call


def _encoder(encode: Encoder) -> Encoder:
    def traced_encode(result: Any) -> bytes:
        request = _current.get()
        if request is None or not request.sampled:
            return encode(result)
        start = time.time_ns()
        try:
            body = encode(result)
        except BaseException as exc:
            request.child("encode", start, time.time_ns(), error=type(exc).__name__)
            raise
        request.child("encode", start, time.time_ns())
        return body

    return traced_encode


def _as_current(trace_id: int, span_id: int, sampled: bool = True) -> otel_context.Context:
    """A context whose current span is ``span_id`` (for spans the notebook code makes)."""
    flags = _SAMPLED if sampled else _UNSAMPLED
    return trace.set_span_in_context(NonRecordingSpan(SpanContext(trace_id, span_id, False, flags)))


def _parent(headers: Sequence[tuple[bytes, bytes]]) -> tuple[int, int, bool] | None:
    """The caller's trace id, span id and sampled flag from a valid W3C ``traceparent``."""
    for name, value in headers:
        if name == b"traceparent":
            match = _TRACEPARENT.match(value.decode("latin-1").strip().lower())
            if match is None or match[1] == "ff" or (match[1] == "00" and match[5]):
                return None
            trace_id, span_id = int(match[2], 16), int(match[3], 16)
            if not trace_id or not span_id:
                return None
            return trace_id, span_id, bool(int(match[4], 16) & 1)
    return None


class TracingMiddleware:
    """Pure ASGI middleware, outermost: one ``SERVER`` span per HTTP request."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing
        self.sink = tracing.sink
        self.sampler = tracing.sampler
        self.sample_all = tracing.sampler.ratio >= 1.0  # every new trace: no draw to make
        self.endpoints = tracing.endpoints
        self._shared: dict[tuple, tuple[str, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPS_PATHS:
            await self.app(scope, receive, send)  # probes and scrapes: no spans
            return
        started = time.time_ns()
        headers = scope["headers"]
        parent = _parent(headers)
        if parent is None:
            trace_id, parent_id = getrandbits(128) or 1, 0
            sampled = self.sample_all or self.sampler.sampled(trace_id, None)
        else:
            trace_id, parent_id, parent_sampled = parent
            sampled = self.sampler.sampled(trace_id, parent_sampled)
        request = _Request(trace_id, _span_id(), sampled, started)
        request_token = _current.set(request)
        trace_token = trace_id_var.set(f"{trace_id:032x}")
        status: int | None = None
        responded = 0
        request_id = None

        async def traced_send(message: Message) -> None:
            nonlocal status, responded, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                responded = time.time_ns()
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        request_id = value.decode("latin-1")
            await send(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            trace_id_var.reset(trace_token)
            _current.reset(request_token)
            if sampled:
                self._finish(scope, request, parent_id, status, responded, request_id, failure)

    def _finish(self, scope: Scope, request: _Request, parent_id: int, status: int | None,
                responded: int, request_id: str | None, failure: BaseException | None) -> None:
        template = getattr(scope.get("route"), "path", None)
        user_agent = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                user_agent = value
                break
        client = scope.get("client")
        # What most requests share (a route, a method, a status): its attributes are made once
        # per combination, and pickled once per batch to the exporter process.
        key = (scope["method"], scope["path"], template, status, scope.get("query_string"),
               scope.get("scheme"), scope.get("http_version"), tuple(scope.get("server") or ()),
               client[0] if client else None, user_agent)
        shared = self._shared.get(key)
        if shared is None:
            if len(self._shared) >= 1024:
                self._shared.clear()
            shared = self._shared[key] = _server_attributes(scope, template, status, user_agent)
        name, attributes = shared
        extra = request.attributes
        if request_id is not None:
            extra["nb2api.request_id"] = request_id
        events = request.events
        error = None
        if failure is not None:
            events.append(_exception_event(failure))
            extra["error.type"] = type(failure).__qualname__
        if failure is not None or status is None or status >= 500:
            if failure is None:
                extra["error.type"] = str(status or 500)
            error = ""
        if (not request.validated and status is not None and 400 <= status < 500
                and id(scope.get("endpoint")) in self.endpoints):
            # Refused before the endpoint ran (a 422, a 400, a 401).
            request.child("validate", request.started, responded or time.time_ns(),
                          error=f"answered {status}")
        children = request.children
        children.append((name, request.trace_id, request.span_id, parent_id, request.started,
                         time.time_ns(), KIND_SERVER, attributes, extra, events or None, error,
                         bool(parent_id), None))
        self.sink(children)


def _server_attributes(scope: Scope, template: str | None, status: int | None,
                       user_agent: bytes | None) -> tuple[str, dict[str, Any]]:
    """The server span's name and the attributes it shares with requests like it."""
    original = scope["method"]
    method = original if original in _KNOWN_METHODS else "_OTHER"
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
    }
    if method != original:
        attributes["http.request.method_original"] = original
    if scope.get("query_string"):
        attributes["url.query"] = scope["query_string"].decode("latin-1")
    if scope.get("http_version"):
        attributes["network.protocol.version"] = scope["http_version"]
    server = scope.get("server")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    if user_agent is not None:
        attributes["user_agent.original"] = user_agent.decode("latin-1")
    name = method if method != "_OTHER" else "HTTP"
    if template:
        attributes["http.route"] = template
        name = f"{name} {template}"
    if status is not None:
        attributes["http.response.status_code"] = status
    return name, attributes


def _failure(exc: BaseException) -> dict[str, Any]:
    """A failed child span's status, type and exception event."""
    return {**_status(exc), "events": [_exception_event(exc)]}


def _status(exc: BaseException) -> dict[str, Any]:
    """A failed span's status description and error type."""
    return {"error": f"{type(exc).__name__}: {exc}"[:200],
            "attributes": {"error.type": type(exc).__qualname__}}


def _record_error(attributes: dict[str, Any], events: list[tuple[str, int, dict[str, Any]]],
                  exc: BaseException, error_id: str) -> None:
    """A 500's ``error_id`` on a span (its attributes and events), with the exception event,
    cell and line included, that carries the id too: either finds the other."""
    attributes["nb2api.error_id"] = error_id
    name, time_ns, event = _exception_event(exc)
    events.append((name, time_ns, {**event, "nb2api.error_id": error_id}))


def _exception_event(exc: BaseException) -> tuple[str, int, dict[str, Any]]:
    module = type(exc).__module__
    kind = type(exc).__qualname__
    attributes = {
        "exception.type": kind if module == "builtins" else f"{module}.{kind}",
        "exception.message": str(exc),
        "exception.stacktrace": "".join(traceback.format_exception(exc)),
        **_error_attributes(exc),
    }
    return "exception", time.time_ns(), attributes


def _cell_attributes(cell: Cell) -> dict[str, Any]:
    return {"nb2api.cell": cell.index, "nb2api.cell.kind": cell.kind,
            "nb2api.cell.first_line": cell.ref.first_line}


def _error_attributes(exc: BaseException) -> dict[str, Any]:
    """The notebook cell and line where ``exc`` was raised: the innermost frame of notebook
    code in its traceback (or, from a worker process, in the traceback text it sent back), or
    the cell and line of a start-up error."""
    cell = getattr(exc, "cell", None)  # a NotebookError
    if cell is not None and hasattr(cell, "index"):
        found = {"nb2api.cell": cell.index}
        if getattr(exc, "line", None) is not None:
            found["nb2api.cell.line"] = exc.line  # type: ignore[attr-defined]
        return found
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        match = _CELL_FRAME.match(frame.filename)
        if match:
            return {"nb2api.cell": int(match[1]), "nb2api.cell.line": frame.lineno or 0,
                    "code.file.path": frame.filename, "code.line.number": frame.lineno or 0,
                    "code.function.name": frame.name}
    remote = exc.__cause__
    if remote is not None and type(remote).__name__ == "_RemoteTraceback":
        matches = _REMOTE_FRAME.findall(str(remote))
        if matches:
            filename, cell, line = matches[-1]
            return {"nb2api.cell": int(cell), "nb2api.cell.line": int(line),
                    "code.file.path": filename, "code.line.number": int(line)}
    return {}


# --- batched calls, jobs and tool calls ----------------------------------------------------------


class BatchSpans:
    """The spans of one ``#| batch`` route. Each request keeps its own trace: its server span,
    ``validate``, ``queue`` (its wait for a batch to take it) and ``encode``, and the attributes
    ``nb2api.batch.trace_id`` and ``nb2api.batch.span_id`` naming the batch that served it.
    Each call of the function is one ``batch <function>`` span, in a trace of its own, linked to
    the server span of every request it serves."""

    def __init__(self, tracing: Tracing, name: str, path: str) -> None:
        self.sink = tracing.sink
        self.span_name = f"batch {name}"
        self.attributes = {"nb2api.route": path, "code.function.name": name}

    def waiting(self) -> _Request | None:
        """The request being answered starts waiting for its batch: its traced request."""
        request = _current.get()
        if request is None or not request.sampled:
            return None
        request.waiting_since = time.time_ns()
        return request

    def started(self, requests: Sequence[_Request | None], items: int) -> BatchSpan | None:
        """A batch of ``requests`` (``items`` in all) starts: their waits end. Its span, or
        None when none of its requests is traced."""
        traced = [request for request in requests if request is not None]
        if not traced:
            return None
        batch = BatchSpan(self, traced, items, len(requests))
        trace_id, span_id = f"{batch.trace_id:032x}", f"{batch.span_id:016x}"
        for request in traced:
            request.end_wait(batch.start)
            request.attributes.update({"nb2api.batch.trace_id": trace_id,
                                       "nb2api.batch.span_id": span_id,
                                       "nb2api.batch.size": items})
        return batch

    @staticmethod
    def left(request: _Request, now: int) -> None:
        """The request stopped waiting without a batch (it timed out, its client left)."""
        request.end_wait(now)

    @staticmethod
    def encoded(request: _Request, start: int, end: int) -> None:
        """The request's part was encoded (on the worker, from ``start`` to ``end``)."""
        request.child("encode", start, end)


class BatchSpan:
    """One call of a batched function: a root span linked to the requests it serves."""

    def __init__(self, spans: BatchSpans, requests: list[_Request], items: int,
                 count: int) -> None:
        self.sink = spans.sink
        self.name = spans.span_name
        self.requests = requests
        self.trace_id = getrandbits(128) or 1
        self.span_id = _span_id()
        self.start = time.time_ns()
        self.attributes: dict[str, Any] = {**spans.attributes, "nb2api.batch.size": items,
                                           "nb2api.batch.requests": count}
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self.error: str | None = None

    def run(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` (run on a worker thread) with the batch span current, so that spans the
        notebook code makes nest under it."""
        context = _as_current(self.trace_id, self.span_id)

        def call(*args: Any, **kwargs: Any) -> Any:
            token = otel_context.attach(context)
            try:
                return func(*args, **kwargs)
            finally:
                otel_context.detach(token)

        return call

    def failed(self, exc: BaseException, error_id: str) -> None:
        """The call raised: every request of the batch answers the 500 ``error_id``; the
        exception, with its cell and line, goes on the batch span."""
        status = _status(exc)  # the exception event: _record_error's, with the error id
        self.error = status["error"]
        self.attributes.update(status["attributes"])
        _record_error(self.attributes, self.events, exc, error_id)
        for request in self.requests:
            request.attributes["nb2api.error_id"] = error_id

    def end(self) -> None:
        links = [(request.trace_id, request.span_id, {}) for request in self.requests]
        self.sink([record(self.name, self.trace_id, self.span_id, 0, self.start,
                          time.time_ns(), attributes=self.attributes,
                          events=self.events or None, error=self.error, links=links)])


class JobSpan:
    """One run of a job (``job <route>``), in a trace of its own, linked to the span of the
    request that submitted it (from the ``traceparent`` stored with the job: a job run again
    after a restart keeps its link). Current while the job runs, so the route's ``queue``,
    ``call`` and ``encode`` spans are its children, and a 500's error id and exception go on
    it."""

    def __init__(self, tracing: Tracing, route: str, path: str, job_id: str,
                 traceparent: str | None, attempt: int) -> None:
        self.sink = tracing.sink
        self.route = route
        self.path = path
        self.job_id = job_id
        self.attempt = attempt
        self.link = (_parent([(b"traceparent", traceparent.encode("latin-1"))])
                     if traceparent else None)
        trace_id = getrandbits(128) or 1
        # Sampled as the submitting request was, when it is known.
        sampled = tracing.sampler.sampled(trace_id, self.link[2] if self.link else None)
        self.request = _Request(trace_id, _span_id(), sampled, time.time_ns())
        self.token = _current.set(self.request)
        self.trace_token = trace_id_var.set(f"{trace_id:032x}")  # in the job's log lines

    def end(self, status: str, error: dict[str, str] | None) -> None:
        """The run ended with ``status`` (``succeeded``, ``failed``, ``cancelled``,
        ``interrupted``) and ``error`` (the job's ``{detail, error_id}``)."""
        _current.reset(self.token)
        trace_id_var.reset(self.trace_token)
        request = self.request
        if not request.sampled:
            return
        attributes = {"nb2api.job.id": self.job_id, "nb2api.job.status": status,
                      "nb2api.job.attempt": self.attempt, "nb2api.route": self.path,
                      "code.function.name": self.route,
                      **request.attributes}
        failure = None
        if error is not None:
            attributes.setdefault("nb2api.error_id", error.get("error_id"))
            failure = str(error.get("detail") or "")[:200]
        links = [(self.link[0], self.link[1], {})] if self.link else None
        span = record(f"job {self.route}", request.trace_id, request.span_id, 0,
                      request.started, time.time_ns(), attributes=attributes,
                      events=request.events or None, error=failure, links=links)
        self.sink([*request.children, span])


class ToolSpan:
    """One MCP ``tools/call`` (``tools/call <tool>``): a child of the ``/mcp`` request's server
    span (a root span over stdio), current while the tool runs, so the route's ``validate``,
    ``queue``, ``call`` and ``encode`` spans are its children, as they are a REST request's."""

    def __init__(self, tracing: Tracing, tool: str, path: str) -> None:
        self.sink = tracing.sink
        self.tool = tool
        self.path = path
        self.outer = outer = _current.get()
        if outer is None:
            trace_id = getrandbits(128) or 1
            sampled = tracing.sampler.sampled(trace_id, None)
        else:
            trace_id, sampled = outer.trace_id, outer.sampled
        self.request = _Request(trace_id, _span_id(), sampled, time.time_ns())
        self.token = _current.set(self.request)

    def end(self, status: int) -> None:
        """The call was answered as a request answered ``status`` would be."""
        _current.reset(self.token)
        request, outer = self.request, self.outer
        if not request.sampled:
            return
        attributes = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
                      "gen_ai.tool.name": self.tool, "nb2api.route": self.path,
                      "nb2api.tool.status": status, **request.attributes}
        error = None
        if status >= 500:
            attributes["error.type"] = str(status)
            error = ""
        elif status >= 400 and not request.validated:
            request.child("validate", request.started, time.time_ns(),
                          error=f"answered {status}")
        span = record(f"tools/call {self.tool}", request.trace_id, request.span_id,
                      outer.span_id if outer is not None else 0, request.started,
                      time.time_ns(), attributes=attributes, events=request.events or None,
                      error=error)
        if outer is not None:
            outer.children += [*request.children, span]  # sent with the server span
        else:
            self.sink([*request.children, span])
