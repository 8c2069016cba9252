"""A tiny HTTP receiver on 127.0.0.1 for what a server exports (OTLP spans, Sentry envelopes),
and readers for both formats."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Accepts every POST with 200 and keeps ``(path, headers, body)``, the body decompressed."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, str], bytes]] = []
        lock = threading.Lock()
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    received.append((self.path, dict(self.headers), _decoded(self.headers, data)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, path: str) -> list[bytes]:
        return [body for where, _, body in list(self.received) if where.startswith(path)]


def _decoded(headers, data: bytes) -> bytes:
    encoding = (headers.get("Content-Encoding") or "").lower()
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "br":
        import brotli

        return brotli.decompress(data)
    return data


def otlp_spans(bodies: list[bytes]) -> list[tuple[dict, object]]:
    """``(resource attributes, span)`` for every span in OTLP/HTTP protobuf export requests."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    found = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                found += [(resource, span) for span in scope_spans.spans]
    return found


def otlp_attributes(span) -> dict:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values


def sentry_events(bodies: list[bytes]) -> list[dict]:
    """The events in Sentry envelopes: newline-separated JSON, a header, then item headers each
    followed by its payload."""
    events = []
    for body in bodies:
        lines = body.split(b"\n")
        index = 1
        while index + 1 < len(lines):
            item = json.loads(lines[index])
            payload = lines[index + 1]
            if item.get("type") == "event":
                events.append(json.loads(payload))
            index += 2
    return events

