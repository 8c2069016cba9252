"""What writing an OTLP export request costs the exporter process: the SDK's encoder (the
``ReadableSpan`` objects made from the records, ``encode_spans``, serializing) against nb2api's
own writer (``serve/otlp.py``'s ``Encoder``), on batches shaped like the bench's traced requests
(a server span with the request's attributes, validate, call and encode children). Both must
write the same bytes; printed: CPU µs per span, medians of the rounds, and their ratio.

    python bench/bench_otlp.py [--rounds 15] [--requests 128]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: E402

from nb2api.serve.otlp import KIND_SERVER, Encoder, readable_maker, record  # noqa: E402

RESOURCE = {"service.name": "bench", "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.version": "1.45.2"}


def batch(requests: int) -> list[tuple]:
    """The spans of ``requests`` traced POST /add requests, as the request path records them."""
    shared = {"http.request.method": "POST", "url.path": "/add", "url.scheme": "http",
              "network.protocol.version": "1.1", "server.address": "127.0.0.1",
              "server.port": 8000, "client.address": "127.0.0.1", "user_agent.original": "wrk",
              "http.route": "/add", "http.response.status_code": 200}
    spans = []
    for _ in range(requests):
        trace_id, server_id, now = random.getrandbits(128), random.getrandbits(64), time.time_ns()
        for name in ("validate", "call add", "encode"):
            spans.append(record(name, trace_id, random.getrandbits(64), server_id, now, now + 900))
        spans.append(record("POST /add", trace_id, server_id, 0, now, now + 5000,
                            kind=KIND_SERVER, attributes=shared,
                            extra={"nb2api.request_id": f"{random.getrandbits(64):016x}"}))
    return spans


def cpu_per_span(write, spans: list[tuple], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.process_time()
        for _ in range(5):
            write(spans)
        times.append((time.process_time() - began) / 5 / len(spans) * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=128, help="requests per batch")
    options = parser.parse_args()
    spans = batch(options.requests)
    readable = readable_maker(Resource(RESOURCE), InstrumentationScope("nb2api", "1.0"))
    encoder = Encoder(RESOURCE, "nb2api", "1.0")

    def sdk(records):
        return encode_spans([readable(fields) for fields in records]).SerializeToString()

    if sdk(spans) != encoder.request(spans):
        raise SystemExit("nb2api's encoder does not write the SDK's bytes")
    theirs = cpu_per_span(sdk, spans, options.rounds)
    ours = cpu_per_span(encoder.request, spans, options.rounds)
    print(f"OTLP export request, {len(spans)} spans a batch ({options.requests} requests), "
          f"the same bytes; CPU per span, median of {options.rounds} rounds")
    print(f"  SDK: ReadableSpan + encode_spans + serialize  {theirs:6.2f} us")
    print(f"  nb2api Encoder                                {ours:6.2f} us")
    print(f"  ratio SDK / nb2api: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
