"""Bearer-token auth, CORS and the body-size limit."""

from __future__ import annotations

import pytest
from conftest import serve
from fastapi.testclient import TestClient

from nb2api import create_app
from nb2api.settings import parse_size

TOKEN = "s3cret-token"
ADD = "#| api\nasync def add(a: float, b: float) -> float:\n    return a + b"


@pytest.fixture
def client(make_notebook):
    app = create_app(make_notebook(ADD), token=TOKEN, cors_origins=["https://app.example"])
    with TestClient(app) as c:
        yield c


def test_routes_need_the_token(client):
    response = client.post("/add", json={"a": 1, "b": 2})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/add", json={"a": 1, "b": 2}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    basic = client.post("/add", json={"a": 1, "b": 2}, headers={"Authorization": "Basic eDp5"})
    assert basic.status_code == 401
    ok = client.post("/add", json={"a": 1, "b": 2}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok.json() == 3


def test_probes_and_docs_stay_open_metrics_do_not(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_docs_show_the_bearer_scheme(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The token the service was started with (`--token` or `NB2API_TOKEN`).",
    }
    operation = spec["paths"]["/add"]["post"]
    assert operation["security"] == [{"bearerToken": []}]
    assert "401" in operation["responses"]


def test_no_token_no_scheme(make_notebook):
    with TestClient(create_app(make_notebook(ADD))) as client:
        spec = client.get("/openapi.json").json()
        assert "securitySchemes" not in spec.get("components", {})
        assert client.post("/add", json={"a": 1, "b": 2}).status_code == 200


def test_cors_preflight_for_an_allowed_origin(client):
    response = client.options(
        "/add",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_cors_refuses_another_origin(client):
    response = client.options(
        "/add",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    simple = client.post("/add", json={"a": 1, "b": 2}, headers={
        "Origin": "https://app.example", "Authorization": f"Bearer {TOKEN}"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_a_body_over_the_limit_gets_413(make_notebook):
    notebook = make_notebook("#| api\ndef upload(data: list[int]) -> int:\n    return len(data)")
    app = create_app(notebook, max_body_size=1000)
    with TestClient(app) as client:
        small = client.post("/upload", json={"data": list(range(10))})
        assert small.json() == 10
        big = client.post("/upload", json={"data": list(range(1000))})
        assert big.status_code == 413
        assert "1000 bytes" in big.json()["detail"]

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"data": ['
            for _ in range(400):
                yield b"1, "
            yield b"1]}"

        chunked = client.post("/upload", content=chunks(),
                              headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        assert "413" in client.get("/openapi.json").json()["paths"]["/upload"]["post"]["responses"]


@pytest.mark.parametrize(("text", "size"), [
    ("512", 512), ("100kB", 100_000), ("16MiB", 16 * 1024**2), ("1.5 MB", 1_500_000), ("0", 0),
])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_a_bad_size_is_refused():
    with pytest.raises(ValueError, match="not a size"):
        parse_size("ten megs")


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("body", [b'{"a": 1', b"", b'{"a": "x"}', b"\xff"])
def test_the_token_is_checked_before_the_body_is_read(make_notebook, fast_path, body):
    app = create_app(make_notebook(ADD), token=TOKEN, fast_path=fast_path)
    json_type = {"Content-Type": "application/json"}
    with TestClient(app) as client:
        missing = client.post("/add", content=body, headers=json_type)
        assert missing.status_code == 401, missing.text
        assert missing.json() == {"detail": "missing bearer token"}
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/add", content=body, headers={**json_type,
                                                            "Authorization": "Bearer nope"})
        assert wrong.status_code == 401, wrong.text
        assert wrong.json() == {"detail": "invalid bearer token"}
        good = client.post("/add", content=body, headers={**json_type,
                                                           "Authorization": f"Bearer {TOKEN}"})
        assert good.status_code in (400, 422), good.text
        assert client.get("/nowhere").status_code == 401  # no route list for strangers
        assert client.get("/healthz").status_code == 200
        assert client.get("/redoc").status_code == 200


ENVIRONMENT = """#| api
import os
import subprocess
import sys


def environment() -> dict:
    child = subprocess.run([sys.executable, "-c", "import os; print(dict(os.environ))"],
                           capture_output=True, text=True, check=True).stdout
    return {"own": dict(os.environ), "child": child}
"""


@pytest.mark.parametrize(("args", "env"), [
    ([], {"NB2API_TOKEN": TOKEN}),
    (["--workers", "2"], {"NB2API_TOKEN": TOKEN}),
    (["--workers", "2", "--token", TOKEN], {}),
    (["--token-file", "{file}"], {}),
    (["--workers", "2"], {"NB2API_TOKEN_FILE": "{file}"}),
])
def test_the_token_reaches_no_environment_the_notebook_sees(make_notebook, tmp_path, args,
                                                             env):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = [arg.format(file=token_file) for arg in args]
    env = {name: value.format(file=token_file) for name, value in env.items()}
    with serve(make_notebook(ENVIRONMENT), *args, env=env) as server, \
            server.client() as client:
        assert client.post("/environment").status_code == 401
        response = client.post("/environment", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        seen = response.json()
        assert TOKEN not in response.text, [name for name, value in seen["own"].items()
                                            if TOKEN in value]
        assert "NB2API_TOKEN" not in seen["own"]
        assert TOKEN not in server.output()


def test_a_token_file_holds_the_token_less_its_final_newline(tmp_path, make_notebook):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    app = create_app(make_notebook(ADD), token_file=token_file)
    with TestClient(app) as client:
        assert client.post("/add", json={"a": 1, "b": 2}).status_code == 401
        ok = client.post("/add", json={"a": 1, "b": 2},
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.json() == 3


def test_a_refused_request_is_counted_under_its_route(make_notebook):
    with TestClient(create_app(make_notebook(ADD), token=TOKEN)) as client:
        assert client.post("/add", content=b"{").status_code == 401
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'nb2api_requests_total{method="POST",route="/add",status="401"} 1.0' in metrics
