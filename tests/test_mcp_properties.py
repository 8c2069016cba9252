"""Properties of MCP: a tool call answers what the REST call answers, for any arguments, and the
``#| mcp:`` directive takes exactly true or false."""

from __future__ import annotations

import json
import re

import pytest
from conftest import notebook_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2api.load.directives import DirectiveProblem, check_directives, parse_directives

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)
ROUTES = {  # core_types routes and the argument names their tools take
    "constrained": ["count", "ratio"],
    "choices": ["mode", "color", "maybe", "either"],
    "containers": ["items", "mapping", "pair"],
    "summarize": ["sample"],
    "greet": ["name"],
}


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    import nb2api

    with TestClient(nb2api.create_app(notebook_path("core_types"))) as test_client:
        yield test_client


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(sorted(ROUTES)), data=st.data())
def test_a_tool_answers_what_rest_answers(client, route, data):
    names = ROUTES[route]
    arguments = data.draw(st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=len(names)))
    rest = client.post(f"/{route}", json=arguments)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": route, "arguments": arguments}}
    answer = client.post("/mcp", json=call, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    text = json.loads(result["content"][0]["text"])
    if rest.status_code == 200:
        assert not result["isError"]
        assert text == rest.json()
        expected = rest.json()
        assert result["structuredContent"] == (expected if isinstance(expected, dict)
                                               else {"result": expected})
    else:
        assert result["isError"]
        assert rest.status_code == 422  # core_types' functions do not raise on valid input
        assert text["detail"] == rest.json()["detail"]


@given(value=st.text(max_size=12).filter(lambda v: "\n" not in v and "\r" not in v))
def test_the_mcp_directive_takes_true_or_false(value):
    directives = parse_directives(f"#| mcp: {value}\ndef f(): pass")
    if not directives:  # not a directive line at all (e.g. the value closes the comment)
        return
    flag = directives[0].value.lower()
    if flag in ("true", "false"):
        check_directives(directives)
    else:
        with pytest.raises(DirectiveProblem, match=re.escape(f"'#| mcp: {directives[0].value}'")):
            check_directives(directives)


@pytest.fixture(scope="module")
def directives_client():
    from fastapi.testclient import TestClient

    import nb2api

    with TestClient(nb2api.create_app(notebook_path("core_directives"))) as test_client:
        yield test_client


QUERY_VALUES = st.none() | st.booleans() | st.integers(-100, 100) | st.text(
    alphabet="abc019-. ", max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(alphabet="abcxyz", min_size=1, max_size=4),
       default=QUERY_VALUES, value=JSON_VALUES, a=JSON_VALUES, route=st.sampled_from(
           ["get_item", "put_item", "hypot"]))
def test_path_query_and_body_arguments_as_rest(directives_client, key, default, value, a, route):
    """Path, query and body parameters, merged into one set of arguments, validate as the
    REST request's parts do."""
    client = directives_client
    if route == "get_item":
        arguments = {"key": key} if default is None else {"key": key, "default": default}
        params = {} if default is None else {"default": str(default).lower()
                                             if isinstance(default, bool) else default}
        rest = client.get(f"/items/{key}", params=params)
        if isinstance(default, str | bool):  # text in a query string, JSON in a tool call
            return
    elif route == "put_item":
        arguments = {"key": key, "value": value}
        rest = client.put(f"/items/{key}", json={"value": value})
    else:
        arguments = {"a": a}
        rest = client.post("/hypot", json={"a": a})
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": route, "arguments": arguments}}
    result = client.post("/mcp", json=call, headers=HEADERS).json()["result"]
    text = json.loads(result["content"][0]["text"])
    if rest.status_code == 200:
        assert not result["isError"] and text == rest.json()
    else:
        assert result["isError"] and rest.status_code == 422
        assert text["detail"] == rest.json()["detail"]
