"""serve/otlp.py: span records go, through a pipe, to an exporter process that writes them as
OTLP export requests (the bytes the SDK's encoder writes) and sends them. What arrives must
decode, with the official protobuf classes, to exactly the spans recorded; the OTEL_* knobs apply; what is left at exit is sent; a collector that is away
costs nothing but the spans."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

from conftest import free_port, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from telemetry_helpers import Receiver, otlp_spans

from nb2api.serve.otlp import KIND_SERVER, Encoder, Exporter, Sender, readable_maker, record

_IDS = st.integers(1, 2**64 - 1)
_VALUES = (st.text(max_size=300) | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False))
_ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=20), _VALUES, max_size=6)


def _decoded_value(value):
    return getattr(value, value.WhichOneof("value"))


def _decoded_attributes(attributes) -> dict:
    return {a.key: _decoded_value(a.value) for a in attributes}


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(max_size=40),
    trace_id=st.integers(1, 2**128 - 1), span_id=_IDS, parent_id=st.integers(0, 2**64 - 1),
    start=st.integers(0, 2**63), length=st.integers(0, 10**12),
    attributes=_ATTRIBUTES, extra=_ATTRIBUTES,
    events=st.lists(st.tuples(st.text(max_size=10), st.integers(0, 2**63), _ATTRIBUTES),
                    max_size=3),
    error=st.none() | st.text(max_size=50), server=st.booleans(), remote=st.booleans(),
    links=st.lists(st.tuples(st.integers(1, 2**128 - 1), _IDS, _ATTRIBUTES), max_size=3),
)
def test_a_record_reaches_the_sdk_encoder_as_the_same_span(name, trace_id, span_id, parent_id,
                                                           start, length, attributes, extra,
                                                           events, error, server, remote, links):
    span = record(name, trace_id, span_id, parent_id, start, start + length,
                  kind=KIND_SERVER if server else 1, attributes=attributes,
                  events=events, error=error, remote_parent=remote, extra=extra,
                  links=links or None)
    readable = readable_maker(Resource({"service.name": "svc"}),
                              InstrumentationScope("nb2api", "1.0"))
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_spans([readable(span)]).SerializeToString())
    [resource_spans] = request.resource_spans
    assert _decoded_attributes(resource_spans.resource.attributes) == {"service.name": "svc"}
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("nb2api", "1.0")
    [sent] = scope_spans.spans
    assert sent.name == name
    assert int.from_bytes(sent.trace_id, "big") == trace_id
    assert int.from_bytes(sent.span_id, "big") == span_id
    assert int.from_bytes(sent.parent_span_id or b"\0", "big") == parent_id
    assert (sent.start_time_unix_nano, sent.end_time_unix_nano) == (start, start + length)
    assert sent.kind == (2 if server else 1)
    assert _decoded_attributes(sent.attributes) == {**attributes, **extra}
    assert [(e.name, e.time_unix_nano, _decoded_attributes(e.attributes)) for e in sent.events] \
        == events
    assert sent.status.code == (0 if error is None else 2)
    assert sent.status.message == (error or "")
    assert sent.flags == (0x300 if remote and parent_id else 0x100)
    assert [(int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"),
             _decoded_attributes(link.attributes)) for link in sent.links] == links


# What else attributes may hold (notebook code's own spans): lists, None, bytes, mappings, and
# values the SDK's encoder cannot write (ints past 64 bits, other objects), which it leaves out.
_ANY = st.recursive(
    _VALUES | st.none() | st.binary(max_size=20) | st.integers(2**63, 2**70)
    | st.builds(object),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
_ANY_ATTRIBUTES = st.none() | st.dictionaries(st.text(max_size=20), _ANY, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    spans=st.lists(st.tuples(
        st.text(max_size=30), st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
        st.sampled_from([1, KIND_SERVER]), _ANY_ATTRIBUTES, _ANY_ATTRIBUTES,
        st.none() | st.lists(st.tuples(st.text(max_size=10), st.integers(0, 2**64 - 1),
                                       _ANY_ATTRIBUTES), max_size=2),
        st.none() | st.text(max_size=30), st.booleans(),
        st.none() | st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1),
                                       _ANY_ATTRIBUTES), max_size=2),
    ), max_size=4),
    shared=st.dictionaries(st.text(min_size=1, max_size=10), _VALUES, max_size=4),
    resource=st.dictionaries(st.text(min_size=1, max_size=10), _VALUES, max_size=3),
    scope=st.tuples(st.text(max_size=10), st.text(max_size=10)),
)
def test_the_encoder_writes_the_bytes_the_sdk_encoder_writes(spans, shared, resource, scope):
    """Byte for byte, for any batch: the hand-written encoder is the SDK's, faster."""
    # A dict that many spans share, as the request path makes them (written once per batch).
    spans = [(*fields[:7], shared if i % 2 else fields[7], *fields[8:])
             for i, fields in enumerate(spans)]
    readable = readable_maker(Resource(resource), InstrumentationScope(*scope))
    expected = encode_spans([readable(fields) for fields in spans]).SerializeToString()
    encoder = Encoder(resource, *scope)
    assert encoder.request(spans) == expected
    assert encoder.request(spans) == expected  # again: nothing kept from the batch before


def _records(count: int, trace_id: int = 1) -> list[tuple]:
    return [record(f"s{i}", trace_id, i + 1, 0, i, i + 1) for i in range(count)]


def test_the_exporter_process_sends_to_the_endpoint_with_headers_and_gzip(monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/custom/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%20def,tenant=t1")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
        try:
            exporter.emit(_records(3))
            found = wait_until(lambda: otlp_spans(receiver.bodies("/custom/traces")),
                               message="spans at the receiver")
        finally:
            exporter.shutdown()
    assert sorted(span.name for _, span in found) == ["s0", "s1", "s2"]
    assert {resource["service.name"] for resource, _ in found} == {"svc"}
    headers = {name.lower(): value for name, value in receiver.received[0][1].items()}
    assert headers["x-api-key"] == "abc def" and headers["tenant"] == "t1"
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/x-protobuf"


def test_what_is_left_is_sent_at_shutdown_and_past_the_queue_is_dropped(monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only shutdown sends
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "3")
        # A batch the queue never fills: no hand-over before shutdown, whatever the timing.
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
        exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
        exporter.emit(_records(2))
        exporter.emit(_records(2, trace_id=2))  # a request's spans go whole, or not at all
        exporter.emit(_records(1, trace_id=3))
        exporter.shutdown()  # hands over the three and waits for the exporter process
        assert exporter._process.returncode == 0
        sent = sorted((span.trace_id[-1], span.name)
                      for _, span in otlp_spans(receiver.bodies("/v1/traces")))
    assert exporter.dropped == 2
    assert sent == [(1, "s0"), (1, "s1"), (3, "s0")]


def test_each_export_request_is_a_full_batch_but_the_last(monkeypatch):
    """Spans are handed over a full batch at a time (the rest waits for the next), so each
    batch is one export request, not a full one and a scrap."""
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # only full batches, then exit
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
        exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
        for trace_id in range(1, 41):
            exporter.emit(_records(3, trace_id=trace_id))  # a request's three spans
            # each time a batch fills, its hand-over first (3 + 3 spans: 4 go, 2 wait)
            wait_until(lambda: exporter._count < 4, message="the full batch handed over")
        exporter.shutdown()
        sizes = [len(otlp_spans([body])) for body in receiver.bodies("/v1/traces")]
    assert sum(sizes) == 120 and exporter.dropped == 0
    assert set(sizes[:-1]) == {4} and 1 <= sizes[-1] <= 4


def test_the_queue_bound_holds_under_emits_from_many_threads(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")  # the 500 spans at exit: no collector
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "500")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10000")  # never full: no hand-over
    exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: [exporter.emit(_records(1, trace_id=i)) for _ in range(200)],
                          range(8)))
        queued = sum(len(spans) for spans in exporter._pending)
        assert queued == exporter._count == 500
        assert exporter.dropped == 8 * 200 - 500
    finally:
        exporter.shutdown()


def test_a_collector_that_is_away_only_loses_the_spans(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "300")  # ms, as the specification says
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
    assert exporter.timeout == 0.3
    for _ in range(50):
        exporter.emit(_records(10))
    exporter.shutdown()  # bounded by the export timeout: the exporter process gives up
    assert exporter._process.returncode == 0
    assert exporter.dropped == 0 and exporter.lost == 0  # handed over; the collector was away


def test_a_gone_exporter_process_is_started_anew_at_most_once_a_minute(monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
        exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
        try:
            first = exporter._process
            first.kill()
            first.wait()
            exporter._spawned -= 60  # it started a minute ago
            exporter.emit(_records(2))
            exporter.flush()  # to a new exporter process
            assert exporter._process is not first
            found = wait_until(lambda: otlp_spans(receiver.bodies("/v1/traces")),
                               message="the new exporter process's spans")
            exporter._process.kill()
            exporter._process.wait()
            for _ in range(3):  # within the minute: dropped, with one warning
                exporter.emit(_records(2, trace_id=2))
                exporter.flush()
        finally:
            exporter.shutdown()
        found = otlp_spans(receiver.bodies("/v1/traces"))  # and nothing more
    assert sorted((span.trace_id[-1], span.name) for _, span in found) == [(1, "s0"), (1, "s1")]
    assert exporter.lost == 6
    assert caplog.text.count("starting another") == 1
    assert caplog.text.count("spans are dropped") == 1


def test_the_exporter_process_gets_the_otel_variables_no_secrets_and_a_lower_priority(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NB2API_TOKEN", "s3cret-token")
    monkeypatch.setenv("SENTRY_DSN", "http://key@127.0.0.1:1/1")
    exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
    try:
        environment = Path(f"/proc/{exporter._process.pid}/environ").read_bytes()
        # and it runs below the server's CPU priority: serving comes first
        wanted = min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19)
        wait_until(lambda: os.getpriority(os.PRIO_PROCESS, exporter._process.pid) == wanted,
                   message="the exporter process's lower priority")
    finally:
        exporter.shutdown()
    assert b"OTEL_EXPORTER_OTLP_ENDPOINT=" in environment
    assert b"s3cret-token" not in environment and b"SENTRY_DSN" not in environment


def _holds(fd: int, pipe: tuple[int, int], answer) -> None:
    """Whether ``fd`` is still ``pipe`` (device and inode) here: the number may be reused."""
    try:
        found = os.fstat(fd)
    except OSError:
        answer.put(False)
    else:
        answer.put((found.st_dev, found.st_ino) == pipe)


def test_a_forked_process_does_not_hold_the_pipe_open(monkeypatch):
    """The exporter process sees the end of its pipe only when every holder closed it: a
    process-pool worker forked from the server must not be one."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
    try:
        stat = os.fstat(exporter._fd)
        pipe = (stat.st_dev, stat.st_ino)
        context = multiprocessing.get_context("fork")
        answer = context.SimpleQueue()
        child = context.Process(target=_holds, args=(exporter._fd, pipe, answer))
        child.start()
        child.join(60)
        assert answer.get() is False
        _holds(exporter._fd, pipe, answer)  # and still open here
        assert answer.get() is True
    finally:
        exporter.shutdown()


def test_without_the_otlp_exporter_installed_the_server_says_how_to_install_it(monkeypatch,
                                                                               caplog):
    import importlib.util

    from opentelemetry.sdk.resources import Resource

    from nb2api.serve import tracing

    caplog.set_level(logging.WARNING)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "requests" else real(name, *a))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    [sink] = tracing._sinks(Resource({"service.name": "svc"}))
    sink([record("s", 1, 2, 0, 0, 1)])  # goes nowhere, quietly
    assert "pip install 'nb2api[otel]'" in caplog.text


class _Scripted:
    """A collector on 127.0.0.1 that answers the statuses given, in turn (then 200), and keeps
    each body it was sent."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        script, bodies = list(answers), []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                bodies.append((dict(self.headers),
                               self.rfile.read(int(self.headers["Content-Length"]))))
                status, headers = script.pop(0) if script else (200, {})
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_sender_tries_again_when_the_collector_asks_and_gives_up_on_a_refusal(monkeypatch,
                                                                              caplog):
    import zlib

    caplog.set_level(logging.WARNING)
    collector = _Scripted((503, {"Retry-After": "0"}), (429, {"Retry-After": "0"}), (200, {}),
                          (400, {}))
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url + "/")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "deflate")
        sender = Sender(30.0, "1.0", logging.getLogger("test.otlp"))
        assert sender.endpoint == collector.url + "/v1/traces"
        assert sender.send(b"first", 1)  # after a 503 and a 429, each with Retry-After: 0
        assert not sender.send(b"second", 1)  # a 400 is not tried again
    finally:
        collector.close()
    assert [zlib.decompress(body) for _, body in collector.bodies] == [b"first"] * 3 + [b"second"]
    assert collector.bodies[0][0]["Content-Encoding"] == "deflate"
    assert "the collector refused 1 spans: 400" in caplog.text


def test_the_sender_gives_up_within_the_export_timeout(monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    collector = _Scripted(*[(503, {"Retry-After": "0"})] * 20)
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url + "/t")
        sender = Sender(30.0, "1.0", logging.getLogger("test.otlp"))
        # Seven tries at most, then the batch is dropped (not one try a second forever).
        assert not sender.send(b"x", 3)
        assert len(collector.bodies) == 7
        sender = Sender(0.05, "1.0", logging.getLogger("test.otlp"))
        collector.bodies.clear()
        # A Retry-After past the deadline: not waited for.
        collector_late = _Scripted((503, {"Retry-After": "3600"}))
        try:
            sender.endpoint = collector_late.url + "/t"
            assert not sender.send(b"x", 3)
            assert len(collector_late.bodies) == 1
        finally:
            collector_late.close()
    finally:
        collector.close()
    assert "could not send 3 spans" in caplog.text


def test_the_sender_goes_through_the_proxy_the_environment_names(monkeypatch):
    """As the SDK's exporter does (through requests): HTTP_PROXY for an http:// collector."""
    collector = _Scripted()
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", collector.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector.invalid:4318/t")
    try:
        sender = Sender(30.0, "1.0", logging.getLogger("test.otlp"))
        assert sender.send(b"spans", 1)
    finally:
        collector.close()
    [(headers, body)] = collector.bodies
    assert body == b"spans" and headers["Host"] == "collector.invalid:4318"
