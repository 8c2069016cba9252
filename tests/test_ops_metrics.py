"""Prometheus metrics at /metrics, health and readiness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ops_support import ops_notebook
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import nb2api
from nb2api import create_app
from nb2api.serve.docs import ASSETS_PATH, has_local_assets
from nb2api.serve.metrics import BUCKETS, MULTIPROC_ENV, Metrics


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def client():
    with TestClient(create_app(ops_notebook("basic"))) as c:
        yield c


def test_metrics_count_requests_by_route_and_status(client):
    for _ in range(3):
        assert client.post("/add", json={"a": 1, "b": 2}).status_code == 200
    assert client.post("/add", json={"a": "x"}).status_code == 422
    assert client.post("/boom").status_code == 500
    assert client.get("/nowhere").status_code == 404
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)

    def count(route: str, status: str, method: str = "POST") -> float:
        labels = {("route", route), ("status", status), ("method", method)}
        return got["nb2api_requests_total", frozenset(labels)]

    assert count("/add", "200") == 3
    assert count("/add", "422") == 1
    assert count("/boom", "500") == 1
    assert count("<unmatched>", "404", "GET") == 1
    route = frozenset({("route", "/add"), ("method", "POST")})
    assert got["nb2api_request_duration_seconds_count", route] == 4
    assert got["nb2api_request_duration_seconds_bucket", route | {("le", "+Inf")}] == 4
    assert got["nb2api_route_exceptions_total",
               frozenset({("route", "/boom"), ("exception", "ValueError")})] == 1
    # The scrape itself is in flight while it renders.
    assert got["nb2api_requests_in_flight", frozenset()] == 1
    assert ("nb2api_notebook_load_seconds", frozenset()) in got


def test_metrics_show_the_worker_pool(client):
    assert client.post("/echo", json={"text": "hi"}).json() == "hi"
    got = samples(client.get("/metrics").text)
    thread = frozenset({("executor", "thread")})
    assert got["nb2api_pool_workers", thread] >= 1
    assert got["nb2api_pool_busy_workers", thread] == 0
    assert got["nb2api_pool_queued_calls", thread] == 0
    assert got["nb2api_route_queue_depth", frozenset({("route", "/echo")})] == 0


def test_metrics_can_be_turned_off():
    with TestClient(create_app(ops_notebook("basic"), metrics=False)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.post("/add", json={"a": 1, "b": 2}).json() == 3


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readiness_reports_a_wedged_pool(client, monkeypatch):
    pool = client.app.state.runtime.pool
    monkeypatch.setattr(pool, "wedged_for", lambda: 120.0)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "busy" in response.json()["reason"]


def test_ops_routes_stay_out_of_the_docs(client):
    paths = client.get("/openapi.json").json()["paths"]
    jobs = {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result", "/jobs/{job_id}/events"}
    assert set(paths) == {"/add", "/echo", "/boom", "/shout"} | jobs  # jobs are part of the API


# Durations on every bucket bound, between them, and past the last one.
DURATIONS = [0.0, 1e-9, *BUCKETS, *(bound * 1.000001 for bound in BUCKETS), 0.0003, 0.3, 100.0]


def request_lines(text: str) -> list[str]:
    """The request count and latency lines of an exposition, without ``_created`` series (the
    plain metrics have them; nb2api's per-route figures, like multiprocess mode, do not)."""
    names = ("nb2api_requests_total", "nb2api_request_duration_seconds")
    return [line for line in text.splitlines()
            if line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(names)
            and "_created" not in line]


def plain_metrics(durations: list[float]) -> list[str]:
    """What a plain Counter and Histogram show for the same requests."""
    registry = CollectorRegistry()
    requests = Counter("nb2api_requests", "HTTP requests answered, by route template, method "
                       "and status.", ["route", "method", "status"], registry=registry)
    duration = Histogram("nb2api_request_duration_seconds", "Time from request to the end of "
                         "the response.", ["route", "method"], buckets=BUCKETS, registry=registry)
    for i, seconds in enumerate(durations):
        requests.labels("/add", "POST", "200" if i % 3 else "500").inc()
        duration.labels("/add", "POST").observe(seconds)
    return request_lines(generate_latest(registry).decode())


def test_request_figures_match_a_plain_histogram_bucket_for_bucket():
    metrics = Metrics()
    for i, seconds in enumerate(DURATIONS):
        metrics.request_started()
        metrics.request_finished("/add", "POST", 200 if i % 3 else 500, seconds)
    assert request_lines(metrics.render().decode()) == plain_metrics(DURATIONS)


ROOT = str(Path(nb2api.__file__).parents[1])
# prometheus-client picks its multiprocess value class at import: this runs in a fresh process.
_MULTIPROCESS_RUN = """
import asyncio, json, sys
from nb2api.serve.metrics import Metrics
metrics = Metrics()
async def requests():
    for i, seconds in enumerate(json.loads(sys.argv[1])):
        metrics.request_started()
        metrics.request_finished("/add", "POST", 200 if i % 3 else 500, seconds)
asyncio.run(requests())
sys.stdout.write(metrics.render().decode())
metrics.close()
"""


def test_multiprocess_figures_match_a_plain_histogram_bucket_for_bucket(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", _MULTIPROCESS_RUN, json.dumps(DURATIONS)],
        env={**os.environ, MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": ROOT},
        capture_output=True, text=True,
        timeout=120, check=True,
    )
    assert sorted(request_lines(run.stdout)) == sorted(plain_metrics(DURATIONS))


def test_openapi_and_docs_assets_are_counted_under_their_routes(make_notebook):
    path = make_notebook("#| api\ndef add(a: int, b: int) -> int:\n    return a + b")
    with TestClient(create_app(path)) as client:
        assert client.get("/openapi.json").status_code == 200
        asset = "/_nb2api/static/swagger-ui/swagger-ui.css" if has_local_assets() else None
        if asset is not None:
            assert client.get(asset).status_code == 200
        got = samples(client.get("/metrics").text)

    def count(route: str) -> float | None:
        labels = {("route", route), ("status", "200"), ("method", "GET")}
        return got.get(("nb2api_requests_total", frozenset(labels)))

    assert count("/openapi.json") == 1
    if asset is not None:
        assert count(ASSETS_PATH) == 1
    assert count("<unmatched>") is None
