"""Prometheus metrics at /metrics, health and readiness."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from ops_support import ops_notebook
from prometheus_client.parser import text_string_to_metric_families

from nb2api import create_app


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
    assert set(paths) == {"/add", "/echo", "/boom", "/shout"}
