"""What a platform needs of an app exported by nb2api: Prometheus metrics and a bearer token.

Copied next to ``app.py`` by ``nb2api export``, byte for byte; it needs ``fastapi`` and
``prometheus-client``, not nb2api. :func:`install` adds, to the exported FastAPI app:

- ``/metrics`` (Prometheus text format) with the request metrics ``nb2api serve`` exposes under
  the same names: ``nb2api_requests_total`` by route template, method and status,
  ``nb2api_request_duration_seconds``, ``nb2api_requests_in_flight``, and
  ``nb2api_notebook_load_seconds``, the time the cells took when the app started;
- with ``API_TOKEN`` set, a 401 for every request without ``Authorization: Bearer <token>``
  (compared in constant time), except the probes, the docs and ``/metrics``, which a cluster's
  scraper reads: keep ``/metrics`` off the public ingress.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
           60.0)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/_nb2api/static/",)
UNMATCHED = "<unmatched>"


class _Figures:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "nb2api_requests", "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=registry,
        )
        self.duration = Histogram(
            "nb2api_request_duration_seconds", "Time from request to the end of the response.",
            ["route", "method"], buckets=BUCKETS, registry=registry,
        )
        self.in_flight = Gauge("nb2api_requests_in_flight", "Requests being handled now.",
                               registry=registry)
        self.load_seconds = Gauge("nb2api_notebook_load_seconds",
                                  "Seconds the setup and api cells took to run.",
                                  registry=registry)


class _Operations:
    """Pure ASGI middleware: the token check, then the count and latency of every request."""

    def __init__(self, app: Any, figures: _Figures, token: str | None) -> None:
        self.app = app
        self.figures = figures
        self.accepted = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.accepted is not None and not _open(scope["path"]):
            given = next((value for name, value in scope["headers"]
                          if name == b"authorization"), b"")
            if not secrets.compare_digest(given, self.accepted):
                await _unauthorized(send)
                return
        figures = self.figures
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers

        async def counted(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        figures.in_flight.inc()
        try:
            await self.app(scope, receive, counted)
        finally:
            figures.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"]
            figures.requests.labels(route, method, str(status)).inc()
            figures.duration.labels(route, method).observe(time.perf_counter() - started)


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


async def _unauthorized(send: Any) -> None:
    body = json.dumps({"detail": "Not authenticated"}).encode()
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]})
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, *, load_seconds: float, token: str | None = None) -> None:
    """Add ``/metrics`` and the request metrics to ``app``; with ``token`` (default: the
    ``API_TOKEN`` variable), require it on every route but the probes, docs and metrics."""
    token = token if token is not None else os.environ.get("API_TOKEN") or None
    registry = CollectorRegistry()
    figures = _Figures(registry)
    figures.load_seconds.set(load_seconds)

    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(_Operations, figures=figures, token=token)
