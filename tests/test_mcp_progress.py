"""MCP progress: ``nb2api.progress(...)`` in a tool's function reaches the official client's
``progress_callback``, in order and before the result, over Streamable HTTP and over stdio, for
``async def``, ``def`` (thread pool) and ``#| executor: process`` functions."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from conftest import serve, write_notebook
from hypothesis import given
from hypothesis import strategies as st
from mcp_helpers import over_http, over_stdio

from nb2api.mcp.http import _asks_progress

STEPS = "[(0.25, 'loading'), (0.5, 'fitting'), (1.0, 'done')]"
REPORTS = [(0.25, 1.0, "loading"), (0.5, 1.0, "fitting"), (1.0, 1.0, "done")]
ROUTES = ["on_loop", "on_thread", "on_process"]


def _notebook(make_notebook):
    return make_notebook(
        "#| setup\nimport nb2api",
        "#| api\n"
        "async def on_loop(n: int) -> int:\n"
        f"    for fraction, message in {STEPS}:\n"
        "        nb2api.progress(fraction, message)\n"
        "    return n + 1\n\n\n"
        "def on_thread(n: int) -> int:\n"
        f"    for fraction, message in {STEPS}:\n"
        "        nb2api.progress(fraction, message)\n"
        "    return n + 2\n\n\n"
        "#| executor: process\n"
        "def on_process(n: int) -> int:\n"
        f"    for fraction, message in {STEPS}:\n"
        "        nb2api.progress(fraction, message)\n"
        "    return n + 3\n\n\n"
        "#| executor: process\n"
        "def many(n: int) -> int:\n"
        "    for step in range(1, n + 1):\n"
        "        nb2api.progress(step / n, f'step {step}')\n"
        "    return n\n\n\n"
        "def halfway(n: int) -> int:\n"
        "    nb2api.progress(0.5, 'half way')\n"
        "    raise ValueError('stuck')\n",
    )


async def _calls(session):
    """Each route called with a progress callback, then without one: what the callback heard
    (and whether the result had come yet) and the results."""
    heard: dict[str, list] = {}
    results: dict[str, object] = {}
    for route in ROUTES:
        heard[route] = []

        async def callback(progress, total, message, route=route):
            heard[route].append((progress, total, message, route in results))

        results[route] = await session.call_tool(route, {"n": 1}, progress_callback=callback)
    plain = [await session.call_tool(route, {"n": 1}) for route in ROUTES]
    return heard, results, plain


def _check(heard, results, plain):
    for expected, route in enumerate(ROUTES, start=2):
        assert heard[route] == [(*report, False) for report in REPORTS], route
        assert results[route].structured_content == {"result": expected}
        assert not results[route].is_error
    assert [r.structured_content for r in plain] == [{"result": n} for n in (2, 3, 4)]


def test_progress_over_http(make_notebook):
    with serve(_notebook(make_notebook)) as server:
        heard, results, plain = over_http(f"{server.base_url}/mcp", _calls)
    _check(heard, results, plain)


def test_many_reports_of_a_worker_process_arrive_all_and_in_order(make_notebook):
    """A worker process's reports come over a pipe of their own, which the server may read after
    the result: the latest come back with the result, so none is lost or out of order."""
    with serve(_notebook(make_notebook)) as server:
        async def work(session):
            heard = []

            async def callback(progress, total, message):
                heard.append((progress, message))

            rounds = []
            for _ in range(3):
                heard.clear()
                result = await session.call_tool("many", {"n": 40}, progress_callback=callback)
                rounds.append((list(heard), result.structured_content))
            return rounds

        rounds = over_http(f"{server.base_url}/mcp", work)
    for heard, result in rounds:
        assert heard == [(step / 40, f"step {step}") for step in range(1, 41)]
        assert result == {"result": 40}


def test_progress_over_stdio(make_notebook):
    heard, results, plain = over_stdio(_notebook(make_notebook), _calls)
    _check(heard, results, plain)


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_call_with_a_token_is_answered_as_an_event_stream(make_notebook, fast_path):
    """On the wire: a ``tools/call`` with ``_meta.progressToken`` gets ``text/event-stream``
    with the notifications, then the result; without a token, one JSON body as before; a
    client that takes no event stream gets JSON (its progress has nowhere to go)."""
    from fastapi.testclient import TestClient

    import nb2api

    app = nb2api.create_app(_notebook(make_notebook), fast_path=fast_path)
    both = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}

    def call(meta, headers=both):
        params = {"name": "on_thread", "arguments": {"n": 1}}
        if meta is not None:
            params["_meta"] = meta
        return client.post("/mcp", json={"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                                          "params": params}, headers=headers)

    with TestClient(app) as client:
        streamed = call({"progressToken": "tok-1"})
        plain = call(None)
        json_only = call({"progressToken": "tok-2"},
                         {**both, "Accept": "application/json"})
        boolean = call({"progressToken": True})  # not a token (MCP: a string or a number)
        rest = client.post("/on_thread", json={"n": 1})

    assert streamed.headers["content-type"].startswith("text/event-stream")
    messages = [json.loads(line[len("data: "):]) for line in streamed.text.splitlines()
                if line.startswith("data: ") and line != "data: "]
    notes = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    assert notes == [{"progressToken": "tok-1", "progress": p, "total": t, "message": m}
                     for p, t, m in REPORTS]
    assert messages[-1]["id"] == 9
    assert messages[-1]["result"]["structuredContent"] == {"result": 3}
    assert len(messages) == len(REPORTS) + 1

    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["result"]["structuredContent"] == {"result": 3}
    assert json_only.headers["content-type"].startswith("application/json")
    assert json_only.json()["result"]["structuredContent"] == {"result": 3}
    assert boolean.headers["content-type"] == "application/json"
    assert boolean.json()["result"]["structuredContent"] == {"result": 3}
    assert rest.json() == 3
    assert httpx.codes.OK == streamed.status_code


def test_reports_before_a_failure_then_the_error_result(make_notebook):
    with serve(_notebook(make_notebook)) as server:
        async def work(session):
            heard = []

            async def callback(progress, total, message):
                heard.append((progress, total, message))

            return heard, await session.call_tool("halfway", {"n": 1}, progress_callback=callback)

        heard, result = over_http(f"{server.base_url}/mcp", work)
        alive = httpx.post(f"{server.base_url}/on_thread", json={"n": 1}).json()
    assert heard == [(0.5, 1.0, "half way")]
    assert result.is_error and json.loads(result.content[0].text)["detail"] == (
        "halfway() raised ValueError: stuck")
    assert alive == 3


def test_progress_with_the_2026_protocol_client(make_notebook):
    """``mcp.Client`` speaks the 2026-07-28 per-request protocol: its progress comes the same."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    with serve(_notebook(make_notebook), "--token", "tok") as server:
        async def run():
            heard = []

            async def callback(progress, total, message):
                heard.append((progress, total, message))

            async with httpx2.AsyncClient(headers={"Authorization": "Bearer tok"}) as http:
                transport = streamable_http_client(f"{server.base_url}/mcp", http_client=http)
                async with Client(transport) as client:
                    result = await client.call_tool("on_process", {"n": 1},
                                                    progress_callback=callback)
                    return client.protocol_version, heard, result

        version, heard, result = asyncio.run(asyncio.wait_for(run(), 60))
    assert version == "2026-07-28"
    assert heard == REPORTS
    assert result.structured_content == {"result": 4}


def test_progress_from_the_root_mcp_of_several_notebooks(tmp_path):
    folder = tmp_path / "team"
    write_notebook(folder, "#| setup\nimport nb2api",
                   "#| api\ndef fit(n: int) -> int:\n"
                   f"    for fraction, message in {STEPS}:\n"
                   "        nb2api.progress(fraction, message)\n    return n",
                   name="model.ipynb")
    write_notebook(folder, "#| api\ndef ping() -> str:\n    return 'pong'", name="other.ipynb")
    with serve(folder, "--token", "team-token") as server:
        async def work(session):
            heard = []

            async def callback(progress, total, message):
                heard.append((progress, total, message))

            return heard, await session.call_tool("model_fit", {"n": 5},
                                                  progress_callback=callback)

        heard, result = over_http(f"{server.base_url}/mcp", work, token="team-token")
        anonymous = httpx.post(f"{server.base_url}/mcp", json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "model_fit", "arguments": {"n": 5},
                       "_meta": {"progressToken": 1}}},
            headers={"Accept": "application/json, text/event-stream"})
    assert heard == REPORTS and result.structured_content == {"result": 5}
    assert anonymous.status_code == 401


BOTH = [(b"accept", b"application/json, text/event-stream")]


@given(st.binary(max_size=200) | st.builds(
    lambda value: json.dumps(value).encode(),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                 lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.sampled_from(["method", "params", "_meta", "progressToken",
                                                    "name", "x"]), inner, max_size=4),
                 max_leaves=8)))
def test_any_body_is_checked_for_a_progress_token_without_failing(body):
    assert _asks_progress(body, BOTH) in (True, False)


@given(st.integers() | st.text(max_size=20))
def test_a_tools_call_with_a_token_asks_for_progress(token):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "f", "_meta": {"progressToken": token}}}).encode()
    assert _asks_progress(body, BOTH)
    assert not _asks_progress(body, [(b"accept", b"application/json")])
    other = body.replace(b'"tools/call"', b'"tools/list"')
    assert not _asks_progress(other, BOTH)
    boolean = json.dumps({"method": "tools/call", "params": {"_meta": {"progressToken": True}}})
    assert not _asks_progress(boolean.encode(), BOTH)


def test_a_client_that_goes_away_mid_call_leaves_the_server_serving(make_notebook, tmp_path):
    """The event stream is closed after the first report: the call runs to its end (counted as
    answered), its further reports go nowhere, and the next calls are answered."""
    from conftest import wait_until
    from jobs_helpers import gated

    gate = tmp_path / "client-gone"
    path = make_notebook(
        "#| setup\nimport nb2api\n" + gated(gate),
        "#| api\ndef slow(n: int) -> int:\n    for step in range(n):\n"
        "        nb2api.progress((step + 1) / n, f'step {step + 1}')\n"
        "        if step == 0 and n > 3:\n"
        "            _wait_for_gate()  # until the client has gone\n    return n",
    )
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "slow", "arguments": {"n": 200}, "_meta": {"progressToken": 7}}}
    headers = {"Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    with serve(path) as server:
        with httpx.Client(timeout=60) as client, \
                client.stream("POST", f"{server.base_url}/mcp", json=call,
                              headers=headers) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = next(line for line in stream.iter_lines() if line.startswith("data: "))
        assert json.loads(first[len("data: "):])["params"]["progress"] == 0.005
        gate.touch()  # the stream is closed: the call goes on with its 199 other reports

        def finished() -> bool:
            metrics = httpx.get(f"{server.base_url}/metrics").text
            return 'route="/slow",status="200"} 1.0' in metrics

        wait_until(finished, timeout=60, message="the abandoned call to finish")

        async def work(session):
            heard = []

            async def callback(progress, total, message):
                heard.append(message)

            return heard, await session.call_tool("slow", {"n": 3}, progress_callback=callback)

        heard, result = over_http(f"{server.base_url}/mcp", work)
        output = server.output()
    assert heard == ["step 1", "step 2", "step 3"]
    assert result.structured_content == {"result": 3}
    assert "Traceback" not in output


def test_reporting_sends_each_report_in_order_from_the_loop_and_a_thread():
    """The relay alone: reports from the event loop and then from a pool thread are sent in the
    order they were made, all before the block ends; a report without a fraction keeps the last
    fraction (MCP's progress is a number), an empty message is none."""
    import nb2api
    from nb2api.mcp.progress import reporting

    sent = []

    async def send(progress, total, message):
        await asyncio.sleep(0)  # a real send yields to the loop
        sent.append((progress, total, message))

    def work() -> None:
        for step in range(1, 51):
            nb2api.progress(step / 100, f"thread {step}")
        nb2api.progress(None, "")

    async def run():
        async with reporting(send):
            nb2api.progress(0.0, "on the loop")
            nb2api.progress(None, "still starting")
            await asyncio.to_thread(work)  # copies the context, as the worker pool does
        ended = list(sent)
        nb2api.progress(1.0, "after the block")  # no tool call any more: goes nowhere
        await asyncio.sleep(0)
        return ended

    ended = asyncio.run(run())
    assert ended == sent
    assert sent == [(0.0, 1.0, "on the loop"), (0.0, 1.0, "still starting"),
                    *[(step / 100, 1.0, f"thread {step}") for step in range(1, 51)],
                    (0.5, 1.0, None)]
