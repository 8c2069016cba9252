"""Structured request logs with a request id."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import serve, wait_until
from fastapi.testclient import TestClient
from ops_support import json_logs, ops_notebook

from nb2api import create_app
from nb2api.serve.logs import TextFormatter, logging_config, request_id


def access(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "nb2api.access"]


def test_one_json_line_per_request_with_its_request_id():
    with TestClient(create_app(ops_notebook("basic"))) as client, json_logs() as lines:
        response = client.post("/add", json={"a": 1, "b": 2})
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 16
    [line] = access(lines)
    assert line["request_id"] == request_id
    assert line["method"] == "POST"
    assert line["path"] == "/add"
    assert line["route"] == "/add"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["level"] == "info"
    assert line["time"].endswith("Z")


def test_the_client_request_id_is_kept_and_echoed():
    with TestClient(create_app(ops_notebook("basic"))) as client, json_logs() as lines:
        response = client.post("/echo", json={"text": "x"}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert access(lines)[0]["request_id"] == "abc-123"


def test_an_unsafe_request_id_is_replaced():
    with TestClient(create_app(ops_notebook("basic"))) as client:
        response = client.post("/echo", json={"text": "x"},
                               headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 16


def test_an_error_logs_its_traceback_under_the_error_id_and_request_id():
    with TestClient(create_app(ops_notebook("basic"))) as client, json_logs() as lines:
        response = client.post("/boom")
    assert response.status_code == 500
    body = response.json()
    [error] = [line for line in lines if line["level"] == "error"]
    assert error["error_id"] == body["error_id"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "ValueError: the notebook failed on purpose" in error["traceback"]
    assert "traceback" not in body
    assert access(lines)[0]["status"] == 500


def test_notebook_log_lines_carry_the_request_id_from_the_worker_thread():
    with TestClient(create_app(ops_notebook("basic"))) as client, json_logs() as lines:
        response = client.post("/shout", json={"text": "hi"})
    [warning] = [line for line in lines if line["logger"] == "notebook"]
    assert warning["message"] == "shouting hi"
    assert warning["request_id"] == response.headers["x-request-id"]


def test_probes_log_at_debug_level_only():
    with TestClient(create_app(ops_notebook("basic"))) as client, json_logs(logging.INFO) as lines:
        client.get("/healthz")
        client.get("/metrics")
    assert access(lines) == []


def test_access_log_can_be_turned_off():
    app = create_app(ops_notebook("basic"), access_log=False)
    with TestClient(app) as client, json_logs() as lines:
        assert client.post("/add", json={"a": 1, "b": 2}).status_code == 200
    assert access(lines) == []


def test_text_format_reads_as_a_line_for_people():
    record = logging.makeLogRecord({"msg": "%s %s %d %.1f ms", "args": ("GET", "/x", 200, 1.5),
                                    "levelname": "INFO", "name": "nb2api.access"})
    assert TextFormatter().format(record).endswith("INFO  GET /x 200 1.5 ms")


def test_logging_config_routes_uvicorn_through_nb2api_formatter():
    config = logging_config("json", "warning")
    assert config["formatters"]["nb2api"]["()"] == "nb2api.serve.logs.JSONFormatter"
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"]["propagate"] is False


def test_serve_json_setup_writes_the_same_line_as_the_formatter(monkeypatch):
    """Under ``nb2api serve``'s JSON setup the middleware writes request lines itself: they must
    be the lines ``JSONFormatter`` makes from the same request."""
    import io
    import logging.config

    from nb2api.serve.logs import access_json_handler, log_request

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(logging_config("json", "info"))
    try:
        [handler] = root.handlers
        assert access_json_handler(logging.INFO) is handler
        handler.stream = io.StringIO()
        with TestClient(create_app(ops_notebook("basic"))) as client:
            response = client.post("/add", json={"a": 1, "b": 2},
                                   headers={"X-Request-ID": "fast-1"})
            client.get("/healthz")  # debug level: not written
        handler.flush()
        [line] = [json.loads(x) for x in handler.stream.getvalue().splitlines()
                  if '"nb2api.access"' in x]
        assert response.headers["x-request-id"] == "fast-1"
        handler.stream = io.StringIO()
        fields = {k: line[k] for k in ("method", "path", "route", "status", "duration_ms",
                                       "client")}
        token = request_id.set("fast-1")
        try:
            log_request(logging.INFO, line["message"], fields)
        finally:
            request_id.reset(token)
        handler.flush()
        expected = json.loads(handler.stream.getvalue())
        assert list(line) == list(expected)
        assert {**line, "time": None} == {**expected, "time": None}
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_client_cannot_forge_a_log_line(make_notebook, log_format):
    notebook = make_notebook("#| api\ndef ping() -> str:\n    return 'pong'")
    with serve(notebook, "--log-format", log_format) as server, server.client() as client:
        assert client.get("/x%0aINFO:%20FORGED%0d%1b[31mred").status_code == 404
        assert client.get("/ping").status_code == 405  # a later line: the first one is out
        wait_until(lambda: "/ping" in server.output(), message="the request lines")
        lines = server.output().splitlines()
    assert not any(line.startswith("INFO: FORGED") for line in lines), lines
    assert not any("\x1b" in line or "\r" in line for line in lines), lines
    [line] = [line for line in lines if "FORGED" in line]
    if log_format == "json":
        assert json.loads(line)["path"] == "/x\nINFO: FORGED\r\x1b[31mred"
    else:
        assert "/x\\nINFO: FORGED\\r\\x1b[31mred 404" in line


def test_text_messages_are_one_line_whatever_they_hold():
    record = logging.makeLogRecord({"msg": "bad value %r", "args": ("a\nb",),
                                    "levelname": "ERROR", "name": "nb2api"})
    record.msg = "bad value a\nERROR fake\x1b[2J"
    record.args = None
    assert TextFormatter().format(record).endswith("ERROR bad value a\\nERROR fake\\x1b[2J")
