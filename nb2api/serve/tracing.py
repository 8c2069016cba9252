"""OpenTelemetry tracing: a server span per request, child spans for its stages, a start-up span.

Imported only when tracing is on (:mod:`.telemetry` decides), so a server without it loads
nothing of the OpenTelemetry SDK. The SDK is configured from the standard ``OTEL_*`` variables
(service name and resource, sampler, batch processor, the OTLP/HTTP exporter's endpoint and
headers), once per server process: ``--workers`` starts each server process anew, and each sets
up its own provider, batch processor and exporter thread.

Per request, :class:`TracingMiddleware` (the outermost layer) makes the ``SERVER`` span, named
``POST /predict`` and attributed after the HTTP semantic conventions, under the caller's
``traceparent``. Its children, the same on the fast path and through FastAPI's handler, since
both reach the endpoint:

- ``validate``: from the request's arrival to the endpoint's start (the body read, parsed and
  validated), or to the 4xx that refused it;
- ``queue``: the wait for the route's concurrency slot and a worker thread;
- ``call <function>``: the notebook function; an exception it raises is recorded on it as an
  ``exception`` event with the cell and line (the traceback's ``<notebook cell N>`` frame);
- ``encode``: the result turned into the response body.

A 500's ``error_id`` goes on the server span (``nb2api.error_id``) with the exception event, and
the trace id into every log line of the request (:data:`.logs.trace_id`). Start-up runs inside an
``nb2api startup`` span with a ``cell N`` child per setup and api cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..load import Cell, Progress
from ..routes import RouteSpec
from ..settings import Settings
from ..types.encoding import Encoder
from .limits import Call
from .logs import trace_id

logger = logging.getLogger("nb2api")

# A frame of notebook code: serve compiles each cell as "<{notebook} cell {index}>".
_CELL_FRAME = re.compile(r"^<.* cell (\d+)>$")
_REMOTE_FRAME = re.compile(r'File "(<[^"]* cell (\d+)>)", line (\d+)')
_KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE"}
)

_provider: TracerProvider | None = None
_provider_pid: int | None = None


def process_provider(service_name: str) -> TracerProvider:
    """This process's tracer provider, made from the ``OTEL_*`` variables on first use (in each
    process: a forked or spawned server process makes its own). ``service_name`` is used when
    neither ``OTEL_SERVICE_NAME`` nor ``OTEL_RESOURCE_ATTRIBUTES`` names the service."""
    global _provider, _provider_pid
    if _provider is not None and _provider_pid == os.getpid():
        return _provider
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for exporter in _exporters():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _provider_pid = provider, os.getpid()
    # Global too, so that spans the notebook's own code makes (opentelemetry.trace.get_tracer)
    # nest under the request's; only when nothing else configured one.
    if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(provider)
    return provider


def use_provider(provider: TracerProvider) -> None:
    """Trace with ``provider`` in this process from now on (for an embedding app or tests: an
    in-memory exporter); apps created before keep the provider they have."""
    global _provider, _provider_pid
    _provider, _provider_pid = provider, os.getpid()


def _exporters() -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names: ``otlp`` (the default, over HTTP/protobuf),
    ``console``, ``none``."""
    found: list[SpanExporter] = []
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").replace(",", " ").split():
        if name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                logger.warning("tracing: the OTLP exporter is not installed, so no spans leave "
                               "this process: pip install 'nb2api[otel]'")
                continue
            found.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append(ConsoleSpanExporter())
        elif name != "none":
            logger.warning("tracing: OTEL_TRACES_EXPORTER=%s is not one nb2api knows (otlp, "
                           "console, none); ignored", name)
    return found


class _Request:
    """The traced request being answered: its server span and what its children need."""

    __slots__ = ("span", "context", "started", "validated", "responded")

    def __init__(self, span: Span, context: otel_context.Context, started: int) -> None:
        self.span = span
        self.context = context
        self.started = started  # ns, the server span's start
        self.validated = False
        self.responded: int | None = None  # ns, when the response started


class _Waiting:
    """A call's ``queue`` span, ended by whichever comes first: the call starting on its worker,
    or the call's end (a timeout, a full queue, a cancelled request)."""

    __slots__ = ("span",)

    def __init__(self, span: Span | None) -> None:
        self.span = span

    def end(self) -> None:
        span, self.span = self.span, None
        if span is not None:
            span.end()


_current: ContextVar[_Request | None] = ContextVar("nb2api_traced_request", default=None)
_waiting: ContextVar[_Waiting | None] = ContextVar("nb2api_waiting_call", default=None)


class _HeadersGetter(Getter[list]):
    """Reads propagation headers (``traceparent``, ``tracestate``, ``baggage``) from an ASGI
    scope's raw header list."""

    def get(self, carrier: list, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: list) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_GETTER = _HeadersGetter()


class Tracing:
    """The spans of one app, made with ``provider``'s tracer."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("nb2api", __version__)
        self.endpoints: set[int] = set()  # ids of the notebook routes' endpoints
        self.middleware = TracingMiddleware

    # --- start-up ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def startup(self, notebook: str | Path,
                progress: Progress | None = None) -> Iterator[Progress]:
        """Run the block inside an ``nb2api startup`` span; the progress callback it yields
        (which calls ``progress`` too) makes a ``cell N`` child per cell, with its seconds."""
        span = self.tracer.start_span("nb2api startup",
                                      attributes={"nb2api.notebook": str(notebook)})
        parent = trace.set_span_in_context(span)
        running: dict[int, Span] = {}

        def traced(cell: Cell, seconds: float | None) -> None:
            if seconds is None:
                running[cell.index] = self.tracer.start_span(
                    f"cell {cell.index}", context=parent,
                    attributes={"nb2api.cell": cell.index, "nb2api.cell.kind": cell.kind,
                                "nb2api.cell.first_line": cell.ref.first_line},
                )
            else:
                child = running.pop(cell.index, None)
                if child is not None:
                    child.set_attribute("nb2api.cell.seconds", seconds)
                    child.end()
            if progress is not None:
                progress(cell, seconds)

        try:
            yield traced
        except BaseException as exc:
            attributes = _error_attributes(exc)
            for child in running.values():
                child.record_exception(exc, attributes)
                child.set_status(StatusCode.ERROR, str(exc)[:200])
                child.end()
            span.record_exception(exc, attributes)
            span.set_status(StatusCode.ERROR, str(exc)[:200])
            raise
        finally:
            span.end()

    # --- per request ------------------------------------------------------------------------

    def wrap(self, spec: RouteSpec,
             encode: Encoder | None) -> tuple[RouteSpec, Encoder | None]:
        """``spec`` whose function makes the ``call`` span (and ends the ``queue`` span), and
        ``encode`` making the ``encode`` span. A process-pool route keeps its function (the
        pool finds it by identity): its ``call`` span is made around the pool call instead."""
        func = spec.func
        if spec.is_async:
            func = self._async_call(func, spec.name)
        elif spec.options.executor == "thread":
            func = self._thread_call(func, spec.name)
        traced_encode = self._encoder(encode) if encode is not None else None
        return dataclasses.replace(spec, func=func), traced_encode

    def wrap_call(self, spec: RouteSpec, run: Call, settings: Settings) -> Call:
        """``run`` (the route's call within its limits) inside the ``queue`` span, or, for a
        process-pool route, inside its ``call`` span. An ``async def`` route without a
        concurrency limit never waits: it has no ``queue`` span."""
        tracer = self.tracer
        if spec.is_async and not (spec.options.max_concurrency or settings.max_concurrency):
            return run
        if not spec.is_async and spec.options.executor != "thread":
            name = f"call {spec.name}"

            async def in_process(args: tuple, kwargs: dict) -> Any:
                with tracer.start_as_current_span(
                        name, attributes={"nb2api.executor": "process"},
                        record_exception=False, set_status_on_exception=False) as span:
                    try:
                        return await run(args, kwargs)
                    except BaseException as exc:
                        _failed(span, exc)
                        raise

            return in_process

        async def queued(args: tuple, kwargs: dict) -> Any:
            waiting = _Waiting(tracer.start_span("queue"))
            token = _waiting.set(waiting)
            try:
                return await run(args, kwargs)
            finally:
                waiting.end()
                _waiting.reset(token)

        return queued

    def _thread_call(self, func: Callable[..., Any], name: str) -> Callable[..., Any]:
        tracer = self.tracer
        span_name = f"call {name}"

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            waiting = _waiting.get()
            if waiting is not None:
                waiting.end()
            with tracer.start_as_current_span(span_name, record_exception=False,
                                              set_status_on_exception=False) as span:
                try:
                    return func(*args, **kwargs)
                except BaseException as exc:
                    _failed(span, exc)
                    raise

        return call

    def _async_call(self, func: Callable[..., Any], name: str) -> Callable[..., Any]:
        tracer = self.tracer
        span_name = f"call {name}"

        @functools.wraps(func)
        async def call(*args: Any, **kwargs: Any) -> Any:
            waiting = _waiting.get()
            if waiting is not None:
                waiting.end()
            with tracer.start_as_current_span(span_name, record_exception=False,
                                              set_status_on_exception=False) as span:
                try:
                    return await func(*args, **kwargs)
                except BaseException as exc:
                    _failed(span, exc)
                    raise

        return call

    def _encoder(self, encode: Encoder) -> Encoder:
        tracer = self.tracer

        def traced_encode(result: Any) -> bytes:
            with tracer.start_as_current_span("encode", record_exception=False,
                                              set_status_on_exception=False) as span:
                try:
                    return encode(result)
                except BaseException as exc:
                    span.set_status(StatusCode.ERROR, type(exc).__name__)
                    raise

        return traced_encode

    def validated(self) -> None:
        """The endpoint starts: the request was read and validated (the ``validate`` span)."""
        request = _current.get()
        if request is not None and not request.validated:
            request.validated = True
            self.tracer.start_span("validate", context=request.context,
                                   start_time=request.started).end()

    def reported(self, exc: BaseException, error_id: str) -> None:
        """A 500 for ``exc``: its error id and the exception, with cell and line, on the
        request's server span."""
        request = _current.get()
        span = request.span if request is not None else trace.get_current_span()
        if not span.is_recording():
            return
        span.set_attribute("nb2api.error_id", error_id)
        span.record_exception(exc, {**_error_attributes(exc), "nb2api.error_id": error_id})


class TracingMiddleware:
    """Pure ASGI middleware, outermost: one ``SERVER`` span per HTTP request."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        parent = propagate.extract(headers, getter=_GETTER)
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
        for name, value in headers:
            if name == b"user-agent":
                attributes["user_agent.original"] = value.decode("latin-1")
                break
        started = time.time_ns()
        span_name = method if method != "_OTHER" else "HTTP"
        span = self.tracer.start_span(span_name, context=parent, kind=SpanKind.SERVER,
                                      attributes=attributes, start_time=started)
        context = trace.set_span_in_context(span, parent)
        request = _Request(span, context, started)
        context_token = otel_context.attach(context)
        request_token = _current.set(request)
        trace_token = trace_id.set(format(span.get_span_context().trace_id, "032x"))
        status: int | None = None

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                request.responded = time.time_ns()
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        span.set_attribute("nb2api.request_id", value.decode("latin-1"))
            await send(message)

        failure: BaseException | None = None
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            failure = exc
            span.record_exception(exc, _error_attributes(exc))
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template:
                span.set_attribute("http.route", template)
                span.update_name(f"{span_name} {template}")
            if (not request.validated and status is not None and 400 <= status < 500
                    and id(scope.get("endpoint")) in self.tracing.endpoints):
                # Refused before the endpoint ran (a 422, a 400, a 401).
                refused = self.tracer.start_span("validate", context=context,
                                                 start_time=started)
                refused.set_status(StatusCode.ERROR, f"answered {status}")
                refused.end(end_time=request.responded)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if failure is not None or status is None or status >= 500:
                span.set_attribute("error.type", type(failure).__qualname__
                                   if failure is not None else str(status or 500))
                span.set_status(StatusCode.ERROR)
            span.end()
            trace_id.reset(trace_token)
            _current.reset(request_token)
            otel_context.detach(context_token)


def _failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc, _error_attributes(exc))
    span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200])
    span.set_attribute("error.type", type(exc).__qualname__)


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
