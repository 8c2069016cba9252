"""Spans as plain records, exported over OTLP/HTTP (protobuf) by a process of their own.

The request path records each span as a :data:`Record` (a tuple): the SDK's span objects cost
more than nb2api's whole answer to a small request (``bench/run.py --only tracing``).
:class:`Exporter` hands the records, in batches of plain tuples, to an exporter process through
a pipe, from a daemon thread of the serving process, so the encoding's CPU and GIL time leave the
serving process. The exporter process (this file, run as a script: it imports nothing of nb2api)
writes each batch as an OTLP export request with :class:`Encoder`, the very bytes the SDK's
encoder makes of the same spans at an eighth of its CPU (2.5 against 19.5 µs a span), and POSTs
it with :class:`Sender`.

The standard variables apply: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``), ``..._HEADERS``, ``..._COMPRESSION``,
``..._CERTIFICATE`` (and the client certificate and key), ``..._TIMEOUT`` (milliseconds, as the
specification says; the Python SDK alone reads seconds), ``OTEL_BSP_SCHEDULE_DELAY``,
``OTEL_BSP_MAX_QUEUE_SIZE``, ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``. The serving side keeps at most
``OTEL_BSP_MAX_QUEUE_SIZE`` spans waiting for the pipe and drops (and counts) the rest: a
collector that is away or slow never slows a request down. At exit the pipe is closed and the
exporter process sends what it has before it ends; the serving process waits for it, at most the
export timeout and five seconds.

Each server process (``--workers N`` starts N) has its own exporter process, started with the
first spans' exporter and ended with it. This module, on the serving side, imports only the
standard library.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import gzip
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
import zlib
from collections.abc import Mapping, Sequence
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

    ``emit`` only appends to a queue: when it holds ``max_queue`` spans (the pipe is full: the
    exporter process is behind), more are dropped and counted. The thread hands over the full
    batches as soon as one fills, and everything gathered every ``delay`` seconds (at most one);
    at exit, what is left, and then it waits for the exporter process to send it.
    """

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str,
                 log_format: str = "text") -> None:
        self.timeout = export_timeout()
        self.delay = min(_number("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000, 1.0)
        self.max_queue = int(_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self.batch = max(1, int(_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)))
        # What the exporter process is told first. log_format: the server's (``json``: the
        # exporter process writes JSON lines too); batch: the most spans an export request holds.
        self.header = (dict(resource), scope, version, log_format, self.batch)
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
        self._count = 0  # spans in them
        self._lock = threading.Lock()  # emits come from the event loop and from worker threads
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
        with self._lock:
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
            full = self._wake.wait(self.delay)  # False: the delay is up
            self._wake.clear()
            stopped = self._stopped
            self.flush(whole=stopped or not full)
            if stopped:
                return

    def flush(self, whole: bool = True) -> None:
        """Hand the spans gathered so far to the exporter process: all of them, or (``whole``
        False: a batch has filled) the full batches only, the rest waiting for the next. Each
        batch is one export request: a batch cut in two would be two."""
        pending, taken = self._pending, []
        with self._lock:
            while pending:
                taken.extend(pending.popleft())
            self._count = 0
            if not whole and (rest := len(taken) % self.batch):
                pending.append(taken[-rest:])
                self._count = rest
                del taken[-rest:]
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


# --- OTLP/protobuf, written here ---------------------------------------------------------------
#
# The SDK's encoder builds a protobuf object per span, attribute and value: 19.5 µs a span, most
# of the exporter process's CPU (bench/run.py --only tracing). These functions write the same
# bytes (opentelemetry-proto's trace.proto, fields in number order, proto3 defaults left out, as
# the SDK's encoder and upb write them) straight from records: an attributes dict that many
# spans share is written once per batch. Values the SDK cannot encode are left out, as it does.

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack
_SMALL = [bytes((n,)) for n in range(128)]
_INT64 = (-(2**63), 2**63 - 1)
_FLAG_HAS_IS_REMOTE, _FLAG_IS_REMOTE = 0x100, 0x200
# The status of a span without one (present, empty), and the flags field (16, fixed32) of a span
# whose parent is local or none, and of one whose parent is remote.
_UNSET_STATUS = b"\x7a\x00"
_FLAGS_LOCAL = b"\x85\x01" + _fixed32(_FLAG_HAS_IS_REMOTE)
_FLAGS_REMOTE = b"\x85\x01" + _fixed32(_FLAG_HAS_IS_REMOTE | _FLAG_IS_REMOTE)


class _Unencodable(Exception):
    """An attribute value OTLP has no place for (the SDK's encoder skips it too)."""


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value > 127:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _text(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message (the SDK's ``_encode_value``)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _delimited(b"\x0a", _text(value))
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _Unencodable(value)
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    if isinstance(value, Sequence):
        return _delimited(b"\x2a", b"".join(_delimited(b"\x0a", _any_value(item))
                                            for item in value))
    if isinstance(value, Mapping):
        return _delimited(b"\x32", b"".join(_delimited(b"\x0a", _key_value(str(key), item))
                                            for key, item in value.items()))
    raise _Unencodable(value)


def _key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message."""
    return (_delimited(b"\x0a", _text(key)) if key else b"") + _delimited(b"\x12",
                                                                        _any_value(value))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a ``KeyValue`` field ``tag``; the ones that cannot be encoded left
    out."""
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        try:
            out.append(_delimited(tag, _key_value(key, value)))
        except _Unencodable:
            continue
    return b"".join(out)


class Encoder:
    """``ExportTraceServiceRequest`` bytes for a batch of :data:`Record` s, all of one resource
    and instrumentation scope: the bytes the SDK's ``encode_spans`` makes of the ``ReadableSpan``
    s of :func:`readable_maker`."""

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str) -> None:
        self._resource = _delimited(b"\x0a", _attributes(b"\x0a", resource))
        scope_fields = ((_delimited(b"\x0a", _text(scope)) if scope else b"")
                        + (_delimited(b"\x12", _text(version)) if version else b""))
        self._scope = _delimited(b"\x0a", scope_fields)
        self._shared: dict[tuple[int, bytes], bytes] = {}  # a batch's attribute dicts, written
        self._names: dict[str, bytes] = {}

    def request(self, records: Sequence[Record]) -> bytes:
        if not records:
            return b""
        self._shared.clear()  # ids of this batch's dicts only: a freed dict's id comes back
        spans = b"".join([_delimited(b"\x12", self._span(fields)) for fields in records])
        scope_spans = _delimited(b"\x12", self._scope + spans)
        return _delimited(b"\x0a", self._resource + scope_spans)

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        if not attributes:
            return b""
        key = (id(attributes), tag)
        written = self._shared.get(key)
        if written is None:
            written = self._shared[key] = _attributes(tag, attributes)
        return written

    def _name(self, name: str) -> bytes:
        """The span's name field (a service has few names: kept, written once)."""
        written = self._names.get(name)
        if written is None:
            if len(self._names) >= 4096:
                self._names.clear()
            written = self._names[name] = _delimited(b"\x2a", _text(name)) if name else b""
        return written

    def _span(self, fields: tuple) -> bytes:
        (name, trace_id, span_id, parent_id, start, end, kind, attributes, extra, events, error,
         remote_parent, links) = fields
        # trace_id, span_id, parent_span_id, name, kind, start and end times: fields 1-8
        head = (b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08"
                + span_id.to_bytes(8, "big")
                + (b"\x22\x08" + parent_id.to_bytes(8, "big") if parent_id else b"")
                + self._name(name) + (b"\x30\x02" if kind == KIND_SERVER else b"\x30\x01")
                + (b"\x39" + _fixed64(start) if start else b"")
                + (b"\x41" + _fixed64(end) if end else b""))
        flags = (_FLAGS_REMOTE if parent_id and remote_parent else _FLAGS_LOCAL)
        if not (attributes or extra or events or links) and error is None:
            return head + _UNSET_STATUS + flags  # most child spans: nothing else
        out = [head]
        if extra:
            if attributes and not extra.keys().isdisjoint(attributes):
                out.append(_attributes(b"\x4a", {**attributes, **extra}))
            else:
                out += (self._attributes(b"\x4a", attributes), _attributes(b"\x4a", extra))
        elif attributes:
            out.append(self._attributes(b"\x4a", attributes))
        for event_name, when, event_attributes in events or ():
            event = ((b"\x09" + _fixed64(when) if when else b"")
                     + (_delimited(b"\x12", _text(event_name)) if event_name else b"")
                     + _attributes(b"\x1a", event_attributes))
            out.append(_delimited(b"\x5a", event))
        for link_trace, link_span, link_attributes in links or ():
            link = (b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08"
                    + link_span.to_bytes(8, "big") + self._attributes(b"\x22", link_attributes)
                    + b"\x35" + _fixed32(_FLAG_HAS_IS_REMOTE))
            out.append(_delimited(b"\x6a", link))
        if error is None:
            out.append(_UNSET_STATUS)
        else:
            out.append(_delimited(b"\x7a", (_delimited(b"\x12", _text(error)) if error else b"")
                                  + b"\x18\x02"))
        out.append(flags)
        return b"".join(out)


class Sender:
    """POSTs export requests to the OTLP/HTTP endpoint the standard variables name, as the SDK's
    ``OTLPSpanExporter`` does (which takes only its own span objects, so cannot send bytes
    written here): ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is, or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``v1/traces``; ``..._HEADERS`` (the SDK's parser);
    ``..._COMPRESSION`` (``gzip``, ``deflate``); ``..._CERTIFICATE``, ``..._CLIENT_CERTIFICATE``
    and ``..._CLIENT_KEY``; each variable's ``TRACES`` form first. A 429, 502, 503 or 504, or no
    connection, is tried again after 1, 2, 4 ... seconds (or the ``Retry-After``), within the
    export timeout; then the batch is dropped with a warning."""

    _RETRY = frozenset({429, 502, 503, 504})

    def __init__(self, timeout: float, version: str, log: logging.Logger) -> None:
        import requests
        from opentelemetry.util.re import parse_env_headers

        self.timeout, self.log = timeout, log
        self.endpoint = _variable("ENDPOINT", traces_only=True)
        if not self.endpoint:
            base = _variable("ENDPOINT") or "http://localhost:4318/"
            self.endpoint = (base if base.endswith("/") else base + "/") + "v1/traces"
        self.compression = (_variable("COMPRESSION") or "none").strip().lower()
        if self.compression not in ("gzip", "deflate", "none"):
            log.warning("OTEL_EXPORTER_OTLP_COMPRESSION=%s is not gzip, deflate or none: not "
                        "compressed", self.compression)
            self.compression = "none"
        self.session = session = requests.Session()
        session.headers.update(parse_env_headers(_variable("HEADERS") or "", liberal=True))
        session.headers["Content-Type"] = "application/x-protobuf"
        session.headers["User-Agent"] = f"nb2api/{version} OTLP/HTTP"
        if self.compression != "none":
            session.headers["Content-Encoding"] = self.compression
        # What requests would read from the environment on every POST (the proxy for the
        # endpoint, a CA bundle), read once: a third of its CPU per request.
        session.trust_env = False
        session.proxies.update(requests.utils.get_environ_proxies(self.endpoint))
        session.verify = (_variable("CERTIFICATE") or os.environ.get("REQUESTS_CA_BUNDLE")
                          or os.environ.get("CURL_CA_BUNDLE") or True)
        certificate, key = _variable("CLIENT_CERTIFICATE"), _variable("CLIENT_KEY")
        if certificate:
            session.cert = (certificate, key) if key else certificate
        self._errors = (requests.ConnectionError, requests.Timeout)

    def send(self, data: bytes, spans: int) -> bool:
        """POST one export request of ``spans`` spans, within the export timeout; whether the
        collector took it."""
        if self.compression == "gzip":
            data = gzip.compress(data, compresslevel=6, mtime=0)
        elif self.compression == "deflate":
            data = zlib.compress(data)
        deadline = time.monotonic() + self.timeout
        problem = "no time left"
        for attempt in range(7):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            retry_after = None
            try:
                response = self.session.post(self.endpoint, data=data, timeout=left)
            except self._errors as error:
                problem = f"{type(error).__name__}"
            except Exception as error:  # noqa: BLE001 - a bad URL, certificate, ...: not again
                self.log.warning("could not send %s spans to %s: %s", spans, self.endpoint, error)
                return False
            else:
                if 200 <= response.status_code < 400:
                    return True
                problem = f"{response.status_code} {response.reason}"
                if response.status_code not in self._RETRY:
                    self.log.warning("the collector refused %s spans: %s", spans, problem)
                    return False
                retry_after = _seconds(response.headers.get("Retry-After"))
            wait = 2.0 ** attempt if retry_after is None else retry_after
            if time.monotonic() + wait >= deadline:
                break
            time.sleep(wait)  # the collector asked for time, or is away: nothing else to do
        self.log.warning("could not send %s spans to %s (%s) within %gs: dropped", spans,
                         self.endpoint, problem, self.timeout)
        return False


def _variable(name: str, traces_only: bool = False) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else (unless ``traces_only``)
    ``OTEL_EXPORTER_OTLP_<name>``."""
    value = os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
    if value or traces_only:
        return value
    return os.environ.get(f"OTEL_EXPORTER_OTLP_{name}")


def _seconds(value: str | None) -> float | None:
    """A ``Retry-After`` in seconds (a number of them, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def main() -> None:
    """The exporter process: span batches from stdin, written as OTLP export requests and
    sent (each within the export timeout), until stdin ends; then exit."""
    # A Ctrl-C or a SIGTERM to the server's process group is the server's to handle: this
    # process ends when the server closes the pipe, after sending what it got.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Serving comes first: when the CPUs are busy this process gets what requests leave, and
    # the server drops spans past OTEL_BSP_MAX_QUEUE_SIZE waiting for the pipe.
    if hasattr(os, "nice"):  # not on Windows
        with contextlib.suppress(OSError):
            os.nice(_NICE)
    stream = sys.stdin.buffer
    header = _read(stream)
    if header is None:
        return
    attributes, scope_name, version, log_format, size = header
    handler = logging.StreamHandler()
    handler.setFormatter(_JSONLines() if log_format == "json" else logging.Formatter(
        "nb2api span exporter: %(levelname)s %(message)s"))
    handler.addFilter(_Repeats())
    log = logging.getLogger("nb2api.otlp")
    log.addHandler(handler)
    log.propagate = False
    encoder = Encoder(attributes, scope_name, version)
    sender = Sender(float(sys.argv[1]), version, log)
    while True:
        batch = _read(stream)
        if batch is None:
            break
        for first in range(0, len(batch), size):
            part = batch[first:first + size]
            sender.send(encoder.request(part), len(part))


if __name__ == "__main__":
    main()
