"""Error tracking: a notebook function's 500 reaches Sentry with its error id (serve/sentry.py),
tested against a receiver on 127.0.0.1 that stands in for Sentry."""

from __future__ import annotations

from conftest import serve, wait_until
from telemetry_helpers import Receiver, sentry_events

API = """#| api
def divide(a: int, b: int) -> float:
    return a / b
"""


def test_a_500_goes_to_sentry_tagged_with_its_error_id(make_notebook):
    notebook = make_notebook(API)
    with Receiver() as receiver:
        dsn = f"http://publickey@127.0.0.1:{receiver.port}/42"
        with serve(notebook, env={"SENTRY_DSN": dsn}) as server, server.client() as client:
            assert client.post("/divide", json={"a": 1, "b": 2}).json() == 0.5
            response = client.post("/divide", json={"a": 1, "b": 0})
            assert response.status_code == 500
            error_id = response.json()["error_id"]
            events = wait_until(lambda: sentry_events(receiver.bodies("/api/42/envelope/")),
                                message="an event at the Sentry receiver")
            assert client.post("/divide", json={"a": 4, "b": 2}).json() == 2  # still serving
    [event] = events  # one per 500: not the log line a second time, not the 200s
    assert event["tags"]["error_id"] == error_id
    assert event["tags"]["route"] == "divide"
    assert event["tags"]["request_id"] == response.headers["x-request-id"]
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ZeroDivisionError"
    frames = exception["stacktrace"]["frames"]
    assert frames[-1]["filename"] == "<notebook cell 1>"
    assert frames[-1]["lineno"] == 3
    assert frames[-1]["function"] == "divide"


def test_with_tracing_the_sentry_event_names_the_trace(make_notebook):
    notebook = make_notebook(API)
    trace = "0af7651916cd43dd8448eb211c80319c"
    with Receiver() as receiver:
        environment = {"SENTRY_DSN": f"http://publickey@127.0.0.1:{receiver.port}/7",
                       "OTEL_TRACES_EXPORTER": "none"}
        with serve(notebook, "--otel", env=environment) as server, \
                server.client() as client:
            response = client.post("/divide", json={"a": 1, "b": 0},
                                   headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"})
            events = wait_until(lambda: sentry_events(receiver.bodies("/api/7/envelope/")),
                                message="an event at the Sentry receiver")
    [event] = events
    assert event["tags"]["error_id"] == response.json()["error_id"]
    assert event["tags"]["trace_id"] == trace


def test_a_dsn_without_sentry_sdk_says_how_to_install_it(make_notebook, monkeypatch, caplog):
    import importlib.util

    from fastapi.testclient import TestClient

    from nb2api import create_app
    from nb2api.serve import telemetry

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sentry_sdk" else real(name, *a))
    monkeypatch.setattr(telemetry, "_warned", set())
    monkeypatch.setenv("SENTRY_DSN", "http://publickey@127.0.0.1:9/1")
    app = create_app(make_notebook(API))
    assert app.state.runtime.error_tracking is False
    with TestClient(app) as client:
        assert client.post("/divide", json={"a": 1, "b": 0}).status_code == 500
    assert "pip install 'nb2api[sentry]'" in caplog.text
