"""Error tracking: a notebook function's 500 reaches Sentry with its error id (serve/sentry.py),
tested against a receiver on 127.0.0.1 that stands in for Sentry."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import serve, wait_until, write_notebook
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


# --- batched calls, jobs and MCP tool calls -------------------------------------------------

LINKED = (
    # one batch of four items, never cut by time; -1 fails the whole batch
    "#| api\n#| batch: max_size=4, max_wait_ms=60000\n"
    "def double(xs: list[int]) -> list[int]:\n"
    "    if -1 in xs:\n"
    "        raise ValueError('minus one')\n"
    "    return [2 * x for x in xs]",
    API,
)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A server of LINKED whose errors go to a receiver on 127.0.0.1: (server, receiver)."""
    notebook = write_notebook(tmp_path_factory.mktemp("sentry"), *LINKED)
    with Receiver() as receiver:
        dsn = f"http://publickey@127.0.0.1:{receiver.port}/5"
        with serve(notebook, env={"SENTRY_DSN": dsn}) as server:
            yield server, receiver


def event_for(receiver: Receiver, error_id: str) -> list[dict]:
    return [event for event in sentry_events(receiver.bodies("/api/5/envelope/"))
            if event["tags"].get("error_id") == error_id]


def test_a_failed_batch_is_one_sentry_event_with_its_error_id_and_size(tracked):
    server, receiver = tracked

    def post(xs: list[int]) -> httpx.Response:
        return httpx.post(f"{server.base_url}/double", json={"xs": xs}, timeout=60)

    with ThreadPoolExecutor(3) as threads:
        answers = list(threads.map(post, [[1], [-1], [3, 4]]))
    assert {answer.status_code for answer in answers} == {500}
    [error_id] = {answer.json()["error_id"] for answer in answers}
    [event] = wait_until(lambda: event_for(receiver, error_id),
                         message="the batch's event at the Sentry receiver")
    assert event["tags"]["route"] == "double"
    assert event["tags"]["batch_size"] == "4"
    assert event["tags"]["batch_requests"] == "3"
    assert "request_id" not in event["tags"]  # it served three: their ids are in its context
    assert sorted(event["contexts"]["batch"]["request_ids"]) == sorted(
        answer.headers["x-request-id"] for answer in answers)
    [exception] = event["exception"]["values"]
    assert exception["type"] == "ValueError"
    assert exception["stacktrace"]["frames"][-1]["filename"] == "<notebook cell 1>"
    # One event for the three requests: a later failure's event arrives, this one's once.
    with ThreadPoolExecutor(2) as threads:
        later = list(threads.map(post, [[-1], [5, 6, 7]]))
    wait_until(lambda: event_for(receiver, later[0].json()["error_id"]),
               message="the later batch's event")
    assert len(event_for(receiver, error_id)) == 1


def test_a_failed_job_goes_to_sentry_with_its_error_id_and_job_id(tracked):
    server, receiver = tracked
    with server.client() as client:
        submitted = client.post("/divide", json={"a": 1, "b": 0},
                                headers={"Prefer": "respond-async"})
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        done = wait_until(lambda: (lambda d: d if d["status"] == "failed" else None)(
            client.get(f"/jobs/{job_id}").json()), message="the job to fail")
    error_id = done["error"]["error_id"]
    [event] = wait_until(lambda: event_for(receiver, error_id),
                         message="the job's event at the Sentry receiver")
    assert event["tags"]["route"] == "divide"
    assert event["tags"]["job_id"] == job_id
    assert event["exception"]["values"][0]["type"] == "ZeroDivisionError"


def test_a_failed_mcp_tool_call_goes_to_sentry_with_its_error_id(tracked):
    server, receiver = tracked
    with server.client() as client:
        answer = client.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "divide", "arguments": {"a": 1, "b": 0}}},
            headers={"Accept": "application/json, text/event-stream",
                     "MCP-Protocol-Version": "2025-11-25"})
    result = answer.json()["result"]
    assert result["isError"] is True
    error_id = json.loads(result["content"][0]["text"])["error_id"]
    [event] = wait_until(lambda: event_for(receiver, error_id),
                         message="the tool call's event at the Sentry receiver")
    assert event["tags"]["route"] == "divide"
    assert event["tags"]["request_id"] == answer.headers["x-request-id"]
