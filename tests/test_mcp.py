"""MCP: the notebook's functions as tools, at /mcp (Streamable HTTP) and over stdio.

Every check goes through the official ``mcp`` client (``ClientSession``) against a real server:
the tools are the routes, described by the same schemas as ``/openapi.json``, and a tool call
answers what the REST call answers.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES, md, notebook_path, serve, wait_until
from jobs_helpers import JOB_PATHS
from mcp.shared.exceptions import MCPError
from mcp_helpers import openapi_request, over_http, over_stdio, tool_input

# Arguments for every route of the quickstart and core notebooks, in the order they are called
# (REST first, then the tool, so state-changing routes see the same state). A few are invalid
# on purpose: the tool's error detail must be REST's 422 detail.
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "quickstart": [
        ("predict", {"flower": {"sepal_length": 6.4, "sepal_width": 3.1, "petal_length": 5.5,
                                "petal_width": 1.8}}),
        ("predict", {"flower": {"sepal_length": -1, "sepal_width": 3.1, "petal_length": 5.5}}),
        ("species_summary", {"name": "virginica", "stat": "max"}),
        ("species_summary", {"name": "setosa"}),
        ("species_summary", {"name": "dandelion"}),
        ("list_species", {}),
    ],
    "core_directives": [
        ("hypot", {"a": 3.0}),
        ("hypot", {"a": "three"}),
        ("put_item", {"key": "k1", "value": 7}),
        ("get_item", {"key": "k1"}),
        ("get_item", {"key": "absent", "default": 5}),
        ("delete_item", {"key": "absent", "missing_ok": True}),
        ("delete_item", {"key": "absent"}),
        ("ping", {}),
    ],
    "core_docs": [
        ("mean", {"values": [1, 2, 3, 10], "trim": 1}),
        ("median", {"values": [3, 1, 2]}),
    ],
    "core_failures": [
        ("divide", {"a": 1, "b": 4}),
        ("divide", {"a": 1, "b": 0}),
        ("teapot", {}),
        ("ok", {}),
    ],
    "core_pool": [
        ("heavy", {"seconds": 0.01}),
        ("light", {}),
        ("loop_thread", {}),
    ],
    "core_tags": [
        ("area", {"radius": 2.0}),
        ("setup_calls", {}),
    ],
    "core_types": [
        ("constrained", {"count": 3}),
        ("constrained", {"count": 11, "ratio": 2}),
        ("choices", {"mode": "fast", "color": "green", "either": "x"}),
        ("choices", {"mode": "medium", "color": "blue"}),
        ("containers", {"items": [1, 2], "mapping": {"b": 1.5, "a": 2}, "pair": [1, "x"]}),
        ("times", {"when": "2024-01-02T03:04:05", "ident": "12345678-1234-5678-1234-567812345678"}),
        ("summarize", {"sample": {"values": [1, 2, 4], "label": "s"}}),
        ("midpoint", {"a": {"x": 0, "y": 0}, "b": {"x": 2, "y": 4}}),
        ("anything", {"payload": {"k": [1, None, "x"]}}),
        ("nothing", {}),
        ("lying", {}),
        ("greet", {"name": "Ada"}),
        ("greet", {}),
    ],
    "core_v3": [
        ("root", {"x": 9.0}),
    ],
}


def _notebook(name: str) -> Path:
    return EXAMPLES / "quickstart.ipynb" if name == "quickstart" else notebook_path(name)


def _operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (path, method, operation) for the notebook's routes (not nb2api's own
    job endpoints, which are no tools)."""
    return {
        operation["operationId"]: (path, method, operation)
        for path, methods in document["paths"].items() if path not in JOB_PATHS
        for method, operation in methods.items()
    }


def _rest(base_url: str, operations: dict, name: str, arguments: dict[str, Any]) -> httpx.Response:
    """The REST call of ``name`` with ``arguments``: path, query and body as its route takes
    them."""
    path, method, operation = operations[name]
    where = {p["name"]: p["in"] for p in operation.get("parameters", [])}
    params = {k: v for k, v in arguments.items() if where.get(k) == "query"}
    for key, value in arguments.items():
        if where.get(key) == "path":
            path = path.replace("{" + key + "}", str(value))
    body = {k: v for k, v in arguments.items() if k not in where}
    has_body = "requestBody" in operation
    return httpx.request(method.upper(), base_url + path, params=params,
                         json=body if has_body else None, timeout=60)


def _same_answer(name: str, rest: httpx.Response, result: Any) -> None:
    """The tool's result says what the REST response says."""
    if rest.status_code >= 400:
        assert result.is_error, (name, rest.status_code, result)
        answer = json.loads(result.content[0].text)
        expected = rest.json()
        if rest.status_code == 500:
            assert answer["detail"] == expected["detail"]
            assert re.fullmatch(r"[0-9a-f]{12}", answer["error_id"])
            assert answer["error_id"] != expected["error_id"]  # a new id per failure
        else:
            assert answer["detail"] == expected["detail"]
        return
    assert not result.is_error, (name, result)
    expected = rest.json()
    if name == "heavy":  # the worker thread that ran it: any of the pool's
        expected = re.sub(r"\d+$", "", expected)
        got = re.sub(r"\d+$", "", json.loads(result.content[0].text))
        assert got == expected
        return
    assert json.loads(result.content[0].text) == expected
    assert result.structured_content == (expected if isinstance(expected, dict)
                                         else {"result": expected})


@pytest.mark.parametrize("transport", ["http", "stdio"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_tools_are_the_routes_and_answer_as_rest(name: str, transport: str) -> None:
    """The tools of notebook ``name`` over ``transport`` (its server's ``/mcp``, or ``nb2api
    mcp`` over stdio, a process of its own) are its server's routes, with their request schemas,
    and each call answers what the REST call answers (each side sees the same calls in the
    same order, so state-changing routes agree)."""
    with serve(_notebook(name)) as server:
        document = httpx.get(f"{server.base_url}/openapi.json").json()
        operations = _operations(document)
        calls = CALLS[name]
        assert {route for route, _ in calls} == set(operations), "a route without a call"
        rest_answers: list[httpx.Response] = []

        async def work(session):
            listed = (await session.list_tools()).tools
            results = []
            for route, arguments in calls:
                rest_answers.append(_rest(server.base_url, operations, route, arguments))
                results.append(await session.call_tool(route, arguments))
            return listed, results

        if transport == "http":
            tools, results = over_http(f"{server.base_url}/mcp", work)
        else:
            tools, results = over_stdio(_notebook(name), work)

    assert [t.name for t in tools] == list(operations)  # one per route, in notebook order
    for tool in tools:
        path, method, operation = operations[tool.name]
        assert tool_input(tool) == openapi_request(document, path, method), tool.name
        summary = operation.get("summary")
        if summary:
            assert tool.description.startswith(summary)
    for (route, _), rest, result in zip(calls, rest_answers, results, strict=True):
        _same_answer(route, rest, result)


def _text(result: Any) -> Any:
    return json.loads(result.content[0].text)


def test_image_dataframe_and_errors(make_notebook):
    path = make_notebook(
        "#| setup\nimport pandas as pd\nimport matplotlib\nmatplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\nfrom fastapi import HTTPException",
        md("Draws a line through the points."),
        '#| api\ndef chart(points: list[float]) -> plt.Figure:\n'
        '    """A line chart of the points."""\n'
        '    figure, axes = plt.subplots(figsize=(2, 2))\n'
        '    axes.plot(points)\n    return figure\n\n\n'
        'def table(n: int) -> pd.DataFrame:\n'
        '    return pd.DataFrame({"i": range(n), "half": [i / 2 for i in range(n)]})\n\n\n'
        'def broken(x: int) -> int:\n    return {"a": 1}["b" * x]\n\n\n'
        'def refused() -> str:\n    raise HTTPException(409, "already there")\n',
    )
    with serve(path) as server:
        async def work(session):
            tools = {t.name: t for t in (await session.list_tools()).tools}
            return tools, [
                await session.call_tool("chart", {"points": [1, 3, 2]}),
                await session.call_tool("table", {"n": 3}),
                await session.call_tool("broken", {"x": 1}),
                await session.call_tool("refused", {}),
                await session.call_tool("table", {"n": "three"}),
                await session.call_tool("table", {}),
            ]

        tools, (chart, table, broken, refused, invalid, missing) = over_http(
            f"{server.base_url}/mcp", work)

        def logged() -> str | None:  # the log is written by a thread of its own
            text = server.output()
            return text if "Traceback" in text else None

        output = wait_until(logged, message="the tool's 500 in the log")

    assert tools["chart"].description == ("A line chart of the points.\n\n"
                                          "Draws a line through the points.")
    assert tools["chart"].output_schema is None  # an image: no JSON schema
    image = chart.content[0]
    assert not chart.is_error and image.type == "image" and image.mime_type == "image/png"
    assert base64.b64decode(image.data).startswith(b"\x89PNG\r\n\x1a\n")

    records = [{"i": 0, "half": 0.0}, {"i": 1, "half": 0.5}, {"i": 2, "half": 1.0}]
    assert table.structured_content == {"result": records}
    assert _text(table) == records
    assert tools["table"].output_schema["type"] == "object"
    assert tools["table"].output_schema["required"] == ["result"]

    assert broken.is_error
    detail = _text(broken)
    assert detail["detail"] == "broken() raised KeyError: 'b'"
    assert re.fullmatch(r"[0-9a-f]{12}", detail["error_id"])
    assert "traceback" not in detail
    # logged as a REST 500 is: the detail and the id, with the traceback
    assert f"broken() raised KeyError: 'b' [error_id={detail['error_id']}]" in output
    assert "Traceback" in output

    assert refused.is_error and _text(refused) == {"detail": "already there", "status": 409}
    assert invalid.is_error and _text(invalid)["detail"][0]["loc"] == ["body", "n"]
    assert _text(invalid)["detail"][0]["type"] == "int_parsing"
    assert missing.is_error and _text(missing)["detail"][0]["type"] == "missing"


def test_token_guards_mcp(make_notebook):
    path = make_notebook("#| api\ndef add(a: int, b: int) -> int:\n    return a + b")
    with serve(path, "--token", "s3cret-token") as server:
        url = f"{server.base_url}/mcp"
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}
        accept = {"Accept": "application/json, text/event-stream"}
        refused = httpx.post(url, json=initialize, headers=accept)
        wrong = httpx.post(url, json=initialize,
                           headers={**accept, "Authorization": "Bearer wrong"})

        async def work(session):
            return await session.call_tool("add", {"a": 2, "b": 3})

        result = over_http(url, work, token="s3cret-token")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert result.structured_content == {"result": 5}


def test_no_mcp_and_functions_kept_out(make_notebook):
    path = make_notebook(
        "#| api\ndef add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "#| mcp: false\ndef admin() -> str:\n    return 'only over REST'\n",
        "#| api\n#| mcp: false\ndef a() -> int:\n    return 1\n\n\ndef b() -> int:\n    return 2",
    )
    with serve(path) as server:
        async def work(session):
            tools = [t.name for t in (await session.list_tools()).tools]
            with pytest.raises(MCPError) as hidden:  # an unknown tool: a protocol error
                await session.call_tool("admin", {})
            return tools, hidden.value

        tools, hidden = over_http(f"{server.base_url}/mcp", work)
        assert httpx.post(f"{server.base_url}/admin").json() == "only over REST"
    assert tools == ["add"]  # '#| mcp: false' in a cell's header applies to all its functions
    assert "no tool named 'admin' (tools: add)" in hidden.message

    with serve(path, "--no-mcp") as server:
        assert httpx.post(f"{server.base_url}/mcp", json={}).status_code == 404
        assert httpx.post(f"{server.base_url}/add", json={"a": 1, "b": 2}).json() == 3


def test_bad_mcp_directive_names_its_cell(make_notebook, tmp_path):
    import subprocess
    import sys

    path = make_notebook("#| api\n#| mcp: nope\ndef a() -> int:\n    return 1")
    done = subprocess.run([sys.executable, "-m", "nb2api", "check", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "cell 1" in done.stderr and "'#| mcp: nope' is not 'true' or 'false'" in done.stderr
    assert "Traceback" not in done.stderr


def test_tool_calls_count_under_their_route(make_notebook):
    path = make_notebook("#| api\ndef add(a: int, b: int) -> int:\n    return a + b")
    with serve(path) as server:
        async def work(session):
            for _ in range(3):
                await session.call_tool("add", {"a": 1, "b": 1})
            await session.call_tool("add", {"a": "x"})

        over_http(f"{server.base_url}/mcp", work)
        metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'nb2api_requests_total{method="POST",route="/add",status="200"} 3.0' in metrics
    assert 'nb2api_requests_total{method="POST",route="/add",status="422"} 1.0' in metrics


def test_mcp_under_workers(make_notebook):
    path = make_notebook("#| api\nimport os\n\ndef pid() -> int:\n    return os.getpid()")
    with serve(path, "--workers", "2") as server:
        seen: set[int] = set()

        def answered_by_both() -> bool:
            async def work(session):
                return [(await session.call_tool("pid", {})).structured_content["result"]
                        for _ in range(8)]

            seen.update(over_http(f"{server.base_url}/mcp", work))
            return len(seen) == 2

        wait_until(answered_by_both, timeout=60, message="both workers answering tools")


@pytest.mark.parametrize("fast_path", [True, False])
def test_create_app_has_mcp_within_its_lifespan(make_notebook, fast_path):
    from fastapi.testclient import TestClient

    import nb2api

    path = make_notebook("#| api\ndef twice(x: float) -> float:\n    return 2 * x")
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "twice", "arguments": {"x": 2.5}}}
    headers = {"Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    app = nb2api.create_app(path, fast_path=fast_path)
    for _ in range(2):  # a second lifespan runs a fresh session manager
        with TestClient(app) as client:
            answer = client.post("/mcp", json=call, headers=headers)
            assert answer.status_code == 200
            assert answer.json()["result"]["structuredContent"] == {"result": 5.0}
            assert client.post("/twice", json={"x": 2.5}).json() == 5.0
    assert TestClient(app).post("/mcp", json=call, headers=headers).status_code == 503
    assert "/mcp" not in app.openapi()["paths"]
    without = nb2api.create_app(path, mcp=False)
    with TestClient(without) as client:
        assert client.post("/mcp", json=call, headers=headers).status_code == 404


def test_the_2026_protocol_client(make_notebook):
    """``mcp.Client`` negotiates the newest protocol (2026-07-28, no handshake), which the
    endpoint answers too."""
    import asyncio

    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    path = make_notebook("#| api\ndef add(a: int, b: int) -> int:\n    return a + b")
    with serve(path, "--token", "tok") as server:
        async def run():
            async with httpx2.AsyncClient(headers={"Authorization": "Bearer tok"}) as http:
                transport = streamable_http_client(f"{server.base_url}/mcp", http_client=http)
                async with Client(transport) as client:
                    tools = await client.list_tools()
                    return (client.protocol_version, [t.name for t in tools.tools],
                            await client.call_tool("add", {"a": 1, "b": 2}),
                            await client.call_tool("add", {"a": 1}))

        version, tools, added, invalid = asyncio.run(asyncio.wait_for(run(), 60))
    assert version == "2026-07-28"
    assert tools == ["add"]
    assert added.structured_content == {"result": 3} and not added.is_error
    assert invalid.is_error and _text(invalid)["detail"][0]["loc"] == ["body", "b"]


def test_stdio_serves_the_same_tools_and_keeps_stdout_clean(make_notebook, tmp_path):
    path = make_notebook(
        "#| setup\nimport subprocess\nprint('loading the model')\n"
        "subprocess.run(['echo', 'from a child process'])",
        "#| api\ndef shout(text: str) -> str:\n    print('shouting', text)\n"
        "    return text.upper()\n\n\ndef fail() -> int:\n    raise ValueError('no')",
    )
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as errlog:
        async def work(session):
            tools = [t.name for t in (await session.list_tools()).tools]
            return (tools, await session.call_tool("shout", {"text": "hi"}),
                    await session.call_tool("fail", {}), await session.call_tool("shout", {}))

        tools, shouted, failed, invalid = over_stdio(path, work, errlog=errlog)
    assert tools == ["shout", "fail"]
    assert shouted.structured_content == {"result": "HI"} and _text(shouted) == "HI"
    assert failed.is_error and _text(failed)["detail"] == "fail() raised ValueError: no"
    assert invalid.is_error and _text(invalid)["detail"][0]["loc"] == ["body", "text"]
    printed = errors.read_text()  # what the cells printed went to stderr, not into the protocol
    assert "loading the model" in printed and "from a child process" in printed
    assert "shouting hi" in printed


def test_broken_notebook_fails_mcp_command_with_one_line(make_notebook):
    import subprocess
    import sys

    path = make_notebook("#| setup\nraise RuntimeError('no data')")
    done = subprocess.run([sys.executable, "-m", "nb2api", "mcp", str(path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "cell 1" in done.stderr and "no data" in done.stderr
    assert "Traceback" not in done.stderr



def test_reload_serves_the_saved_functions_as_tools(tmp_path):
    from conftest import write_notebook

    path = write_notebook(tmp_path, "#| api\ndef one() -> int:\n    return 1")

    async def names(session):
        return [t.name for t in (await session.list_tools()).tools]

    with serve(path, "--reload") as server:
        url = f"{server.base_url}/mcp"
        assert over_http(url, names) == ["one"]
        write_notebook(tmp_path, "#| api\ndef two() -> int:\n    return 2")
        wait_until(lambda: over_http(url, names) == ["two"], timeout=60, interval=0.2,
                   message="the saved notebook's tools")

        async def call(session):
            return await session.call_tool("two", {})

        assert over_http(url, call).structured_content == {"result": 2}
        output = server.output()
    assert "different task" not in output and "Traceback" not in output


def test_direct_tool_calls_answer_as_the_sdk_does(make_notebook, monkeypatch):
    """A plain ``tools/call`` skips the SDK's per-request streams (:mod:`nb2api.mcp.direct`);
    its answers are the SDK's, byte for byte but for the error id."""
    from fastapi.testclient import TestClient

    import nb2api

    path = make_notebook(
        "#| api\ndef add(a: int, b: int = 1) -> int:\n    return a + b\n\n\n"
        "def fail() -> int:\n    raise ValueError('no')\n\n\n"
        "def table() -> list[dict]:\n    return [{'x': float('nan'), 'y': 'é'}]")
    app = nb2api.create_app(path)
    from nb2api.mcp import direct as direct_path

    answered_directly = []
    answer = direct_path.answer

    async def spy(*args):
        found = await answer(*args)
        answered_directly.append(found is not None)
        return found

    monkeypatch.setattr(direct_path, "answer", spy)

    def call(id_, params, version="2025-11-25", method="tools/call"):
        headers = {"Accept": "application/json, text/event-stream"}
        if version:
            headers["MCP-Protocol-Version"] = version
        return client.post("/mcp", json={"jsonrpc": "2.0", "id": id_, "method": method,
                                          "params": params}, headers=headers)

    requests = [
        (1, {"name": "add", "arguments": {"a": 2}}, "2025-11-25"),
        ("x", {"name": "add", "arguments": {"a": 2, "b": 5}}, "2025-06-18"),
        (2, {"name": "add", "arguments": {"a": "two"}}, "2025-03-26"),
        (3, {"name": "add"}, None),
        (4, {"name": "fail", "arguments": {}}, "2025-11-25"),
        (5, {"name": "table", "arguments": {}}, "2025-11-25"),
        (6, {"name": "nope", "arguments": {}}, "2025-11-25"),
        (7, {"arguments": {}}, "2025-11-25"),
        (8, {"name": "add", "arguments": []}, "2025-11-25"),
    ]
    answers = {}
    with TestClient(app) as client:
        for direct in (True, False):
            app.state.mcp.direct = direct
            answers[direct] = []
            for id_, params, version in requests:
                response = call(id_, params, version)
                body = response.json()
                text = json.dumps(body)
                answers[direct].append((response.status_code,
                                        re.sub(r'error_id\\\\?": ?\\\\?"[0-9a-f]{12}', "ID", text)))
    assert answers[True] == answers[False]
    # the valid calls of known tools were answered directly; the SDK said what was wrong
    assert answered_directly == [True] * 6 + [False] * 3
    assert json.loads(answers[True][0][1])["result"]["structuredContent"] == {"result": 3}
