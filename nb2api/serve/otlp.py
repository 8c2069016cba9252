"""Spans as plain records, written as OTLP/HTTP protobuf and sent by a background thread.

The OpenTelemetry SDK's span objects and its OTLP encoder cost more per span than nb2api's whole
answer to a small request (``bench/run.py --only tracing``), so the request path records each
span as a :class:`SpanRecord` (a few fields), and this module writes them in the protobuf wire
format of ``opentelemetry/proto/collector/trace/v1/trace_service.proto`` directly, with the
encodings of repeated attributes (a route, a method) cached. ``tests/test_tracing.py`` decodes
what it sends with the official protobuf classes.

:class:`Exporter` batches records on a daemon thread, as the SDK's ``BatchSpanProcessor`` does,
configured by the same variables: ``OTEL_BSP_SCHEDULE_DELAY``, ``OTEL_BSP_MAX_QUEUE_SIZE``,
``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, and for the endpoint ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/traces``), ``..._HEADERS``, ``..._TIMEOUT``,
``..._COMPRESSION`` (``gzip``) and ``..._CERTIFICATE``. This module imports nothing outside the
standard library.
"""

from __future__ import annotations

import atexit
import gzip
import logging
import os
import ssl
import struct
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("nb2api")

KIND_INTERNAL = 1
KIND_SERVER = 2
_STATUS_ERROR = 2


class SpanRecord:
    """One finished span: ids as integers, times in nanoseconds since the epoch."""

    __slots__ = ("name", "trace_id", "span_id", "parent_id", "remote_parent", "start", "end",
                 "kind", "attributes", "events", "error", "extra", "shared", "links")

    def __init__(self, name: str, trace_id: int, span_id: int, parent_id: int, start: int,
                 end: int, *, kind: int = KIND_INTERNAL, attributes: dict[str, Any] | None = None,
                 events: list[tuple[str, int, dict[str, Any]]] | None = None,
                 error: str | None = None, remote_parent: bool = False,
                 extra: dict[str, Any] | None = None, shared: Any = None,
                 links: list[tuple[int, int, dict[str, Any]]] | None = None) -> None:
        self.name = name
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id  # 0: a root span
        self.remote_parent = remote_parent
        self.start = start
        self.end = end
        self.kind = kind
        self.attributes = attributes
        self.events = events  # (name, time, attributes)
        self.error = error  # the status: None unset, else ERROR with this description
        # ``attributes`` may be a dict that many spans share, ``shared`` its key (hashable):
        # encoded once. ``extra`` holds the attributes of this span alone.
        self.extra = extra
        self.shared = shared
        self.links = links  # (trace id, span id, attributes) of spans this one serves or follows

    def all_attributes(self) -> dict[str, Any]:
        return {**(self.attributes or {}), **(self.extra or {})}


# --- protobuf wire format ----------------------------------------------------------------------


_SMALL = [bytes((i,)) for i in range(128)]


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF  # int64 as protobuf writes it: two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TAGS = [_varint(number << 3 | 2) for number in range(16)]  # length-delimited, by field


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    size = len(payload)
    return _TAGS[number] + (_SMALL[size] if size < 128 else _varint(size)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    if isinstance(value, (list, tuple)):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    return _field(1, str(value).encode("utf-8", "replace"))


_CACHE_LIMIT = 4096
_kv_cache: dict[tuple[str, Any], bytes] = {}


def _key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message; the ones that repeat (a route, a method) are encoded once."""
    cache_key = (key, value)
    found = _kv_cache.get(cache_key) if type(value) is not bool else None
    if found is not None:
        return found
    encoded = _field(1, key.encode()) + _field(2, _any_value(value))
    if (len(_kv_cache) < _CACHE_LIMIT and type(value) in (str, int)
            and (type(value) is int or len(value) <= 256)):
        _kv_cache[cache_key] = encoded
    return encoded


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    return b"".join([_field(number, _key_value(key, value))
                     for key, value in attributes.items() if value is not None])


_name_cache: dict[str, bytes] = {}
_shared_cache: dict[Any, bytes] = {}
_TIMES = struct.Struct("<BQBQ")
_FLAGS = {False: b"\x85\x01" + struct.pack("<I", 0x101),  # sampled, parent known local
          True: b"\x85\x01" + struct.pack("<I", 0x301)}  # sampled, parent remote


def encode_span(span: SpanRecord, trace_id: bytes | None = None) -> bytes:
    """A ``Span`` message (``trace_id``: its trace id's 16 bytes, when already made)."""
    name = _name_cache.get(span.name)
    if name is None:
        name = _field(5, span.name.encode())
        if len(_name_cache) < _CACHE_LIMIT:
            _name_cache[span.name] = name
    parts = [
        b"\x0a\x10", trace_id or span.trace_id.to_bytes(16, "big"),
        b"\x12\x08", span.span_id.to_bytes(8, "big"),
    ]
    if span.parent_id:
        parts += [b"\x22\x08", span.parent_id.to_bytes(8, "big")]
    parts += [name, b"\x30", _SMALL[span.kind],
              _TIMES.pack(0x39, span.start, 0x41, span.end)]
    if span.attributes:
        if span.shared is not None:
            block = _shared_cache.get(span.shared)
            if block is None:
                block = _attributes(9, span.attributes)
                if len(_shared_cache) >= _CACHE_LIMIT:
                    _shared_cache.clear()
                _shared_cache[span.shared] = block
            parts.append(block)
        else:
            parts.append(_attributes(9, span.attributes))
    if span.extra:
        parts.append(_attributes(9, span.extra))
    for event_name, time, attributes in span.events or ():
        parts.append(_field(11, b"\x09" + struct.pack("<Q", time)
                            + _field(2, event_name.encode()) + _attributes(3, attributes)))
    for link_trace, link_span, attributes in span.links or ():
        parts.append(_field(13, b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08"
                            + link_span.to_bytes(8, "big") + _attributes(4, attributes)
                            + b"\x35" + struct.pack("<I", 0x101)))  # flags: sampled
    if span.error is not None:
        parts.append(_field(15, _field(2, span.error.encode("utf-8", "replace"))
                            + b"\x18" + _SMALL[_STATUS_ERROR]))
    parts.append(_FLAGS[span.remote_parent])
    return b"".join(parts)


def _spans(spans: list[SpanRecord]) -> bytes:
    out = []
    last_id, last_bytes = -1, b""
    for span in spans:
        if span.trace_id != last_id:  # a request's spans are handed over together
            last_id, last_bytes = span.trace_id, span.trace_id.to_bytes(16, "big")
        out.append(_field(2, encode_span(span, last_bytes)))
    return b"".join(out)


def encode_request(spans: list[SpanRecord], resource: Mapping[str, Any], scope: str,
                   version: str) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``spans``, all from one resource and scope."""
    scope_message = _field(1, _field(1, scope.encode()) + _field(2, version.encode()))
    scope_spans = scope_message + _spans(spans)
    resource_message = _field(1, _attributes(1, resource))
    return _field(1, resource_message + _field(2, scope_spans))


# --- the exporter ------------------------------------------------------------------------------


def _env(name: str, default: str = "") -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return (os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
            or os.environ.get(f"OTEL_EXPORTER_OTLP_{name}") or default)


def endpoint() -> str:
    specific = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if specific:
        return specific
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
    return base.rstrip("/") + "/v1/traces"


def _headers() -> dict[str, str]:
    headers = {"Content-Type": "application/x-protobuf", "User-Agent": "nb2api-otlp"}
    for item in _env("HEADERS").split(","):
        key, _, value = item.partition("=")
        if key.strip() and value:
            headers[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return headers


def _number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Exporter:
    """Sends span records to the OTLP/HTTP endpoint from a daemon thread, in batches.

    ``emit`` only appends to a list: when the list holds ``max_queue`` spans, more are dropped
    (and counted) rather than slowing requests down. The thread sends what has gathered every
    ``delay`` seconds or as soon as a batch is full; at exit, what is left is sent.
    """

    def __init__(self, resource: Mapping[str, Any], scope: str, version: str) -> None:
        self.resource = dict(resource)
        self.scope = scope
        self.version = version
        self.url = endpoint()
        self.headers = _headers()
        self.timeout = _number("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                               _number("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)) / 1000
        self.gzip = _env("COMPRESSION").lower() == "gzip"
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        certificate = _env("CERTIFICATE")
        self.context = ssl.create_default_context(cafile=certificate or None)
        self.delay = _number("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self.max_queue = int(_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048))
        self.batch = max(1, int(_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)))
        self.dropped = 0
        self.failures = 0
        protocol = _env("PROTOCOL", "http/protobuf")
        if protocol != "http/protobuf":
            logger.warning("tracing: nb2api exports OTLP over http/protobuf, not %s; sending "
                           "to %s", protocol, self.url)
        self._pending: list[SpanRecord] = []
        self._wake = threading.Condition()
        self._stopped = False
        self._pid = os.getpid()
        self._start_thread()
        atexit.register(self.shutdown)

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nb2api-otlp", daemon=True)
        self._thread.start()

    def emit(self, spans: list[SpanRecord]) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._pid = os.getpid()
            self._pending = []
            self._wake = threading.Condition()
            self._start_thread()
        with self._wake:
            pending = self._pending
            room = max(self.max_queue - len(pending), 0)
            if room < len(spans):
                self.dropped += len(spans) - room
                spans = spans[:room]
            pending.extend(spans)
            if len(pending) >= self.batch:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._stopped and len(self._pending) < self.batch:
                    self._wake.wait(self.delay)
                stopped = self._stopped
            self.flush()
            if stopped:
                return

    def flush(self) -> None:
        """Send everything gathered so far, a batch at a time."""
        with self._wake:
            taken, self._pending = self._pending, []
        for start in range(0, len(taken), self.batch):
            batch = taken[start:start + self.batch]
            self._send(encode_request(batch, self.resource, self.scope, self.version))

    def _send(self, body: bytes) -> None:
        if self.gzip:
            body = gzip.compress(body)
        request = urllib.request.Request(self.url, data=body, headers=self.headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=self.context) as response:
                response.read()
        except Exception as error:  # noqa: BLE001 - a collector away must not stop the server
            self.failures += 1
            if self.failures in (1, 10, 100, 1000):
                logger.warning("tracing: could not send spans to %s (%s failures so far): %s",
                               self.url, self.failures, error)

    def shutdown(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread.is_alive() and self._pid == os.getpid():
            self._thread.join(self.timeout + 1)
        if self.dropped:
            logger.warning("tracing: %s spans were dropped: the export queue was full "
                           "(OTEL_BSP_MAX_QUEUE_SIZE=%s)", self.dropped, self.max_queue)
