"""Spans as plain records, exported by the OpenTelemetry SDK's OTLP exporter in a process of
their own.

The request path records each span as a :data:`Record` (a tuple): the SDK's span
objects, and its OTLP encoder (about 25 µs a span), cost more than nb2api's whole answer to a
small request (``bench/run.py --only tracing``). :class:`Exporter` hands the records, in
batches of plain tuples, to an exporter process through a pipe, from a daemon thread of the
serving process. The exporter process (this file, run as a script: it imports nothing of
nb2api) makes SDK ``ReadableSpan`` objects of them and gives them to the SDK's
``BatchSpanProcessor`` and ``OTLPSpanExporter`` (``opentelemetry-exporter-otlp-proto-http``),
so the encoding's CPU and GIL time leave the serving process.

The SDK reads the standard variables itself: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``), ``..._HEADERS``, ``..._COMPRESSION``,
``..._CERTIFICATE`` (and the client certificate and key), ``OTEL_BSP_SCHEDULE_DELAY``,
``OTEL_BSP_MAX_QUEUE_SIZE``, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``. ``..._TIMEOUT`` is read here, in
milliseconds as the specification says (the Python SDK alone reads seconds). The serving side
keeps at most ``OTEL_BSP_MAX_QUEUE_SIZE`` spans waiting for the pipe and drops (and counts) the
rest: a collector that is away or slow never slows a request down. At exit the pipe is closed
and the exporter process sends what it has before it ends; the serving process waits for it,
at most the export timeout and five seconds.

Each server process (``--workers N`` starts N) has its own exporter process, started with the
first spans' exporter and ended with it. This module, on the serving side, imports only the
standard library.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("nb2api")

KIND_INTERNAL = 1
KIND_SERVER = 2

_LENGTH = struct.Struct("<I")
_NICE = 10  # the exporter process's CPU priority below the server's
_STARTING = 5.0  # seconds an exporter process may still need to start (import the SDK) at exit
_RESPAWN_AFTER = 60.0  # seconds: a gone exporter process is started anew at most this often
# What the exporter process gets of the server's environment: the OTEL_* variables and what
# Python, TLS and proxies need, never the server's own secrets.
_PASSED = ("PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HOME", "LANG", "LC_ALL",
           "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
           "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


# A finished span, as the request path records it: a plain tuple, which costs next to nothing
# to make and to pickle (an attributes dict that many spans share, the same object, is pickled
# once per batch). Ids are integers, times nanoseconds since the epoch; ``parent_id`` 0 for a
# root span; ``extra``: attributes of this span alone, over ``attributes``; ``events``:
# ``(name, time, attributes)``; ``error``: None for an unset status, else ERROR with this
# description; ``links``: ``(trace_id, span_id, attributes)`` of the spans this one serves or
# follows (a batch's requests, a job's submitting request), or None.
#   (name, trace_id, span_id, parent_id, start, end, kind, attributes, extra, events, error,
#    remote_parent, links)
Record = tuple


def record(name: str, trace_id: int, span_id: int, parent_id: int, start: int, end: int, *,
           kind: int = KIND_INTERNAL, attributes: dict[str, Any] | None = None,
           extra: dict[str, Any] | None = None,
           events: list[tuple[str, int, dict[str, Any]]] | None = None,
           error: str | None = None, remote_parent: bool = False,
           links: list[tuple[int, int, dict[str, Any]]] | None = None) -> Record:
    """A :data:`Record`, its fields named."""
    return (name, trace_id, span_id, parent_id, start, end, kind, attributes, extra, events,
            error, remote_parent, links)


def readable_maker(resource: Any, scope: Any) -> Any:
    """A function from a :data:`Record` to the SDK's ``ReadableSpan`` (imports the SDK)."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

    sampled = TraceFlags(TraceFlags.SAMPLED)
    unset = Status()
    kinds = {KIND_SERVER: SpanKind.SERVER}

    def readable(fields: tuple) -> ReadableSpan:
        (name, trace_id, span_id, parent_id, start, end, kind, attributes, extra, events, error,
         remote_parent, links) = fields
        if extra:
            attributes = {**attributes, **extra} if attributes else extra
        return ReadableSpan(
            name=name, context=SpanContext(trace_id, span_id, False, sampled),
            parent=(SpanContext(trace_id, parent_id, remote_parent, sampled)
                    if parent_id else None),
            resource=resource, attributes=attributes,
            events=[Event(n, a, t) for n, t, a in events] if events else (),
            links=[Link(SpanContext(link_trace, link_span, False, sampled), link_attributes)
                   for link_trace, link_span, link_attributes in links] if links else (),
            kind=kinds.get(kind, SpanKind.INTERNAL),
            status=Status(StatusCode.ERROR, error) if error is not None else unset,
            start_time=start, end_time=end, instrumentation_scope=scope,
        )

    return readable


def _number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def export_timeout() -> float:
    """``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` or ``OTEL_EXPORTER_OTLP_TIMEOUT``, milliseconds
    (default 10 000), in seconds."""
    return _number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                   _number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)) / 1000


# --- the serving side ----------------------------------------------------------------------------


class Exporter:
    """Hands span records to the exporter process from a daemon thread, in batches.

    ``emit`` only appends to a list: when it holds ``max_queue`` spans (the pipe is full: the
    exporter process is behind), more are dropped and counted. The thread hands
    over what has gathered every ``delay`` seconds (at most one) or as soon as a batch is full;
    at exit, what is left, and then it waits for the exporter process to send it.
    """

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str,
                 log_format: str = "text") -> None:
        # log_format: the server's (``json``: the exporter process writes JSON lines too)
        self.header = (dict(resource), scope, version, log_format)
        self.timeout = export_timeout()
        self.delay = min(_number("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000, 1.0)
        self.max_queue = int(_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self.batch = max(1, int(_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)))
        self.dropped = 0
        self.lost = 0  # spans the exporter process was not there to take
        protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
        if protocol != "http/protobuf":
            logger.warning("tracing: nb2api exports OTLP over http/protobuf, not %s", protocol)
        self._start()
        _live.add(self)
        atexit.register(self.shutdown)

    def _start(self) -> None:
        self._pid = os.getpid()
        self._pending: collections.deque[list[Record]] = collections.deque()  # emit's lists
        self._count = 0  # spans in them (under concurrent emits, about)
        self._wake = threading.Event()
        self._stopped = False
        self._process, self._fd = _spawn(self.header, self.timeout)
        self._spawned = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="nb2api-otlp", daemon=True)
        self._thread.start()

    def emit(self, spans: list[Record]) -> None:
        """Queue ``spans`` (the caller does not use the list again)."""
        if self._pid != os.getpid():  # a forked child: the parent's thread and pipe are not its
            self._start()
        count = self._count + len(spans)
        if count > self.max_queue:
            self.dropped += len(spans)
            return
        self._pending.append(spans)
        self._count = count
        if count >= self.batch and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delay)
            self._wake.clear()
            stopped = self._stopped
            self.flush()
            if stopped:
                return

    def flush(self) -> None:
        """Hand everything gathered so far to the exporter process."""
        pending, taken = self._pending, []
        self._count = 0
        with contextlib.suppress(IndexError):
            while True:
                taken.extend(pending.popleft())
        if taken:
            self._send(taken)

    def _send(self, spans: list[Record]) -> None:
        message = pickle.dumps(spans, pickle.HIGHEST_PROTOCOL)
        message = _LENGTH.pack(len(message)) + message
        try:
            _write(self._fd, message)
            return
        except OSError as error:  # the exporter process is gone
            gone = f"{error}, exit code {self._process.poll()}"
        if time.monotonic() - self._spawned >= _RESPAWN_AFTER:  # not one a second: once a minute
            logger.warning("tracing: the span exporter process is gone (%s); starting another",
                           gone)
            with contextlib.suppress(OSError):
                os.close(self._fd)
            try:
                self._process, self._fd = _spawn(self.header, self.timeout)
                self._spawned = time.monotonic()
                _write(self._fd, message)
                return
            except OSError:
                self._spawned = time.monotonic()
        self.lost += len(spans)
        if self.lost == len(spans):
            logger.warning("tracing: the span exporter process is gone (%s); spans are dropped",
                           gone)

    def shutdown(self) -> None:
        """Hand over what is left, close the pipe and wait (bounded) for the exporter process
        to send it."""
        if self._pid != os.getpid():
            return
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._thread.join(self.timeout + 1)
        if self.dropped:
            logger.warning("tracing: %s spans were dropped: the export queue was full "
                           "(OTEL_BSP_MAX_QUEUE_SIZE=%s)", self.dropped, self.max_queue)
        if self._thread.is_alive():  # stuck on a full pipe: the exporter process is stuck
            logger.warning("tracing: the span exporter process does not take spans; not "
                           "waiting for it")
            return
        os.close(self._fd)
        try:
            self._process.wait(self.timeout + _STARTING)
        except subprocess.TimeoutExpired:
            logger.warning("tracing: the span exporter process is still sending; not waiting")


_live: weakref.WeakSet[Exporter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked process (a process-pool worker) must not hold the pipe open: the exporter
    process sees its end only when every holder has closed it."""
    for exporter in list(_live):
        with contextlib.suppress(OSError):
            os.close(exporter._fd)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _spawn(header: tuple, timeout: float) -> tuple[subprocess.Popen, int]:
    """The exporter process, and the file descriptor of the pipe to its stdin."""
    environment = {name: value for name, value in os.environ.items()
                   if name.startswith("OTEL_") or name in _PASSED}
    process = subprocess.Popen(
        [sys.executable, "-c", f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')",
         repr(timeout)],
        stdin=subprocess.PIPE, env=environment, close_fds=True,
    )
    assert process.stdin is not None
    fd = os.dup(process.stdin.fileno())  # written with os.write, closed at shutdown
    process.stdin.close()
    body = pickle.dumps(header, pickle.HIGHEST_PROTOCOL)
    _write(fd, _LENGTH.pack(len(body)) + body)
    return process, fd


# --- the exporter process -------------------------------------------------------------------


class _Repeats(logging.Filter):
    """Lets a message through its 1st, 10th, 100th, ... time: a collector that is away makes
    one line, not one a second."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[Any, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        count = self.seen[record.msg] = self.seen.get(record.msg, 0) + 1
        return count in (1, 10, 100, 1000) or count % 10_000 == 0


class _JSONLines(logging.Formatter):
    """The exporter process's lines in the shape of the server's JSON log lines."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return json.dumps({
            "time": f"{when}.{int((record.created - seconds) * 1000):03d}Z",
            "level": record.levelname.lower(), "logger": "nb2api.otlp",
            "message": f"span exporter: {record.getMessage()}",
        })


def _read(stream: Any) -> Any:
    """The next message on ``stream``, or None at its end."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    return pickle.loads(body) if len(body) == size else None


def main() -> None:
    """The exporter process: span batches from stdin to the SDK's OTLP exporter until stdin
    ends, then what is left, and exit."""
    # A Ctrl-C or a SIGTERM to the server's process group is the server's to handle: this
    # process ends when the server closes the pipe, after sending what it got.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Serving comes first: when the CPUs are busy this process gets what requests leave, and
    # past OTEL_BSP_MAX_QUEUE_SIZE spans waiting, the SDK's batch processor drops them.
    if hasattr(os, "nice"):  # not on Windows
        with contextlib.suppress(OSError):
            os.nice(_NICE)
    stream = sys.stdin.buffer
    header = _read(stream)
    if header is None:
        return
    attributes, scope_name, version, log_format = header
    handler = logging.StreamHandler()
    handler.setFormatter(_JSONLines() if log_format == "json" else logging.Formatter(
        "nb2api span exporter: %(levelname)s %(message)s"))
    handler.addFilter(_Repeats())
    logging.getLogger("opentelemetry").addHandler(handler)
    logging.getLogger("opentelemetry").propagate = False

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    class FixedResource(Resource):
        """A resource whose hash, which the encoder takes for every span (a JSON dump of
        its attributes), is taken once: a resource does not change."""

        def __init__(self, attributes: dict[str, Any]) -> None:
            super().__init__(attributes)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    readable = readable_maker(FixedResource(attributes), InstrumentationScope(scope_name, version))
    exporter = OTLPSpanExporter(timeout=float(sys.argv[1]))
    try:
        processor = BatchSpanProcessor(exporter)
    except ValueError as error:  # OTEL_BSP_* that do not fit together
        logging.getLogger("opentelemetry").warning("%s: batching with the defaults", error)
        processor = BatchSpanProcessor(exporter, 2048, 5000, 512)
    while True:
        batch = _read(stream)
        if batch is None:
            break
        for fields in batch:
            processor.on_end(readable(fields))
    processor.shutdown()


if __name__ == "__main__":
    main()
