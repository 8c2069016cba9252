"""The direct path answers exactly what FastAPI's handler would, and hands it everything else."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nb2api
from nb2api.serve.fastpath import DirectRoutes

TOKEN = "s3cret-token"


def _apps(path, **options):
    """The same notebook twice: as nb2api serves it, and with FastAPI answering everything."""
    direct = nb2api.create_app(path, **options)
    plain = nb2api.create_app(path, **options)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not DirectRoutes]
    assert len(plain.user_middleware) == len(direct.user_middleware) - 1
    return TestClient(direct, raise_server_exceptions=False), TestClient(
        plain, raise_server_exceptions=False)


def _seen(response):
    """What a client sees, with the per-request ids blanked."""
    body = re.sub(rb'"error_id":"[0-9a-f]+"', b'"error_id":"-"', response.content)
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    return response.status_code, headers, body


def _same(direct, plain, method, path, **kwargs):
    got, expected = direct.request(method, path, **kwargs), plain.request(method, path, **kwargs)
    assert _seen(got) == _seen(expected), (method, path, kwargs)
    return got


JSON = {"content-type": "application/json"}

# (method, path, request options): valid requests, and every way a body can be unusual.
CORE_TYPES = [
    ("POST", "/summarize", {"json": {"sample": {"values": [1, 2, 3]}}}),
    ("POST", "/summarize", {"json": {"sample": {"values": []}}}),  # the function raises: 500
    ("POST", "/summarize", {"json": {"sample": {"values": "x"}}}),  # 422
    ("POST", "/summarize", {"json": [1, 2]}),
    ("POST", "/summarize", {"content": b'{"sample": {"values": [1, 2]}', "headers": JSON}),
    ("POST", "/summarize", {"content": b"", "headers": JSON}),
    ("POST", "/summarize", {"content": b'{"sample": {"values": [1]}}'}),  # no content type
    ("POST", "/summarize", {"content": b'{"sample": {"values": [1]}}',
                            "headers": {"content-type": "text/plain"}}),
    ("POST", "/summarize", {"content": b'{"sample": {"values": [1]}}',
                            "headers": {"content-type": "application/vnd.api+json"}}),
    ("POST", "/summarize", {"content": b'{"sample": {"values": [1]}}',
                            "headers": {"content-type": "Application/JSON; charset=utf-8"}}),
    ("POST", "/summarize", {"content": b'{"sample": {"values": [NaN, 1]}}', "headers": JSON}),
    ("POST", "/summarize", {"content": b'\xef\xbb\xbf{"sample": {"values": [1]}}',
                            "headers": JSON}),  # UTF-8 byte order mark
    ("POST", "/summarize", {"content": '{"sample": {"values": [1]}}'.encode("utf-16"),
                            "headers": JSON}),
    ("POST", "/summarize", {"content": b'{"sample": {"values": [1]}, "x": "\xff"}',
                            "headers": JSON}),  # not UTF-8: 400
    ("POST", "/containers", {"json": {"items": [123456789012345678901234567890, 1],
                                      "mapping": {}, "pair": [1, "x"]}}),  # big ints stay exact
    ("POST", "/anything", {"json": {"payload": [123456789012345678901234567890, -0]}}),
    ("POST", "/anything", {"content": b'{"payload": 1e400}', "headers": JSON}),  # Infinity
    ("POST", "/containers", {"json": {"items": [1], "mapping": {"a": 1},
                                      "pair": [1, "x", 3]}}),
    ("POST", "/choices", {"json": {"mode": "fast", "color": "red", "either": "x"}}),
    ("POST", "/times", {"json": {"when": "2024-05-01T10:00:00Z",
                                 "ident": "12345678-1234-4234-8234-123456789012"}}),
    ("POST", "/constrained", {"json": {"count": 11}}),
    ("POST", "/anything", {"json": {"payload": {"a": [1, None, "\u00e9"]}}}),
    ("POST", "/nothing", {}),
    ("POST", "/nothing", {"json": {}}),
    ("POST", "/greet", {}),  # an optional body left out
    ("POST", "/greet", {"json": {"name": "ada"}}),
    ("POST", "/lying", {}),  # a result that does not match its annotation: 500
    ("GET", "/summarize", {}),  # 405
    ("POST", "/nowhere", {"json": {}}),  # 404
    ("POST", "/summarize/", {"json": {"sample": {"values": [1]}}}),  # redirect_slashes
]


@pytest.mark.parametrize(("method", "path", "options"), CORE_TYPES)
def test_core_types_answers_match_fastapi(notebook, method, path, options):
    direct, plain = _apps(notebook("core_types"))
    _same(direct, plain, method, path, follow_redirects=False, **options)


@pytest.mark.parametrize(("method", "path", "options"), [
    ("POST", "/divide", {"json": {"a": 1, "b": 0}}),  # 500 with an error id
    ("POST", "/divide", {"json": {"a": 1, "b": 2}}),
    ("POST", "/teapot", {}),  # HTTPException from the notebook passes through
    ("POST", "/ok", {"json": {}}),
])
def test_failures_match_fastapi(notebook, method, path, options):
    direct, plain = _apps(notebook("core_failures"))
    _same(direct, plain, method, path, **options)


@pytest.mark.parametrize(("method", "path", "options"), [
    ("POST", "/hypot", {"json": {"a": 3}}),
    ("GET", "/items/a", {}),
    ("PUT", "/items/b", {"json": {"value": 2}}),
    ("DELETE", "/items/zz", {}),
    ("POST", "/ping", {}),
])
def test_directive_routes_match_fastapi(notebook, method, path, options):
    direct, plain = _apps(notebook("core_directives"))
    _same(direct, plain, method, path, **options)


def test_limits_answer_the_same_on_the_direct_path(notebook):
    direct, plain = _apps(notebook("ops_limits"))
    with direct, plain:
        got = _same(direct, plain, "POST", "/slow", json={"seconds": 0.6})
        assert got.status_code == 504  # an HTTPException raised around the notebook call
        _same(direct, plain, "POST", "/slow_async", json={"seconds": 0.6})
        _same(direct, plain, "POST", "/upload", json={"data": [1, 2]})


def test_body_limit_answers_the_same_on_the_direct_path(notebook):
    direct, plain = _apps(notebook("core_types"), max_body_size=64)

    def chunks():  # no Content-Length: the limit counts the body as it arrives
        yield b'{"sample": {"values": ['
        yield b"1, " * 40
        yield b"1]}}"

    got, expected = (c.post("/summarize", content=chunks(), headers=JSON) for c in (direct, plain))
    assert got.status_code == 413
    assert "64 bytes" in got.json()["detail"]
    assert _seen(got) == _seen(expected)
    _same(direct, plain, "POST", "/summarize", json={"sample": {"values": [1]}})


def _handler_calls(client, monkeypatch):
    """Count the requests that reach each route's FastAPI handler."""
    calls = []
    for route in client.app.router.routes:
        if getattr(route, "name", None) in ("summarize", "nothing", "greet"):
            handler = route.app

            async def counting(scope, receive, send, handler=handler, name=route.name):
                calls.append(name)
                await handler(scope, receive, send)

            monkeypatch.setattr(route, "app", counting)
    return calls


def test_valid_json_skips_fastapis_handler_and_the_rest_reaches_it(notebook, monkeypatch):
    client = TestClient(nb2api.create_app(notebook("core_types")))
    calls = _handler_calls(client, monkeypatch)
    assert client.post("/summarize", json={"sample": {"values": [2]}}).json() == {
        "n": 1, "mean": 2.0}
    assert client.post("/nothing").json() == "nothing needed"
    assert calls == []
    assert client.post("/summarize", json={"sample": {}}).status_code == 422
    assert client.post("/greet").json() == "hello world"  # empty body: FastAPI's default
    assert calls == ["summarize", "greet"]


@pytest.mark.parametrize("authorization", [
    None, f"Bearer {TOKEN}", f"bearer {TOKEN}", f"Bearer  {TOKEN}", f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer", f"Token {TOKEN}",
])
def test_bearer_token_answers_match_fastapi(notebook, authorization):
    direct, plain = _apps(notebook("core_types"), token=TOKEN)
    headers = {"Authorization": authorization} if authorization else {}
    got = _same(direct, plain, "POST", "/summarize", headers=headers,
                json={"sample": {"values": [1]}})
    assert got.status_code == (200 if authorization and TOKEN in authorization.split()
                               and authorization.lower().startswith("bearer ") else 401)


def test_only_the_exact_token_header_skips_fastapis_dependency(notebook, monkeypatch):
    client = TestClient(nb2api.create_app(notebook("core_types"), token=TOKEN))
    calls = _handler_calls(client, monkeypatch)
    assert client.post("/nothing", headers={"Authorization": f"Bearer {TOKEN}"}).json() == (
        "nothing needed")
    assert calls == []
    assert client.post("/nothing").status_code == 401
    assert client.post("/nothing", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert client.post("/nothing", headers=[("Authorization", "Bearer wrong"),
                                            ("Authorization", f"Bearer {TOKEN}")]).status_code == 401
    assert calls == ["nothing", "nothing", "nothing"]


def test_a_token_with_spaces_leaves_every_request_to_fastapi(notebook, monkeypatch):
    token = "two words"
    client = TestClient(nb2api.create_app(notebook("core_types"), token=token))
    calls = _handler_calls(client, monkeypatch)
    assert client.post("/nothing", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert calls == ["nothing"]


def test_root_path_and_metrics_see_direct_requests(notebook):
    client = TestClient(nb2api.create_app(notebook("core_types"), root_path="/nb"),
                        root_path="/nb")
    response = client.post("/nb/summarize", json={"sample": {"values": [1, 3]}})
    assert response.json() == {"n": 2, "mean": 2.0}
    assert response.headers["x-request-id"]
    metrics = client.get("/nb/metrics").text
    assert 'nb2api_requests_total{method="POST",route="/summarize",status="200"} 1.0' in metrics


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"sample": st.fixed_dictionaries(
        {"values": st.lists(st.integers() | st.floats(allow_nan=False) | st.text(), max_size=4)},
        optional={"label": _json})}),
    st.fixed_dictionaries({"items": _json, "mapping": _json, "pair": _json}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/summarize", "/containers", "/anything", "/choices"]),
       body=_bodies)
def test_generated_bodies_get_fastapis_answers(notebook_apps, path, body):
    direct, plain = notebook_apps
    content = json.dumps(body).encode()
    _same(direct, plain, "POST", path, content=content, headers=JSON)


@pytest.fixture(scope="module")
def notebook_apps():
    from conftest import notebook_path

    return _apps(notebook_path("core_types"))


def test_a_route_placed_before_a_notebook_route_still_answers_it(notebook):
    app = nb2api.create_app(notebook("core_types"))
    app.post("/summarize")(lambda: "the app's own")
    app.router.routes.insert(0, app.router.routes.pop())  # ahead of the notebook's route
    client = TestClient(app)
    assert client.post("/summarize", json={"sample": {"values": [1]}}).json() == "the app's own"
    assert client.post("/nothing").json() == "nothing needed"
