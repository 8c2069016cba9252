"""OpenTelemetry tracing (serve/tracing.py): spans per request and at start-up, trace ids in the
logs, error ids on spans, OTLP export to a receiver, and nothing loaded when it is off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import free_port, serve, wait_until
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from ops_support import json_logs
from telemetry_helpers import Receiver, otlp_attributes, otlp_spans

from nb2api import NotebookError, Settings, create_app
from nb2api.serve import tracing
from nb2api.serve.telemetry import tracing_wanted
from nb2api.serve.tracing import Sampler

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"

SETUP = "#| setup\nOFFSET = 10"
API = """#| api
def add(a: int, b: int) -> int:
    return a + b + OFFSET

async def ratio(a: int, b: int) -> float:
    return a / b

def divide(a: int, b: int) -> float:
    x = a
    return x / b
"""


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    found: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def request_spans(exporter: InMemorySpanExporter, server_span) -> dict[str, object]:
    """The children of ``server_span``, by name."""
    children = [s for s in exporter.get_finished_spans()
                if s.parent is not None and s.parent.span_id == server_span.context.span_id]
    return {s.name: s for s in children}


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
def test_a_request_is_one_server_span_with_a_child_per_stage(make_notebook, spans, fast_path):
    app = create_app(make_notebook(SETUP, API), otel=True, fast_path=fast_path)
    with TestClient(app) as client:
        spans.clear()  # start-up spans are another test's
        response = client.post("/add?x=1", json={"a": 1, "b": 2},
                               headers={"traceparent": TRACEPARENT, "User-Agent": "probe/1"})
    assert response.json() == 13
    [server] = by_name(spans)["POST /add"]
    assert server.kind is SpanKind.SERVER
    # The caller's trace goes on: same trace id, the caller's span as parent.
    assert format(server.context.trace_id, "032x") == TRACE
    assert format(server.parent.span_id, "016x") == PARENT
    assert server.parent.is_remote
    attributes = dict(server.attributes)
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.path"] == "/add"
    assert attributes["url.query"] == "x=1"
    assert attributes["url.scheme"] == "http"
    assert attributes["http.route"] == "/add"
    assert attributes["http.response.status_code"] == 200
    assert attributes["user_agent.original"] == "probe/1"
    assert attributes["nb2api.request_id"] == response.headers["x-request-id"]
    assert "error.type" not in attributes
    assert server.status.status_code is StatusCode.UNSET
    children = request_spans(spans, server)
    assert set(children) == {"validate", "queue", "call add", "encode"}
    for child in children.values():
        assert child.context.trace_id == server.context.trace_id
        assert server.start_time <= child.start_time <= child.end_time <= server.end_time
    # In order: read and validated, waited for a worker, ran, encoded.
    assert children["validate"].end_time <= children["call add"].start_time
    assert children["queue"].end_time <= children["call add"].start_time
    assert children["call add"].end_time <= children["encode"].end_time


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
def test_an_async_route_has_no_queue_without_a_limit(make_notebook, spans, fast_path):
    app = create_app(make_notebook(SETUP, API), otel=True, fast_path=fast_path)
    with TestClient(app) as client:
        spans.clear()
        assert client.post("/ratio", json={"a": 1, "b": 2}).json() == 0.5
    [server] = by_name(spans)["POST /ratio"]
    assert set(request_spans(spans, server)) == {"validate", "call ratio", "encode"}
    assert server.parent is None  # no traceparent: a new trace


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
@pytest.mark.parametrize("route, line", [("ratio", 6), ("divide", 10)])
def test_a_500_carries_its_error_id_and_the_cell_and_line(make_notebook, spans, fast_path,
                                                          route, line):
    app = create_app(make_notebook(SETUP, API), otel=True, fast_path=fast_path)
    with TestClient(app) as client, json_logs() as lines:
        spans.clear()
        response = client.post(f"/{route}", json={"a": 1, "b": 0},
                               headers={"traceparent": TRACEPARENT})
    assert response.status_code == 500
    error_id = response.json()["error_id"]
    [server] = by_name(spans)[f"POST /{route}"]
    assert server.attributes["nb2api.error_id"] == error_id
    assert server.attributes["http.response.status_code"] == 500
    assert server.attributes["error.type"] == "500"
    assert server.status.status_code is StatusCode.ERROR
    [event] = [e for e in server.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    assert event.attributes["nb2api.error_id"] == error_id
    assert event.attributes["nb2api.cell"] == 2  # the api cell, as people count cells
    assert event.attributes["nb2api.cell.line"] == line
    call = request_spans(spans, server)[f"call {route}"]
    assert call.status.status_code is StatusCode.ERROR
    [call_event] = call.events
    assert call_event.attributes["nb2api.cell"] == 2
    assert call_event.attributes["code.line.number"] == line
    assert call_event.attributes["code.function.name"] == route
    # The 500's log line names the trace: the error id is findable from either side.
    [logged] = [x for x in lines if x.get("error_id") == error_id]
    assert logged["trace_id"] == TRACE


def test_the_request_log_line_carries_the_trace_id(make_notebook, spans):
    app = create_app(make_notebook(SETUP, API), otel=True)
    with TestClient(app) as client, json_logs() as lines:
        client.post("/add", json={"a": 1, "b": 2}, headers={"traceparent": TRACEPARENT})
        client.post("/add", json={"a": 1, "b": 2})
    first, second = [x for x in lines if x["logger"] == "nb2api.access"]
    assert first["trace_id"] == TRACE
    [server] = [s for s in by_name(spans)["POST /add"] if s.parent is None]
    assert second["trace_id"] == format(server.context.trace_id, "032x")


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
def test_a_refused_request_has_a_failed_validate_span(make_notebook, spans, fast_path):
    app = create_app(make_notebook(SETUP, API), otel=True, fast_path=fast_path)
    with TestClient(app) as client:
        spans.clear()
        assert client.post("/add", json={"a": "x", "b": 2}).status_code == 422
    [server] = by_name(spans)["POST /add"]
    assert server.attributes["http.response.status_code"] == 422
    assert server.status.status_code is StatusCode.UNSET  # a 4xx is the client's error
    children = request_spans(spans, server)
    assert set(children) == {"validate"}
    assert children["validate"].status.status_code is StatusCode.ERROR


def test_an_unmatched_path_is_named_by_its_method_only_and_probes_make_none(make_notebook, spans):
    app = create_app(make_notebook(SETUP, API), otel=True)
    with TestClient(app) as client:
        spans.clear()
        assert client.get("/nowhere").status_code == 404
        assert client.get("/healthz").status_code == 200
    names = by_name(spans)
    [missing] = names["GET"]
    assert "http.route" not in missing.attributes
    assert missing.attributes["url.path"] == "/nowhere"
    assert set(names) == {"GET"}  # a probe makes no span


def test_a_process_pool_call_is_one_span_with_the_cell_and_line(make_notebook, spans):
    notebook = make_notebook(
        "#| api\n#| executor: process\ndef invert(x: int) -> float:\n    return 1 / x"
    )
    app = create_app(notebook, otel=True, processes=1)
    with TestClient(app) as client:
        spans.clear()
        assert client.post("/invert", json={"x": 4}).json() == 0.25
        response = client.post("/invert", json={"x": 0})
    assert response.status_code == 500
    ok, failed = by_name(spans)["POST /invert"]
    assert set(request_spans(spans, ok)) == {"validate", "call invert", "encode"}
    call = request_spans(spans, failed)["call invert"]
    assert call.attributes["nb2api.executor"] == "process"
    [event] = call.events
    assert event.attributes["nb2api.cell"] == 1
    assert event.attributes["nb2api.cell.line"] == 4
    assert failed.attributes["nb2api.error_id"] == response.json()["error_id"]


def test_start_up_is_a_span_with_a_child_per_cell(make_notebook, spans):
    notebook = make_notebook("# scratch, never run", SETUP, API)
    create_app(notebook, otel=True)
    names = by_name(spans)
    [startup] = names["nb2api startup"]
    assert startup.attributes["nb2api.notebook"] == str(notebook)
    cells = [s for s in spans.get_finished_spans() if s.name.startswith("cell ")]
    assert [s.name for s in cells] == ["cell 2", "cell 3"]
    for cell, kind in zip(cells, ["setup", "api"], strict=True):
        assert cell.parent.span_id == startup.context.span_id
        assert cell.attributes["nb2api.cell.kind"] == kind
        assert cell.attributes["nb2api.cell.seconds"] >= 0
        assert startup.start_time <= cell.start_time <= cell.end_time <= startup.end_time
    assert cells[0].attributes["nb2api.cell.first_line"] == "OFFSET = 10"


def test_a_failing_setup_cell_fails_its_span_and_the_start_up(make_notebook, spans):
    notebook = make_notebook(SETUP, "#| setup\nx = 1\nraise ValueError('no model')", API)
    with pytest.raises(NotebookError):
        create_app(notebook, otel=True)
    names = by_name(spans)
    [startup] = names["nb2api startup"]
    [failed] = names["cell 2"]
    assert names["cell 1"][0].status.status_code is StatusCode.UNSET
    for span in (startup, failed):
        assert span.status.status_code is StatusCode.ERROR
        [event] = span.events
        assert event.attributes["nb2api.cell"] == 2
        assert event.attributes["nb2api.cell.line"] == 3
    assert "cell 3" not in names


def test_tracing_is_on_by_flag_or_by_the_standard_variables(monkeypatch):
    for name in ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "NB2API_OTEL"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing_wanted(Settings())
    assert tracing_wanted(Settings(otel=True))
    monkeypatch.setenv("NB2API_OTEL", "1")
    assert tracing_wanted(Settings())
    monkeypatch.delenv("NB2API_OTEL")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "iris")
    assert tracing_wanted(Settings())
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing_wanted(Settings())
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the SDK's own off switch wins
    assert not tracing_wanted(Settings(otel=True))


def test_tracing_off_loads_nothing_of_the_sdk(make_notebook):
    notebook = make_notebook(SETUP, API)
    script = textwrap.dedent(f"""
        import sys
        from fastapi.testclient import TestClient
        from nb2api import create_app

        with TestClient(create_app({str(notebook)!r})) as client:
            assert client.post("/add", json={{"a": 1, "b": 2}}).json() == 13
            assert client.post("/divide", json={{"a": 1, "b": 0}}).status_code == 500
        loaded = [m for m in sys.modules if m.startswith(
            ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto", "sentry_sdk",
             "nb2api.serve.tracing", "nb2api.serve.sentry"))]
        print(loaded)
    """)
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("OTEL_", "SENTRY_", "NB2API_"))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=environment, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


NESTED = """#| api
from opentelemetry import trace

tracer = trace.get_tracer("notebook")

def nested() -> int:
    with tracer.start_as_current_span("inner work"):
        return 1
"""


def test_spans_reach_an_otlp_receiver_from_every_server_process(make_notebook):
    notebook = make_notebook(SETUP, API, NESTED)
    with Receiver() as receiver:
        environment = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "adder",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        with serve(notebook, "--workers", "2", "--log-format", "json",
                   env=environment) as server, server.client() as client:
            response = client.post("/add", json={"a": 1, "b": 2},
                                   headers={"traceparent": TRACEPARENT})
            assert response.json() == 13
            assert client.post("/nested").json() == 1

            def exported() -> list:
                found = otlp_spans(receiver.bodies("/v1/traces"))
                names = [span.name for _, span in found]
                # the server process that loaded it first, then each of the two workers; and
                # every span asserted below (a span and its parent may go in separate batches)
                wanted = {"POST /add", "validate", "queue", "call add", "encode", "inner work",
                          "call nested"}
                return found if (names.count("nb2api startup") >= 3
                                 and wanted <= set(names)) else []

            found = wait_until(exported, message="spans at the receiver")
            log = server.output()
    assert {resource["service.name"] for resource, _ in found} == {"adder"}
    [server_span] = [span for _, span in found if span.name == "POST /add"]
    assert server_span.trace_id.hex() == TRACE
    assert server_span.parent_span_id.hex() == PARENT
    attributes = otlp_attributes(server_span)
    assert attributes["http.route"] == "/add"
    assert attributes["http.response.status_code"] == 200
    children = {span.name for _, span in found if span.parent_span_id == server_span.span_id}
    assert children == {"validate", "queue", "call add", "encode"}
    # A span the notebook's code makes nests under its call's span.
    [inner] = [span for _, span in found if span.name == "inner work"]
    [call] = [span for _, span in found if span.span_id == inner.parent_span_id]
    assert call.name == "call nested" and call.trace_id == inner.trace_id
    # The JSON request line of the worker that answered carries the same trace id.
    access = [json.loads(line) for line in log.splitlines()
              if line.startswith("{") and '"nb2api.access"' in line]
    assert [line["trace_id"] for line in access if line["path"] == "/add"] == [TRACE]


@pytest.mark.parametrize("header", [
    "garbage", f"ff-{TRACE}-{PARENT}-01", f"00-{'0' * 32}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE}-{PARENT}-01-extra", f"00-{TRACE[:-1]}-{PARENT}-01",
])
def test_an_invalid_traceparent_starts_a_new_trace(make_notebook, spans, header):
    app = create_app(make_notebook(SETUP, API), otel=True)
    with TestClient(app) as client:
        spans.clear()
        assert client.post("/add", json={"a": 1, "b": 2}, headers={"traceparent": header}).json() \
            == 13
    [server] = by_name(spans)["POST /add"]
    assert server.parent is None
    assert format(server.context.trace_id, "032x") != TRACE


def test_an_unsampled_caller_gets_no_spans_but_its_trace_id_in_the_logs(make_notebook, spans):
    app = create_app(make_notebook(SETUP, API), otel=True)
    with TestClient(app) as client, json_logs() as lines:
        spans.clear()
        response = client.post("/divide", json={"a": 1, "b": 0},
                               headers={"traceparent": f"00-{TRACE}-{PARENT}-00"})
    assert response.status_code == 500
    assert spans.get_finished_spans() == ()
    assert {x["trace_id"] for x in lines if x["logger"].startswith("nb2api")} == {TRACE}


def test_the_sampler_ratio_applies_to_new_traces_only(make_notebook):
    exporter = InMemorySpanExporter()
    tracing.use_exporter(exporter, Sampler(parent_based=True, ratio=0.0))
    try:
        app = create_app(make_notebook(SETUP, API), otel=True)
        with TestClient(app) as client:
            client.post("/add", json={"a": 1, "b": 2})
            client.post("/add", json={"a": 1, "b": 2}, headers={"traceparent": TRACEPARENT})
    finally:
        tracing.use_exporter(None)
    [server] = by_name(exporter)["POST /add"]  # only the request whose caller sampled it
    assert format(server.context.trace_id, "032x") == TRACE
    assert "nb2api startup" not in by_name(exporter)


@pytest.mark.parametrize("name, parent_based, ratio", [
    ("always_on", False, 1.0), ("always_off", False, 0.0), ("traceidratio", False, 0.25),
    ("parentbased_always_on", True, 1.0), ("parentbased_always_off", True, 0.0),
    ("parentbased_traceidratio", True, 0.25), ("nonsense", True, 1.0),
])
def test_the_sampler_is_read_from_the_standard_variables(monkeypatch, name, parent_based, ratio):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sampler = Sampler.from_environment()
    assert (sampler.parent_based, sampler.ratio) == (parent_based, ratio)
    assert sampler.sampled(2**62, None) is (ratio > 0.25)  # 2**62 is a quarter of 2**64
    assert sampler.sampled(2**62 - 1, True) is (True if parent_based else ratio >= 0.25)


def test_tracing_on_without_the_sdk_says_how_to_install_it(make_notebook, monkeypatch, caplog):
    import importlib.util

    from nb2api.serve import telemetry

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("opentelemetry.sdk")
                        else real(name, *a))
    monkeypatch.setattr(telemetry, "_warned", set())
    caplog.set_level(logging.WARNING)  # whatever level an in-process CLI run left on the root
    app = create_app(make_notebook(SETUP, API), otel=True)
    assert app.state.runtime.tracing is None
    with TestClient(app) as client:  # serves, untraced
        assert client.post("/add", json={"a": 1, "b": 2}).json() == 13
    assert "pip install 'nb2api[otel]'" in caplog.text


def test_the_fast_path_stays_on_though_a_global_provider_is_set(make_notebook):
    """Tracing on sets the global tracer provider (for the notebook's own spans), which turns
    FastAPI's own telemetry on for any app that does not switch it off, and that makes the fast
    path hand every request to FastAPI. nb2api's app switches it off. In a subprocess: the
    global provider is set once per process."""
    notebook = make_notebook(SETUP, API)
    script = textwrap.dedent(f"""
        from fastapi.testclient import TestClient
        from opentelemetry import trace
        from nb2api import create_app

        app = create_app({str(notebook)!r}, otel=True)
        assert type(trace.get_tracer_provider()).__module__.startswith("opentelemetry.sdk")
        calls = []
        for route in app.router.routes:
            if getattr(route, "name", None) == "add":
                handler = route.app

                async def counting(scope, receive, send, handler=handler):
                    calls.append(scope["path"])
                    await handler(scope, receive, send)

                route.app = counting
        with TestClient(app) as client:
            assert client.post("/add", json={{"a": 1, "b": 2}}).json() == 13
            assert client.post("/add", json={{"a": "x"}}).status_code == 422
        print(calls)
    """)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "NB2API_"))}
    environment["OTEL_TRACES_EXPORTER"] = "none"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=environment, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['/add']"  # only the invalid body reached FastAPI's handler


def test_the_spans_of_a_server_that_exits_reach_the_receiver(make_notebook):
    """The exporter batches for a minute here: only the exit can send the spans, and the
    server waits for its exporter process to send them before it ends (with a process pool
    running, whose forked worker holds no end of the pipe)."""
    notebook = make_notebook(SETUP, API, "#| api\n#| executor: process\n"
                                         "def double(x: int) -> int:\n    return 2 * x")
    with Receiver() as receiver:
        environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                       "OTEL_BSP_SCHEDULE_DELAY": "60000"}
        with serve(notebook, "--otel", "--processes", "1", env=environment) as server, \
                server.client() as client:
            for a in range(5):
                assert client.post("/add", json={"a": a, "b": 2}).json() == a + 12
            assert client.post("/double", json={"x": 4}).json() == 8
            server.process.terminate()
            assert server.process.wait(timeout=60) == 0
        names = [span.name for _, span in otlp_spans(receiver.bodies("/v1/traces"))]
    assert names.count("POST /add") == 5
    assert names.count("call add") == 5
    assert names.count("call double") == 1
    assert names.count("nb2api startup") == 1


def test_a_receiver_that_is_down_never_fails_or_holds_up_a_request(make_notebook):
    notebook = make_notebook(SETUP, API)
    environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                   "OTEL_EXPORTER_OTLP_TIMEOUT": "500", "OTEL_BSP_SCHEDULE_DELAY": "10"}
    with serve(notebook, "--otel", "--log-format", "json", env=environment) as server, \
            server.client() as client:
        for a in range(200):
            assert client.post("/add", json={"a": a, "b": 2}).json() == a + 12
        # The exporter process tried, and said so (once, not once per batch).
        wait_until(lambda: "span exporter" in server.output(), message="the export failure")
        server.process.terminate()
        assert server.process.wait(timeout=60) == 0  # at most the export timeout to give up
        log = server.output()
    assert log.count("Failed to export") < 10
    # in the server's log format: JSON lines
    said = [json.loads(line) for line in log.splitlines() if "span exporter" in line]
    assert said and all(line["logger"] == "nb2api.otlp" for line in said)
