"""Structured request logs with a request id."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.config
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import serve, wait_until
from fastapi.testclient import TestClient
from ops_support import json_logs, ops_notebook

from nb2api import create_app
from nb2api.serve.logs import QueuedStderrHandler, TextFormatter, logging_config, timestamp


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


ADD = "#| api\ndef add(a: int, b: int) -> int:\n    return a + b"


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@contextlib.contextmanager
def trace_id_factory() -> Iterator[None]:
    """A record factory that adds a trace id, as OpenTelemetry's logging instrumentation does."""
    previous = logging.getLogRecordFactory()

    def with_trace_id(*args, **kwargs):
        record = previous(*args, **kwargs)
        record.otelTraceID = TRACE_ID
        return record

    logging.setLogRecordFactory(with_trace_id)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def test_a_record_factory_reaches_the_access_line(make_notebook):
    """What a record factory adds (OpenTelemetry's logging instrumentation adds trace ids)
    appears in the JSON request line."""
    with trace_id_factory():
        with TestClient(create_app(make_notebook(ADD))) as client, json_logs() as lines:
            assert client.post("/add", json={"a": 1, "b": 2}).status_code == 200
    [line] = access(lines)
    assert line["otelTraceID"] == TRACE_ID
    assert line["route"] == "/add"


@contextlib.contextmanager
def serve_logging(stream: io.StringIO) -> Iterator[QueuedStderrHandler]:
    """``nb2api serve``'s JSON logging setup, writing to ``stream``; the previous one after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    with contextlib.redirect_stderr(stream):
        logging.config.dictConfig(logging_config("json", "info"))
    [handler] = root.handlers
    try:
        yield handler
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved


def test_serve_setup_queues_request_lines_and_writes_them_all_at_close(make_notebook):
    stream = io.StringIO()
    with serve_logging(stream) as handler:
        assert isinstance(handler, QueuedStderrHandler)
        with TestClient(create_app(make_notebook(ADD))) as client:
            for i in range(50):
                client.post("/add", json={"a": i, "b": 1}, headers={"X-Request-ID": f"q-{i}"})
        handler.close()  # what logging.shutdown does at exit
        lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["request_id"] for x in access(lines)] == [f"q-{i}" for i in range(50)]
    assert all(x["logger"] == "nb2api.access" and x["route"] == "/add" for x in access(lines))


def test_serve_setup_lines_are_the_formatters_and_take_a_record_factory(make_notebook):
    """Under ``nb2api serve``'s JSON setup a request line is queued without a LogRecord unless
    a record factory is installed; both ways give the same line, the factory's fields added."""
    stream = io.StringIO()
    with serve_logging(stream) as handler:
        with TestClient(create_app(make_notebook(ADD))) as client:
            client.post("/add", json={"a": 1, "b": 2}, headers={"X-Request-ID": "plain"})
            with trace_id_factory():
                client.post("/add", json={"a": 1, "b": 2}, headers={"X-Request-ID": "traced"})
        handler.close()
    plain, traced = access([json.loads(x) for x in stream.getvalue().splitlines()])
    assert traced.pop("otelTraceID") == TRACE_ID
    assert list(plain) == list(traced)
    varying = {"time": None, "message": None, "duration_ms": None, "request_id": None}
    assert {**plain, **varying} == {**traced, **varying}
    assert (plain["request_id"], traced["request_id"]) == ("plain", "traced")


def test_the_listener_writes_a_line_without_waiting_for_more():
    stream = io.StringIO()
    with serve_logging(stream):
        logging.getLogger("nb2api").warning("disk almost full")
        wait_until(lambda: "disk almost full" in stream.getvalue())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_listens_once_per_live_handler_and_keeps_its_lines(tmp_path):
    """A forked process (the process pool forks after load) gets one listener thread per open
    handler, none for a closed one, writes its own lines and not the parent's queued ones."""
    path = tmp_path / "log"
    closed = QueuedStderrHandler(io.StringIO())
    closed.close()
    with open(path, "a", buffering=1) as stream:
        handler = QueuedStderrHandler(stream)
        logger = logging.getLogger("nb2api.test-fork")
        logger.propagate = False
        logger.setLevel(logging.INFO)  # whatever level other tests left on the root
        logger.addHandler(handler)
        try:
            listeners = [t for t in threading.enumerate() if t.name.endswith("(_monitor)")]
            for i in range(200):
                logger.warning("parent %d", i)
            pid = os.fork()
            if pid == 0:  # the child: report through the exit code, never return to pytest
                ok = False
                try:
                    children = [t for t in threading.enumerate()
                                if t.name.endswith("(_monitor)")]
                    logger.warning("child")
                    handler.close()
                    ok = len(children) == len(listeners)
                finally:
                    os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            handler.close()
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
    assert os.waitstatus_to_exitcode(status) == 0
    written = path.read_text().splitlines()
    assert sorted(written) == sorted([f"parent {i}" for i in range(200)] + ["child"])


def test_timestamps_are_right_when_threads_format_different_seconds():
    expected = {1_000_000_000.25: "2001-09-09T01:46:40.250Z",
                1_700_000_000.5: "2023-11-14T22:13:20.500Z"}
    wrong: list[str] = []

    def switch_between_steps(frame, event, arg):
        # Under the GIL another thread seldom runs between two steps of timestamp(); this
        # offers it the chance at every step, as a free-threaded Python would.
        if frame.f_code is not timestamp.__code__:
            return None
        frame.f_trace_opcodes = True
        if event == "opcode":
            time.sleep(0)
        return switch_between_steps

    def format_many(created: float) -> None:
        sys.settrace(switch_between_steps)
        try:
            for _ in range(200):
                text = timestamp(created)
                if text != expected[created]:
                    wrong.append(text)
        finally:
            sys.settrace(None)

    threads = [threading.Thread(target=format_many, args=(created,)) for created in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


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
