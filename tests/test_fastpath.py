"""The fast path answers exactly what FastAPI's handler would, and hands it everything else."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket

import pytest
from conftest import serve, wait_until
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.exceptions import HTTPException
from starlette.routing import Host, Mount, Route
from starlette.staticfiles import StaticFiles

import nb2api
from nb2api.serve.fastpath import DirectRoutes

TOKEN = "s3cret-token"

# Which handler ran the endpoint: FastAPI's (its routing module is on the stack) or the fast path.
PROBE = """#| api
import sys


async def answered_by() -> str:
    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals.get("__name__") == "fastapi.routing":
            return "fastapi"
        frame = frame.f_back
    return "fast path"


def add(a: int, b: int) -> int:
    return a + b
"""


def _apps(path, **options):
    """The same notebook twice: as nb2api serves it, and with FastAPI answering everything."""
    direct = nb2api.create_app(path, **options)
    plain = nb2api.create_app(path, fast_path=False, **options)
    assert not any(m.cls is DirectRoutes for m in plain.user_middleware)
    return TestClient(direct, raise_server_exceptions=False), TestClient(
        plain, raise_server_exceptions=False)


def fast_routes(app) -> set[str]:
    """The names of the routes the app's fast path answers (this builds its middleware stack,
    as the first request would)."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, DirectRoutes):
        layer = getattr(layer, "app", None)
        if layer is None:
            return set()
    return {route.name for routes in layer.by_method.values() for route, _, _ in routes}


def _seen(response):
    """What a client sees, with the per-request ids (and each load's module name) blanked."""
    body = re.sub(rb'"error_id":"[0-9a-f]+"', b'"error_id":"-"', response.content)
    body = re.sub(rb"nb2api_notebook_[0-9]+", b"nb2api_notebook_-", body)
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


FAILURES = """#| api
from fastapi import HTTPException


class Refused(Exception):
    pass


def divide(a: float, b: float) -> float:
    return a / b


def teapot() -> str:
    raise HTTPException(status_code=418, detail="I'm a teapot", headers={"X-Pot": "tea"})


def refuse() -> str:
    raise Refused("not today")


def ok() -> str:
    return "still serving"
"""

FAILING_REQUESTS = [
    ("POST", "/divide", {"json": {"a": 1, "b": 0}}),  # 500 with an error id
    ("POST", "/divide", {"json": {"a": 1, "b": 2}}),
    ("POST", "/teapot", {}),  # HTTPException from the notebook passes through
    ("POST", "/refuse", {}),  # the notebook's own exception: nb2api's 500
    ("POST", "/ok", {"json": {}}),
]


@pytest.mark.parametrize(("method", "path", "options"), FAILING_REQUESTS)
def test_failures_match_fastapi(make_notebook, method, path, options):
    direct, plain = _apps(make_notebook(FAILURES))
    assert fast_routes(direct.app) == {"divide", "teapot", "refuse", "ok"}
    _same(direct, plain, method, path, **options)


@pytest.mark.parametrize(("method", "path", "options"), FAILING_REQUESTS)
def test_debug_answers_match_fastapi(make_notebook, method, path, options):
    direct, plain = _apps(make_notebook(FAILURES), debug=True)
    got = _same(direct, plain, method, path, **options)
    if got.status_code == 500:
        assert got.json()["traceback"]


def _add_handlers(app, by_status: bool) -> None:
    """Exception handlers a user adds to the app: for Starlette's HTTPException (FastAPI's, and
    nb2api's 504, derive from it) or its 418, and for the notebook's own exceptions; they read
    the request's scope as handlers do."""

    async def http_error(request, exc):
        return JSONResponse(
            {"handled": exc.detail, "route": request.scope["route"].name,
             "router": type(request.scope.get("router")).__name__,
             "ok_url": str(request.url_for("ok"))},
            status_code=exc.status_code, headers={"X-Handled": "yes", **(exc.headers or {})})

    async def refused(request, exc):
        return JSONResponse({"refused": str(exc)}, status_code=409)

    app.add_exception_handler(418 if by_status else HTTPException, http_error)
    app.add_exception_handler(ZeroDivisionError, refused)
    module = app.state.notebook.module
    if hasattr(module, "Refused"):
        app.add_exception_handler(module.Refused, refused)


@pytest.mark.parametrize("by_status", [False, True])
@pytest.mark.parametrize(("method", "path", "options"), FAILING_REQUESTS)
def test_user_exception_handlers_answer_the_same(make_notebook, by_status, method, path,
                                                 options):
    direct, plain = _apps(make_notebook(FAILURES))
    for client in (direct, plain):
        _add_handlers(client.app, by_status)
    assert fast_routes(direct.app) == {"divide", "teapot", "refuse", "ok"}
    got = _same(direct, plain, method, path, **options)
    if path == "/teapot":
        assert got.headers["x-handled"] == "yes"
        assert got.json()["route"] == "teapot"


def test_a_timeout_reaches_the_http_exception_handler_the_same(make_notebook):
    path = make_notebook(
        "#| setup\nimport time",
        "#| api\n#| timeout: 0.3\ndef slow(seconds: float) -> float:\n"
        "    time.sleep(seconds)\n    return seconds",
        "#| api\ndef ok() -> str:\n    return 'ok'",
    )
    direct, plain = _apps(path)
    for client in (direct, plain):
        _add_handlers(client.app, by_status=False)
    with direct, plain:
        got = _same(direct, plain, "POST", "/slow", json={"seconds": 0.6})
    assert got.status_code == 504
    assert got.json()["route"] == "slow"


DIRECTIVES = (
    "#| setup\nfrom math import sqrt\nfrom fastapi import HTTPException\nITEMS = {'a': 1}",
    """#| api
def hypot(a: float, b: float = 4.0) -> float:
    return sqrt(a * a + b * b)


#| route: GET /items/{key}
def get_item(key: str, default: int = 0) -> int:
    return ITEMS.get(key, default)


#| route: PUT /items/{key}
def put_item(key: str, value: int) -> dict[str, int]:
    ITEMS[key] = value
    return ITEMS


#| route: DELETE /items/{key}
def delete_item(key: str, missing_ok: bool = False) -> dict[str, int]:
    if key not in ITEMS and not missing_ok:
        raise HTTPException(status_code=404, detail=f"no item {key!r}")
    ITEMS.pop(key, None)
    return ITEMS


def ping() -> str:
    return "pong"
""")


@pytest.mark.parametrize(("method", "path", "options"), [
    ("POST", "/hypot", {"json": {"a": 3}}),
    ("GET", "/items/a", {}),
    ("PUT", "/items/b", {"json": {"value": 2}}),
    ("DELETE", "/items/zz", {}),
    ("POST", "/ping", {}),
])
def test_directive_routes_match_fastapi(make_notebook, method, path, options):
    direct, plain = _apps(make_notebook(*DIRECTIVES))
    assert fast_routes(direct.app) == {"hypot", "ping"}  # path parameters go to FastAPI
    _same(direct, plain, method, path, **options)


def test_limits_answer_the_same_on_the_fast_path(make_notebook):
    path = make_notebook("#| setup\nimport asyncio\nimport time", """#| api
def upload(data: list[int]) -> int:
    return len(data)


#| timeout: 0.3
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


#| timeout: 0.3
async def slow_async(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds
""")
    direct, plain = _apps(path)
    with direct, plain:
        got = _same(direct, plain, "POST", "/slow", json={"seconds": 0.6})
        assert got.status_code == 504  # an HTTPException raised around the notebook call
        _same(direct, plain, "POST", "/slow_async", json={"seconds": 0.6})
        _same(direct, plain, "POST", "/upload", json={"data": [1, 2]})
    assert fast_routes(direct.app) == {"upload", "slow", "slow_async"}


def test_body_limit_answers_the_same_on_the_fast_path(notebook):
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
    assert calls == ["nothing"]  # the 401s come from the token gate, before either path


def test_root_path_and_metrics_see_fast_path_requests(notebook):
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


# ---- what the fast path answers, and what it leaves to FastAPI --------------------------------

def _answered_by(app, **kwargs) -> str:
    return TestClient(app).post("/answered_by", **kwargs).json()


def test_the_probe_tells_the_two_handlers_apart(make_notebook):
    path = make_notebook(PROBE)
    assert _answered_by(nb2api.create_app(path)) == "fast path"
    assert _answered_by(nb2api.create_app(path, fast_path=False)) == "fastapi"


@pytest.mark.parametrize(("args", "env", "expected"), [
    ((), {}, "fast path"),
    (("--no-fast-path",), {}, "fastapi"),
    ((), {"NB2API_FAST_PATH": "false"}, "fastapi"),
])
def test_no_fast_path_sends_every_request_to_fastapi(make_notebook, args, env, expected):
    with serve(make_notebook(PROBE), *args, env=env) as server, server.client() as client:
        assert client.post("/answered_by").json() == expected
        assert client.post("/add", json={"a": 1, "b": 2}).json() == 3


def test_routes_ahead_that_cannot_match_keep_the_fast_path(make_notebook, tmp_path):
    app = nb2api.create_app(make_notebook(PROBE))
    app.mount("/files", StaticFiles(directory=tmp_path), name="files")
    app.get("/answered_by")(lambda: "a GET of the app's own")  # same path, other method
    app.websocket("/answered_by")(lambda websocket: None)
    app.router.routes[:0] = app.router.routes[-3:]  # all three ahead of the notebook's
    del app.router.routes[-3:]
    assert fast_routes(app) == {"answered_by", "add"}
    assert _answered_by(app) == "fast path"
    assert TestClient(app).get("/answered_by").json() == "a GET of the app's own"


@pytest.mark.parametrize(("ahead", "still_fast"), [
    (Mount("/", app=JSONResponse("the app's")), set()),
    (Route("/{name}", lambda request: JSONResponse("the app's"), methods=["POST"]), set()),
    (Route("/answered_by", JSONResponse("the app's")), {"add"}),  # an ASGI app: every method
])
def test_a_route_ahead_that_matches_takes_the_requests(make_notebook, ahead, still_fast):
    app = nb2api.create_app(make_notebook(PROBE))
    app.router.routes.insert(0, ahead)
    assert fast_routes(app) == still_fast
    assert _answered_by(app) == "the app's"


def test_a_route_kind_it_does_not_know_ahead_turns_it_off(make_notebook):
    app = nb2api.create_app(make_notebook(PROBE))
    app.router.routes.insert(0, Host("api.example.com", app=JSONResponse("the host's")))
    assert fast_routes(app) == set()
    assert _answered_by(app) == "fastapi"


def test_a_dependant_field_of_a_later_fastapi_leaves_the_route_to_fastapi(make_notebook):
    later = dataclasses.make_dataclass(
        "LaterDependant", [("new_feature", bool, dataclasses.field(default=False))],
        bases=(Dependant,))
    app = nb2api.create_app(make_notebook(PROBE))
    for route in app.router.routes:
        if getattr(route, "name", None) in ("answered_by", "add"):
            fields = {f.name: getattr(route.dependant, f.name)
                      for f in dataclasses.fields(Dependant)}
            route.dependant = later(**fields, new_feature=route.name == "answered_by")
    assert fast_routes(app) == {"add"}  # at its default, the new field changes nothing
    assert _answered_by(app) == "fastapi"


def test_a_route_attribute_it_does_not_know_leaves_the_route_to_fastapi(make_notebook):
    app = nb2api.create_app(make_notebook(PROBE))
    route = next(r for r in app.router.routes if getattr(r, "name", None) == "answered_by")
    route.new_feature = True
    assert fast_routes(app) == {"add"}
    assert _answered_by(app) == "fastapi"


def test_middleware_added_inside_it_turns_it_off(make_notebook):
    class Inner:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            await self.app(scope, receive, send)

    app = nb2api.create_app(make_notebook(PROBE))
    app.user_middleware.append(type(app.user_middleware[0])(Inner))
    assert fast_routes(app) == set()
    assert _answered_by(app) == "fastapi"


# ---- dependency overrides ---------------------------------------------------------------------

async def _refuse_everyone() -> None:
    raise HTTPException(403, "overridden")


async def _accept_everyone() -> None:
    return None


@pytest.mark.parametrize(("override", "headers", "status"), [
    (_accept_everyone, {}, 200),
    (_accept_everyone, {"Authorization": "Bearer wrong"}, 200),
    (_refuse_everyone, {"Authorization": f"Bearer {TOKEN}"}, 403),
])
def test_dependency_overrides_answer_the_same(make_notebook, override, headers, status):
    direct, plain = _apps(make_notebook(PROBE), token=TOKEN)
    for client in (direct, plain):
        client.app.dependency_overrides[client.app.state.runtime.auth.depends.dependency] = (
            override)
    got = _same(direct, plain, "POST", "/add", headers=headers, json={"a": 1, "b": 2})
    assert got.status_code == status


def test_an_override_added_while_serving_counts(make_notebook):
    app = nb2api.create_app(make_notebook(PROBE), token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert _answered_by(app, headers=bearer) == "fast path"
    check = app.state.runtime.auth.depends.dependency
    app.dependency_overrides[check] = _refuse_everyone
    assert TestClient(app).post("/answered_by", headers=bearer).status_code == 403
    app.dependency_overrides[check] = _accept_everyone
    assert _answered_by(app, headers=bearer) == "fastapi"  # the fast path on, but deferring
    app.dependency_overrides.clear()
    assert _answered_by(app, headers=bearer) == "fast path"


# ---- a client that leaves mid-body ------------------------------------------------------------

async def _leave_mid_body(app) -> tuple[list, str | None]:
    """Send half a JSON body to ``app``, then disconnect: what it sent, and what it raised."""
    incoming = [{"type": "http.request", "body": b'{"a": 1, ', "more_body": True}]
    sent: list = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append({k: v for k, v in message.items() if k != "headers"}
                    | {"headers": [h for h in message.get("headers", ())
                                   if h[0] != b"x-request-id"]})

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/add", "raw_path": b"/add",
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"application/json"), (b"content-length", b"20")]}
    try:
        await app(scope, receive, send)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return sent, type(exc).__name__
    return sent, None


def test_a_client_leaving_mid_body_gets_the_same_treatment(make_notebook):
    direct, plain = _apps(make_notebook(PROBE))
    assert "add" in fast_routes(direct.app)
    got, expected = (asyncio.run(_leave_mid_body(c.app)) for c in (direct, plain))
    assert got == expected
    assert direct.post("/add", json={"a": 1, "b": 2}).json() == 3


def test_a_server_keeps_serving_after_a_client_leaves_mid_body(make_notebook):
    with serve(make_notebook(PROBE)) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /add HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
                         b'{"a": 1, ')
        with server.client() as client:
            # FastAPI's answer to a body cut short, which nobody reads: logged, not raised
            wait_until(lambda: '"path":"/add","route":"/add","status":400' in server.output(),
                       message="the access log line of the request cut short")
            assert client.post("/add", json={"a": 1, "b": 2}).json() == 3
            assert client.post("/answered_by").json() == "fast path"
        assert "Traceback" not in server.output()
