"""Generator routes stream NDJSON or Server-Sent Events; disconnects close the generator;
errors end the stream; a stream called as a job stores its items (issue 14, points 9-11)."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from conftest import serve, wait_until, write_notebook
from fastapi.testclient import TestClient
from jobs_helpers import gated, submit, wait_status

import nb2api

STREAMS = """#| api
import asyncio, threading, time
from typing import AsyncIterator, Iterator
import pandas as pd
from pydantic import BaseModel

class Point(BaseModel):
    x: int
    thread: str

def points(n: int) -> Iterator[Point]:
    for x in range(n):
        yield Point(x=x, thread=threading.current_thread().name)

async def ticks(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i

def chunks(n: int) -> Iterator[pd.DataFrame]:
    for start in range(0, n, 2):
        yield pd.DataFrame({"i": range(start, min(start + 2, n))})

def fails_after(n: int) -> Iterator[int]:
    for i in range(n):
        yield i
    raise ValueError("ran out of data")

def untyped():
    yield {"a": 1}
    yield [1, 2]
"""


@pytest.fixture
def client(make_notebook, tmp_path):
    def make(fast_path=True):
        app = nb2api.create_app(make_notebook(STREAMS), jobs_db=tmp_path / "jobs.db",
                                fast_path=fast_path)
        return TestClient(app, raise_server_exceptions=False)

    return make


def _lines(answer) -> list:
    return [json.loads(line) for line in answer.text.splitlines()]


def _events(text: str) -> list[tuple[str, str]]:
    """``(event, data)`` pairs; an event without a name is 'message'."""
    found = []
    for block in text.strip().split("\n\n"):
        name = re.search(r"^event: (.*)$", block, re.M)
        data = re.search(r"^data: (.*)$", block, re.M)
        found.append((name.group(1) if name else "message", data.group(1) if data else ""))
    return found


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_generator_streams_ndjson_by_default(client, fast_path):
    with client(fast_path) as c:
        answer = c.post("/points", json={"n": 3})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-ndjson"
        items = _lines(answer)
        assert [item["x"] for item in items] == [0, 1, 2]
        # a plain generator runs on the worker pool, never on the event loop
        assert all(item["thread"].startswith("nb2api-worker") for item in items)
        assert _lines(c.post("/ticks", json={"n": 4})) == [0, 1, 2, 3]
        assert _lines(c.post("/untyped", json={})) == [{"a": 1}, [1, 2]]


@pytest.mark.parametrize("fast_path", [True, False])
def test_server_sent_events_with_accept_and_a_final_end(client, fast_path):
    with client(fast_path) as c:
        answer = c.post("/ticks", json={"n": 3}, headers={"Accept": "text/event-stream"})
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = _events(answer.text)
        assert events[:3] == [("message", "0"), ("message", "1"), ("message", "2")]
        assert events[3][0] == "end"
        assert len(events) == 4


def test_yielded_dataframes_stream_as_chunks_of_records(client):
    with client() as c:
        assert _lines(c.post("/chunks", json={"n": 5})) == [
            [{"i": 0}, {"i": 1}], [{"i": 2}, {"i": 3}], [{"i": 4}]]


def test_an_error_mid_stream_ends_it_with_the_error(client, caplog):
    with client() as c, caplog.at_level(logging.ERROR, logger="nb2api"):
        lines = _lines(c.post("/fails_after", json={"n": 2}))
        assert lines[:2] == [0, 1]
        error = lines[2]["error"]
        assert error["detail"] == "fails_after() raised ValueError: ran out of data"
        assert error["error_id"] in caplog.text
        events = _events(c.post("/fails_after", json={"n": 1},
                                headers={"Accept": "text/event-stream"}).text)
        assert events[0] == ("message", "0")
        assert events[1][0] == "error"
        assert json.loads(events[1][1])["detail"].endswith("ran out of data")
        assert len(events) == 2  # no 'end' after an error


def test_openapi_lists_both_media_types_with_the_item_schema(client):
    with client() as c:
        document = c.get("/openapi.json").json()
    content = document["paths"]["/points"]["post"]["responses"]["200"]["content"]
    for media_type in ("application/x-ndjson", "text/event-stream"):
        assert content[media_type]["schema"] == {"$ref": "#/components/schemas/Point"}
    ticks = document["paths"]["/ticks"]["post"]["responses"]["200"]["content"]
    ref = ticks["text/event-stream"]["schema"]["$ref"].rpartition("/")[2]
    assert document["components"]["schemas"][ref]["type"] == "integer"


def test_a_stream_called_as_a_job_stores_its_items_as_progress(client):
    with client() as c:
        job_id = submit(c, "/ticks", {"n": 5})
        done = wait_status(c, job_id)
        assert done["status"] == "succeeded"
        assert done["progress"] == {"fraction": None, "message": "5 items"}
        result = c.get(f"/jobs/{job_id}/result")
        assert result.json() == [0, 1, 2, 3, 4]
        assert result.headers["content-type"] == "application/json"
        failed = wait_status(c, submit(c, "/fails_after", {"n": 2}))
        assert failed["status"] == "failed"
        assert failed["error"]["detail"].endswith("ran out of data")
        assert c.get(f"/jobs/{failed['id']}/result").status_code == 500


def test_a_generator_with_the_process_executor_is_refused_at_load(make_notebook):
    path = make_notebook("#| api\n#| executor: process\ndef g(n: int):\n    yield n\n")
    with pytest.raises(nb2api.NotebookError) as error:
        nb2api.create_app(path)
    assert "g() is a generator" in str(error.value)
    assert "cell 1" in str(error.value)


LIVE = """#| api
import asyncio, os, time
from typing import AsyncIterator, Iterator
{gate}
CLOSED = {closed!r}

def first_then_gate() -> Iterator[int]:
    yield 1
    _wait_for_gate()
    yield 2

def endless() -> Iterator[int]:
    try:
        i = 0
        while True:
            i += 1
            time.sleep(0.01)
            yield i
    finally:
        open(os.path.join(CLOSED, "thread"), "w").close()

async def endless_async() -> AsyncIterator[int]:
    try:
        i = 0
        while True:
            i += 1
            await asyncio.sleep(0.01)
            yield i
    finally:
        open(os.path.join(CLOSED, "event loop"), "w").close()
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    closed = folder / "closed"
    closed.mkdir()
    path = write_notebook(folder, LIVE.format(gate=gated(folder / "gate"), closed=str(closed)))
    with serve(path, "--max-workers", "2") as server:
        yield server, folder / "gate", closed


def test_the_first_item_arrives_as_soon_as_it_is_yielded(live):
    server, gate, _ = live
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        with c.stream("POST", "/first_then_gate", json={}) as answer:
            lines = answer.iter_lines()
            assert next(lines) == "1"  # while the generator still waits on the gate
            gate.touch()
            assert next(lines) == "2"


@pytest.mark.parametrize(("route", "where"), [("/endless", "thread"),
                                              ("/endless_async", "event loop")])
def test_a_disconnect_closes_the_generator_and_frees_the_worker(live, route, where):
    server, _, closed = live
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        with c.stream("POST", route, json={}) as answer:
            lines = answer.iter_lines()
            assert next(lines) == "1"
            assert next(lines) == "2"
        # the connection is closed: the generator's finally runs
        wait_until(lambda: (closed / where).exists(), timeout=10,
                   message=f"the {where} generator to be closed")

        def idle() -> bool:
            metrics = c.get("/metrics").text
            return 'nb2api_pool_busy_workers{executor="thread"} 0.0' in metrics

        wait_until(idle, timeout=10, message="the worker to be free")
        assert c.post("/first_then_gate", json={}).status_code == 200  # still serving


def test_sys_exit_in_a_generator_ends_the_stream_not_the_server(make_notebook, tmp_path):
    notebook = ("#| api\nimport sys\nfrom typing import AsyncIterator, Iterator\n"
                "def quits() -> Iterator[int]:\n    yield 1\n    sys.exit(3)\n\n"
                "async def quits_async() -> AsyncIterator[int]:\n    yield 1\n    sys.exit(3)\n")
    app = nb2api.create_app(make_notebook(notebook), jobs_db=tmp_path / "jobs.db")
    with TestClient(app, raise_server_exceptions=False) as c:
        for route in ("/quits", "/quits_async"):
            lines = _lines(c.post(route, json={}))
            assert lines[0] == 1
            assert lines[1]["error"]["detail"] == f"{route[1:]}() raised SystemExit: 3"
        assert c.get("/healthz").status_code == 200


def test_an_item_that_does_not_match_its_annotation_ends_the_stream(make_notebook, tmp_path):
    notebook = ("#| api\nfrom typing import Iterator\n"
                "def numbers() -> Iterator[int]:\n    yield 1\n    yield 'two'\n")
    app = nb2api.create_app(make_notebook(notebook), jobs_db=tmp_path / "jobs.db")
    with TestClient(app, raise_server_exceptions=False) as c:
        lines = _lines(c.post("/numbers", json={}))
        assert lines[0] == 1
        assert lines[1]["error"]["detail"].startswith(
            "numbers() yielded an item that does not match its annotation: ")
