"""serve/otlp.py writes OTLP/HTTP protobuf by hand: what it writes must decode, with the official
protobuf classes, to exactly the spans it was given; and its exporter honours the OTEL_* knobs."""

from __future__ import annotations

from conftest import wait_until
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from telemetry_helpers import Receiver, otlp_spans

from nb2api.serve.otlp import KIND_SERVER, Exporter, SpanRecord, encode_request

_IDS = st.integers(1, 2**64 - 1)
_VALUES = (st.text(max_size=300) | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False))
_ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=20), _VALUES, max_size=6)


def _decoded_value(value):
    return getattr(value, value.WhichOneof("value"))


def _decoded_attributes(attributes) -> dict:
    return {a.key: _decoded_value(a.value) for a in attributes}


@given(
    name=st.text(max_size=40),
    trace_id=st.integers(1, 2**128 - 1), span_id=_IDS, parent_id=st.integers(0, 2**64 - 1),
    start=st.integers(0, 2**63), length=st.integers(0, 10**12),
    attributes=_ATTRIBUTES, extra=_ATTRIBUTES,
    events=st.lists(st.tuples(st.text(max_size=10), st.integers(0, 2**63), _ATTRIBUTES),
                    max_size=3),
    error=st.none() | st.text(max_size=50), server=st.booleans(), remote=st.booleans(),
    shared=st.none() | st.integers(0, 3),
)
def test_what_is_written_decodes_to_the_same_span(name, trace_id, span_id, parent_id, start,
                                                  length, attributes, extra, events, error,
                                                  server, remote, shared):
    record = SpanRecord(name, trace_id, span_id, parent_id, start, start + length,
                        kind=KIND_SERVER if server else 1, attributes=attributes,
                        events=events, error=error, remote_parent=remote, extra=extra,
                        shared=(shared, tuple(sorted(attributes.items()))) if shared else None)
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_request([record], {"service.name": "svc"}, "nb2api", "1.0"))
    [resource_spans] = request.resource_spans
    assert _decoded_attributes(resource_spans.resource.attributes) == {"service.name": "svc"}
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("nb2api", "1.0")
    [span] = scope_spans.spans
    assert span.name == name
    assert int.from_bytes(span.trace_id, "big") == trace_id
    assert int.from_bytes(span.span_id, "big") == span_id
    assert int.from_bytes(span.parent_span_id or b"\0", "big") == parent_id
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (start, start + length)
    assert span.kind == (2 if server else 1)
    decoded = {}
    for attribute in span.attributes:  # a key in both: the span's own value comes last
        decoded[attribute.key] = _decoded_value(attribute.value)
    assert decoded == {**attributes, **extra}
    assert [(e.name, e.time_unix_nano, _decoded_attributes(e.attributes)) for e in span.events] \
        == events
    assert span.status.code == (0 if error is None else 2)
    assert span.status.message == (error or "")
    assert span.flags == (0x301 if remote else 0x101)


def test_the_exporter_batches_to_the_endpoint_with_headers_and_gzip(monkeypatch):
    with Receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/custom/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%20def,tenant=t1")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "3")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only a full batch sends
        exporter = Exporter({"service.name": "svc"}, "nb2api", "1.0")
        try:
            spans = [SpanRecord(f"s{i}", 1, i + 1, 0, i, i + 1) for i in range(5)]
            exporter.emit(spans[:1])
            exporter.emit(spans[1:])  # two more fit the queue of 3; two are dropped
            found = wait_until(lambda: otlp_spans(receiver.bodies("/custom/traces")),
                               message="a batch at the receiver")
            assert exporter.dropped == 2
        finally:
            exporter.shutdown()  # sends what is left
        sent = sorted(span.name for _, span in otlp_spans(receiver.bodies("/custom/traces")))
    assert [span.name for _, span in found][:2] == ["s0", "s1"]
    assert sent == ["s0", "s1", "s2"]
    headers = {name.lower(): value for name, value in receiver.received[0][1].items()}
    assert headers["x-api-key"] == "abc def" and headers["tenant"] == "t1"
    assert headers["content-encoding"] == "gzip"
    assert headers["content-type"] == "application/x-protobuf"
