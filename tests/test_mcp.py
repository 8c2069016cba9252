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
from conftest import EXAMPLES, code, md, notebook_path, serve, wait_until
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
    """operationId -> (path, method, operation) for the notebook's routes."""
    return {
        operation["operationId"]: (path, method, operation)
        for path, methods in document["paths"].items()
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


@pytest.mark.parametrize("name", sorted(CALLS))
def test_tools_are_the_routes_and_answer_as_rest(name):
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

        tools, results = over_http(f"{server.base_url}/mcp", work)

    assert [t.name for t in tools] == list(operations)  # one per route, in notebook order
    for tool in tools:
        path, method, operation = operations[tool.name]
        assert tool_input(tool) == openapi_request(document, path, method), tool.name
        summary = operation.get("summary")
        if summary:
            assert tool.description.startswith(summary)
    for (route, _), rest, result in zip(calls, rest_answers, results, strict=True):
        _same_answer(route, rest, result)
