"""Spans of work that serves requests apart from them: a batched call serving several requests,
a job run after its 202, an MCP tool call inside the ``/mcp`` request (serve/tracing.py's
BatchSpans, JobSpan and ToolSpan), through the SDK's in-memory exporter."""

from __future__ import annotations

import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import wait_until
from fastapi.testclient import TestClient
from jobs_helpers import ASYNC, wait_status
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nb2api import create_app
from nb2api.serve.jobs.store import JobStore

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"

# One batch of four items, never cut by time (a minute); -1 fails the whole batch.
BATCHED = """#| api
#| batch: max_size=4, max_wait_ms=60000
def double(xs: list[int]) -> list[int]:
    if -1 in xs:
        raise ValueError("minus one")
    return [2 * x for x in xs]
"""

API = """#| api
import nb2api

def add(a: int, b: int) -> int:
    return a + b

def divide(a: int, b: int) -> float:
    x = a
    return x / b

async def ratio(a: int, b: int) -> float:
    return a / b
"""


def named(exporter: InMemorySpanExporter, name: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def children(exporter: InMemorySpanExporter, parent) -> dict[str, object]:
    return {span.name: span for span in exporter.get_finished_spans()
            if span.parent is not None and span.parent.span_id == parent.context.span_id}


def hex_ids(span) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def post_together(client: TestClient, path: str, bodies: list[dict]) -> list:
    with ThreadPoolExecutor(len(bodies)) as threads:
        return list(threads.map(lambda body: client.post(path, json=body), bodies))


# --- batched calls --------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["thread", "process"])
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
def test_a_batch_is_one_span_linked_to_each_request_it_serves(make_notebook, spans, fast_path,
                                                              executor):
    cells = BATCHED if executor == "thread" else BATCHED.replace(
        "#| api\n", "#| api\n#| executor: process\n", 1)
    app = create_app(make_notebook(cells), otel=True, fast_path=fast_path, processes=1)
    with TestClient(app) as client:
        spans.clear()
        answers = post_together(client, "/double", [{"xs": [1]}, {"xs": [2, 3]}, {"xs": [4]}])
        assert sorted(a.json() for a in answers) == [[2], [4, 6], [8]]
        wait_until(lambda: len(named(spans, "POST /double")) == 3, message="3 server spans")
    [batch] = named(spans, "batch double")
    assert batch.parent is None  # a trace of its own
    assert batch.attributes["nb2api.batch.size"] == 4
    assert batch.attributes["nb2api.batch.requests"] == 3
    assert batch.attributes["nb2api.route"] == "/double"
    assert batch.status.status_code is StatusCode.UNSET
    servers = named(spans, "POST /double")
    # The batch links to every request's server span ...
    assert ({(link.context.trace_id, link.context.span_id) for link in batch.links}
            == {(s.context.trace_id, s.context.span_id) for s in servers})
    batch_trace, batch_span = hex_ids(batch)
    for server in servers:
        assert server.kind is SpanKind.SERVER
        assert server.context.trace_id != batch.context.trace_id
        # ... and each request's span names the batch that served it.
        assert server.attributes["nb2api.batch.trace_id"] == batch_trace
        assert server.attributes["nb2api.batch.span_id"] == batch_span
        stages = children(spans, server)
        assert set(stages) == {"validate", "queue", "encode"}
        # it waited for the batch until the batch started, and was encoded after it ran
        assert stages["queue"].end_time <= batch.start_time + 1
        assert batch.start_time <= stages["encode"].start_time
        assert stages["validate"].end_time <= stages["queue"].start_time


def test_the_batch_span_is_current_in_the_batched_call(make_notebook, spans):
    """Spans the notebook's code makes in a batched call nest under the batch's span."""
    cells = BATCHED.replace(
        "    return [2 * x for x in xs]",
        "    from opentelemetry import trace\n"
        "    context = trace.get_current_span().get_span_context()\n"
        "    SEEN.append([format(context.trace_id, '032x'), format(context.span_id, '016x')])\n"
        "    return [2 * x for x in xs]\n\n"
        "SEEN = []")
    app = create_app(make_notebook(cells, "#| api\ndef seen() -> list:\n    return SEEN"),
                     otel=True)
    with TestClient(app) as client:
        spans.clear()
        post_together(client, "/double", [{"xs": [1]}, {"xs": [2]}, {"xs": [3, 4]}])
        current = client.post("/seen").json()
    [batch] = named(spans, "batch double")
    assert current == [list(hex_ids(batch))]


@pytest.mark.parametrize("executor", ["thread", "process"])
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
def test_a_failed_batch_records_its_error_id_and_cell_on_the_batch_span(make_notebook, spans,
                                                                       fast_path, executor):
    cells = BATCHED if executor == "thread" else BATCHED.replace(
        "#| api\n", "#| api\n#| executor: process\n", 1)
    app = create_app(make_notebook(cells), otel=True, fast_path=fast_path, processes=1)
    with TestClient(app, raise_server_exceptions=False) as client:
        spans.clear()
        answers = post_together(client, "/double", [{"xs": [1]}, {"xs": [-1]}, {"xs": [3, 4]}])
        wait_until(lambda: len(named(spans, "POST /double")) == 3, message="3 server spans")
    [error_id] = {answer.json()["error_id"] for answer in answers}  # one 500 for the batch
    [batch] = named(spans, "batch double")
    assert batch.status.status_code is StatusCode.ERROR
    assert batch.attributes["nb2api.error_id"] == error_id
    [event] = batch.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["nb2api.error_id"] == error_id
    assert event.attributes["nb2api.cell"] == 1
    assert event.attributes["nb2api.cell.line"] == (5 if executor == "thread" else 6)
    for server in named(spans, "POST /double"):
        assert server.attributes["nb2api.error_id"] == error_id
        assert server.status.status_code is StatusCode.ERROR
        assert server.attributes["nb2api.batch.span_id"] == hex_ids(batch)[1]


def test_a_request_larger_than_a_batch_is_a_batch_of_its_own(make_notebook, spans):
    app = create_app(make_notebook(BATCHED), otel=True)
    with TestClient(app) as client:
        spans.clear()
        assert client.post("/double", json={"xs": [1, 2, 3, 4, 5]}).json() == [2, 4, 6, 8, 10]
    [batch] = named(spans, "batch double")
    [server] = named(spans, "POST /double")
    [link] = batch.links
    assert link.context.span_id == server.context.span_id
    assert batch.attributes["nb2api.batch.requests"] == 1
    assert batch.attributes["nb2api.batch.size"] == 5
    assert server.attributes["nb2api.batch.span_id"] == hex_ids(batch)[1]


def test_a_request_that_times_out_waiting_for_its_batch_has_a_queue_span(make_notebook, spans):
    cells = BATCHED.replace("#| batch:", "#| timeout: 0.2\n#| batch:")
    app = create_app(make_notebook(cells), otel=True)
    with TestClient(app) as client:
        spans.clear()
        assert client.post("/double", json={"xs": [1]}).status_code == 504  # nobody joined
    [server] = named(spans, "POST /double")
    assert set(children(spans, server)) == {"validate", "queue"}
    assert "nb2api.batch.span_id" not in server.attributes
    assert not named(spans, "batch double")


# --- jobs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
def test_a_job_runs_in_its_own_span_linked_to_the_request_that_submitted_it(
        make_notebook, spans, tmp_path, fast_path):
    app = create_app(make_notebook(API), otel=True, fast_path=fast_path,
                     jobs_db=tmp_path / "jobs.db")
    with TestClient(app) as client:
        spans.clear()
        answer = client.post("/add", json={"a": 1, "b": 2},
                             headers={**ASYNC, "traceparent": TRACEPARENT})
        assert answer.status_code == 202
        job_id = answer.json()["id"]
        assert wait_status(client, job_id)["status"] == "succeeded"
        wait_until(lambda: named(spans, "job add"), message="the job's span")
    [server] = named(spans, "POST /add")
    assert server.attributes["nb2api.job.id"] == job_id
    assert server.attributes["http.response.status_code"] == 202
    assert set(children(spans, server)) == {"validate"}  # answered at once
    [run] = named(spans, "job add")
    assert run.parent is None
    assert run.context.trace_id != server.context.trace_id
    [link] = run.links
    assert (link.context.trace_id, link.context.span_id) == (server.context.trace_id,
                                                              server.context.span_id)
    assert format(link.context.trace_id, "032x") == TRACE  # the caller's trace
    assert run.attributes["nb2api.job.id"] == job_id
    assert run.attributes["nb2api.job.status"] == "succeeded"
    assert run.attributes["nb2api.job.attempt"] == 1
    assert run.attributes["nb2api.route"] == "/add"
    assert run.status.status_code is StatusCode.UNSET
    assert {"queue", "call add", "encode"} <= set(children(spans, run))
    assert run.end_time >= children(spans, run)["call add"].end_time


def test_a_failed_job_records_its_error_id_and_the_cell_and_line(make_notebook, spans,
                                                                 tmp_path):
    app = create_app(make_notebook(API), otel=True, jobs_db=tmp_path / "jobs.db")
    with TestClient(app) as client:
        spans.clear()
        job_id = client.post("/divide", json={"a": 1, "b": 0}, headers=ASYNC).json()["id"]
        done = wait_status(client, job_id)
        wait_until(lambda: named(spans, "job divide"), message="the job's span")
    assert done["status"] == "failed"
    error_id = done["error"]["error_id"]
    [run] = named(spans, "job divide")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["nb2api.job.status"] == "failed"
    assert run.attributes["nb2api.error_id"] == error_id
    [event] = [e for e in run.events if e.name == "exception"]
    assert event.attributes["nb2api.error_id"] == error_id
    assert event.attributes["exception.type"] == "ZeroDivisionError"
    assert event.attributes["nb2api.cell"] == 1
    assert event.attributes["nb2api.cell.line"] == 9
    call = children(spans, run)["call divide"]
    assert call.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("stored", [TRACEPARENT, None], ids=["stored-ids", "no-ids"])
def test_a_job_recovered_from_the_file_links_to_the_ids_stored_with_it(make_notebook, spans,
                                                                       tmp_path, stored):
    """A job queued by an earlier server (here: written to the file before this one starts)
    runs with a link to the request that submitted it, or with none when none was kept."""
    path = make_notebook(API)
    db = tmp_path / "jobs.db"
    store = JobStore(db, path.name)
    store.add("earlier-job", "add", pickle.dumps(((), {"a": 2, "b": 3})), retries=0,
              webhook=None, max_active=10, traceparent=stored)
    store.close()
    app = create_app(path, otel=True, jobs_db=db)
    with TestClient(app) as client:
        assert wait_status(client, "earlier-job")["status"] == "succeeded"
        assert client.get("/jobs/earlier-job/result").json() == 5
        wait_until(lambda: named(spans, "job add"), message="the job's span")
    [run] = named(spans, "job add")
    assert run.attributes["nb2api.job.id"] == "earlier-job"
    if stored is None:
        assert not run.links
    else:
        [link] = run.links
        assert format(link.context.trace_id, "032x") == TRACE
        assert format(link.context.span_id, "016x") == PARENT


def test_a_job_file_from_before_gets_the_column_for_the_span_context(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, notebook TEXT NOT NULL, route TEXT "
                "NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, started REAL, finished "
                "REAL, progress TEXT, error TEXT, arguments BLOB, result BLOB, result_status "
                "INTEGER, result_type TEXT, webhook TEXT, deliveries TEXT NOT NULL DEFAULT "
                "'[]', attempts INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0, "
                "owner TEXT, heartbeat REAL)")
    old.execute("INSERT INTO jobs (id, notebook, route, status, created, arguments) "
                "VALUES ('old', 'nb.ipynb', 'add', 'queued', ?, x'00')", (time.time(),))
    old.commit()
    old.close()
    store = JobStore(db, "nb.ipynb")
    [claimed] = store.claim("me", 5)
    assert (claimed.id, claimed.traceparent) == ("old", None)
    store.close()


def test_an_unsampled_request_makes_an_unsampled_job(make_notebook, spans, tmp_path):
    app = create_app(make_notebook(API), otel=True, jobs_db=tmp_path / "jobs.db")
    with TestClient(app) as client:
        spans.clear()
        job_id = client.post("/add", json={"a": 1, "b": 2},
                             headers={**ASYNC, "traceparent": f"00-{TRACE}-{PARENT}-00"}
                             ).json()["id"]
        assert wait_status(client, job_id)["status"] == "succeeded"
        # a sampled request after it: its spans arrive after the job's would have
        client.post("/add", json={"a": 1, "b": 1})
        wait_until(lambda: named(spans, "POST /add"), message="the sampled request's span")
    assert not named(spans, "job add")
    [server] = named(spans, "POST /add")  # the sampled request's, not the job's
    [call] = named(spans, "call add")
    assert call.parent.span_id == server.context.span_id


# --- MCP ------------------------------------------------------------------------------------


def tool_call(client: TestClient, name: str, arguments: dict, **headers: str):
    return client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                     "params": {"name": name, "arguments": arguments}},
                       headers={"Accept": "application/json, text/event-stream",
                                "MCP-Protocol-Version": "2025-11-25", **headers})


def result_of(answer) -> dict:
    text = answer.text
    if text.startswith("event:") or "data:" in text.split("\n", 1)[0]:
        import json

        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
        return json.loads(text)["result"]
    return answer.json()["result"]


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "fastapi"])
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "sdk"])
@pytest.mark.parametrize("route, stages", [("add", {"validate", "queue", "call add", "encode"}),
                                           ("ratio", {"validate", "call ratio", "encode"})])
def test_a_tool_call_is_a_span_under_the_mcp_request_with_the_rest_stages(
        make_notebook, spans, fast_path, direct, route, stages):
    app = create_app(make_notebook(API), otel=True, fast_path=fast_path)
    with TestClient(app) as client:
        app.state.mcp.direct = direct
        spans.clear()
        answer = tool_call(client, route, {"a": 1, "b": 2}, traceparent=TRACEPARENT)
        assert answer.status_code == 200
        assert result_of(answer)["structuredContent"]["result"] in (3, 0.5)
        wait_until(lambda: named(spans, "POST /mcp"), message="the /mcp server span")
    [server] = named(spans, "POST /mcp")
    assert format(server.context.trace_id, "032x") == TRACE
    [tool] = named(spans, f"tools/call {route}")
    assert tool.parent.span_id == server.context.span_id
    assert tool.context.trace_id == server.context.trace_id
    assert tool.attributes["gen_ai.tool.name"] == route
    assert tool.attributes["mcp.method.name"] == "tools/call"
    assert tool.attributes["nb2api.route"] == f"/{route}"
    assert tool.attributes["nb2api.tool.status"] == 200
    assert set(children(spans, tool)) == stages
    assert set(children(spans, server)) == {f"tools/call {route}"}
    assert server.start_time <= tool.start_time <= tool.end_time <= server.end_time


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "sdk"])
def test_a_failing_tool_call_records_its_error_id_and_cell_on_its_span(make_notebook, spans,
                                                                       direct):
    import re

    app = create_app(make_notebook(API), otel=True)
    with TestClient(app) as client:
        app.state.mcp.direct = direct
        spans.clear()
        answer = tool_call(client, "divide", {"a": 1, "b": 0})
        result = result_of(answer)
        wait_until(lambda: named(spans, "POST /mcp"), message="the /mcp server span")
    assert result["isError"] is True
    error_id = re.search(r'"error_id":\s*"([0-9a-f]{12})"', result["content"][0]["text"])[1]
    [tool] = named(spans, "tools/call divide")
    assert tool.status.status_code is StatusCode.ERROR
    assert tool.attributes["nb2api.error_id"] == error_id
    assert tool.attributes["nb2api.tool.status"] == 500
    [event] = [e for e in tool.events if e.name == "exception"]
    assert (event.attributes["nb2api.cell"], event.attributes["nb2api.cell.line"]) == (1, 9)
    assert children(spans, tool)["call divide"].status.status_code is StatusCode.ERROR


def test_an_invalid_tool_call_has_a_failed_validate_span(make_notebook, spans):
    app = create_app(make_notebook(API), otel=True)
    with TestClient(app) as client:
        spans.clear()
        assert result_of(tool_call(client, "add", {"a": "one"}))["isError"] is True
        wait_until(lambda: named(spans, "POST /mcp"), message="the /mcp server span")
    [tool] = named(spans, "tools/call add")
    assert tool.attributes["nb2api.tool.status"] == 422
    validate = children(spans, tool)["validate"]
    assert validate.status.status_code is StatusCode.ERROR
    assert "call add" not in children(spans, tool)


# --- links on the wire ----------------------------------------------------------------------


def test_links_are_written_in_otlp_as_the_protobuf_classes_read_them():
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from nb2api.serve.otlp import readable_maker, record

    linked = [(int(TRACE, 16), int(PARENT, 16), {}),
              (2**128 - 1, 2**64 - 1, {"nb2api.note": "last", "n": 3})]
    batch_record = record("batch double", 7, 8, 0, 1_000, 2_000,
                          attributes={"nb2api.batch.size": 4}, links=linked)
    readable = readable_maker(Resource({"service.name": "s"}), InstrumentationScope("nb2api", "1"))
    request = ExportTraceServiceRequest()
    request.ParseFromString(encode_spans(
        [readable(batch_record), readable(record("plain", 7, 9, 8, 1, 2))]).SerializeToString())
    [batch, plain] = request.resource_spans[0].scope_spans[0].spans
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in batch.links] == [
        (TRACE, PARENT), ("f" * 32, "f" * 16)]
    assert {a.key: a.value for a in batch.links[1].attributes}["n"].int_value == 3
    # The SDK's encoder writes a link's remote flags: known (0x100), and not remote (0x200).
    assert batch.links[0].flags & 0x300 == 0x100
    assert batch.attributes[0].value.int_value == 4
    assert batch.end_time_unix_nano == 2_000
    assert not plain.links


def test_a_batch_a_job_and_a_tool_call_reach_an_otlp_receiver_linked(make_notebook):
    from conftest import serve
    from telemetry_helpers import Receiver, otlp_attributes, otlp_spans

    notebook = make_notebook(BATCHED, API)
    with Receiver() as receiver:
        environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        with serve(notebook, env=environment) as server, server.client() as client:
            with ThreadPoolExecutor(3) as threads:
                list(threads.map(lambda xs: client.post("/double", json={"xs": xs}),
                                 [[1], [2], [3, 4]]))
            job_id = client.post("/add", json={"a": 1, "b": 2}, headers=ASYNC).json()["id"]
            assert wait_status(client, job_id)["status"] == "succeeded"
            assert tool_call(client, "add", {"a": 1, "b": 2}).status_code == 200

            def exported() -> list:
                found = [span for _, span in otlp_spans(receiver.bodies("/v1/traces"))]
                names = [span.name for span in found]
                complete = (names.count("POST /double") == 3 and "batch double" in names
                            and "job add" in names and "tools/call add" in names
                            and "POST /mcp" in names and names.count("call add") == 2)
                return found if complete else []

            found = wait_until(exported, message="the spans at the receiver")
    [batch] = [span for span in found if span.name == "batch double"]
    servers = [span for span in found if span.name == "POST /double"]
    assert ({(link.trace_id, link.span_id) for link in batch.links}
            == {(span.trace_id, span.span_id) for span in servers})
    assert otlp_attributes(batch)["nb2api.batch.size"] == 4
    [submit] = [span for span in found if span.name == "POST /add"]
    [run] = [span for span in found if span.name == "job add"]
    assert [(link.trace_id, link.span_id) for link in run.links] == [(submit.trace_id,
                                                                      submit.span_id)]
    assert otlp_attributes(run)["nb2api.job.id"] == job_id
    [mcp] = [span for span in found if span.name == "POST /mcp"]
    [tool] = [span for span in found if span.name == "tools/call add"]
    assert tool.parent_span_id == mcp.span_id
    calls = {span.parent_span_id for span in found if span.name == "call add"}
    assert calls == {run.span_id, tool.span_id}


def test_a_job_cancelled_while_it_runs_ends_its_span_as_cancelled(make_notebook, spans,
                                                                  tmp_path):
    started = tmp_path / "started"
    cells = ("#| api\nimport pathlib, time, nb2api\n"
             "def polite() -> int:\n"
             f"    pathlib.Path({str(started)!r}).touch()\n"
             "    deadline = time.monotonic() + 60\n"
             "    while not nb2api.cancelled() and time.monotonic() < deadline:\n"
             "        time.sleep(0.01)\n"
             "    return 1")
    app = create_app(make_notebook(cells), otel=True, jobs_db=tmp_path / "jobs.db")
    with TestClient(app) as client:
        job_id = client.post("/polite", headers=ASYNC).json()["id"]
        wait_until(started.exists, message="the job to start")
        assert client.delete(f"/jobs/{job_id}").status_code == 200
        [run] = wait_until(lambda: named(spans, "job polite"), message="the job's span")
    assert run.attributes["nb2api.job.status"] == "cancelled"
    assert run.attributes["nb2api.job.id"] == job_id
    assert "call polite" in children(spans, run)


def test_a_tool_call_outside_a_request_is_a_trace_of_its_own(make_notebook, spans):
    """As over stdio (``nb2api mcp``), where no HTTP request carries the call."""
    from nb2api.mcp.server import NotebookTools

    app = create_app(make_notebook(API), otel=True)
    with TestClient(app) as client:
        spans.clear()
        call = NotebookTools(app).calls["add"]
        result = client.portal.call(call, {"a": 1, "b": 2})
    assert result.structured_content == {"result": 3}
    [tool] = named(spans, "tools/call add")
    assert tool.parent is None
    assert set(children(spans, tool)) == {"validate", "queue", "call add", "encode"}
