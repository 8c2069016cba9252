"""Webhooks: a job's end is POSTed to its Webhook-URL, signed as Standard Webhooks say, retried
with backoff, each attempt recorded; only allowed hosts (issue 14, point 6)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading

import pytest
from conftest import wait_until
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from jobs_helpers import ASYNC, job, submit, wait_status
from standardwebhooks import Webhook

import nb2api
from nb2api.serve.jobs.webhooks import Webhooks, sign, signing_key

KEY = b"a key of 24 random bytes"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOTEBOOK = "#| api\ndef add(a: int, b: int) -> int:\n    return a + b\n"


class Receiver:
    """An HTTP receiver on 127.0.0.1 that answers 500 to the first ``failures`` POSTs."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(receiver.received) < receiver.failures else 204
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.received.append((headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    made = []

    def make(failures: int = 0) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _client(make_notebook, tmp_path, **settings) -> TestClient:
    app = nb2api.create_app(make_notebook(NOTEBOOK), jobs_db=tmp_path / "jobs.db", **settings)
    return TestClient(app, raise_server_exceptions=False)


def test_a_webhook_is_retried_until_it_succeeds_and_its_signature_verifies(
        make_notebook, tmp_path, receiver):
    hook = receiver(failures=2)
    with _client(make_notebook, tmp_path, webhook_allow=("127.0.0.1",),
                 webhook_secret=SECRET) as client:
        job_id = submit(client, "/add", {"a": 2, "b": 3}, **{"Webhook-URL": hook.url})
        wait_status(client, job_id)
        document = wait_until(
            lambda: (d := job(client, job_id)) and len(d["webhook"]["deliveries"]) == 3 and d,
            message="three delivery attempts")
    assert [attempt["status"] for attempt in document["webhook"]["deliveries"]] == [500, 500, 204]
    assert [attempt["attempt"] for attempt in document["webhook"]["deliveries"]] == [1, 2, 3]
    assert document["webhook"]["url"] == hook.url
    assert len(hook.received) == 3
    ids = {headers["webhook-id"] for headers, _, _ in hook.received}
    assert len(ids) == 1  # the same message, tried again
    for headers, body, _ in hook.received:
        # verified as the Standard Webhooks libraries do, from the spec, not from nb2api's code
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
        versions = dict(part.split(",", 1) for part in headers["webhook-signature"].split())
        assert hmac.compare_digest(versions["v1"], expected)
        # and as a receiver checks it, with the specification's own library
        assert Webhook(SECRET).verify(body, headers)["id"] == job_id
        assert headers["content-type"] == "application/json"
        sent = json.loads(body)
        assert sent["id"] == job_id and sent["status"] == "succeeded"


def test_a_cancelled_job_calls_its_webhook_too(make_notebook, tmp_path, receiver):
    hook = receiver()
    notebook = ("#| api\nimport nb2api, time\n#| job\ndef wait() -> int:\n"
                "    while not nb2api.cancelled():\n        time.sleep(0.01)\n    return 1\n")
    path = make_notebook(notebook, name="cancel.ipynb")
    app = nb2api.create_app(path, jobs_db=tmp_path / "c.db", webhook_allow=("127.0.0.1",))
    with TestClient(app) as client:
        answer = client.post("/wait", json={}, headers={"Webhook-URL": hook.url})
        job_id = answer.json()["id"]
        wait_status(client, job_id, "running")
        client.delete(f"/jobs/{job_id}")
        wait_until(lambda: hook.received, message="the webhook of the cancelled job")
    headers, body, _ = hook.received[0]
    assert json.loads(body)["status"] == "cancelled"
    assert "webhook-signature" not in headers  # no secret: unsigned


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data",
    "http://localhost:1/x",
    "http://127.0.0.1.evil.example/x",
    "file:///etc/passwd",
    "http://user:pw@127.0.0.1/x",
    "not a url",
    "http://[::1",
])
def test_a_webhook_url_outside_the_allow_list_is_a_422_and_no_job(make_notebook, tmp_path, url):
    with _client(make_notebook, tmp_path, webhook_allow=("127.0.0.1",)) as client:
        answer = client.post("/add", json={"a": 1, "b": 1}, headers={**ASYNC, "Webhook-URL": url})
        assert answer.status_code == 422
        assert "Webhook-URL" in answer.json()["detail"]
        assert client.get("/jobs").json()["jobs"] == []


def test_without_an_allow_list_every_webhook_is_refused(make_notebook, tmp_path):
    with _client(make_notebook, tmp_path) as client:
        answer = client.post("/add", json={"a": 1, "b": 1},
                             headers={**ASYNC, "Webhook-URL": "http://127.0.0.1/x"})
        assert answer.status_code == 422
        assert "--webhook-allow" in answer.json()["detail"]


def test_allow_list_entries_may_name_a_port():
    hooks = Webhooks(("hooks.example:8443",), None, lambda *_: None)
    assert hooks.checked("https://hooks.example:8443/x") == "https://hooks.example:8443/x"
    with pytest.raises(Exception) as refused:
        hooks.checked("https://hooks.example:9000/x")
    assert refused.value.status_code == 422


@given(st.text(max_size=40), st.integers(0, 2**40), st.binary(max_size=200))
def test_signing_matches_the_standard_webhooks_construction(message_id, timestamp, body):
    signature = sign(signing_key(SECRET), message_id, timestamp, body)
    digest = hmac.new(KEY, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    assert signature == "v1," + base64.b64encode(digest.digest()).decode()


def test_a_plain_secret_is_used_as_its_bytes():
    assert signing_key("plain secret") == b"plain secret"
    assert signing_key(SECRET) == KEY


def test_the_secret_is_not_in_the_settings_repr(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    settings = nb2api.Settings(webhook_secret_file=secret_file)
    assert settings.signing_secret() == SECRET
    assert SECRET not in repr(nb2api.Settings(webhook_secret=SECRET))
    with pytest.raises(ValueError):
        nb2api.Settings(webhook_secret=SECRET, webhook_secret_file=secret_file)


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
    (["--workers", "2"], {"NB2API_WEBHOOK_SECRET": SECRET}),
    (["--workers", "2", "--webhook-secret", SECRET], {}),
])
def test_the_webhook_secret_reaches_no_environment_the_notebook_sees(make_notebook, args, env):
    from conftest import serve

    with serve(make_notebook(ENVIRONMENT), *args, env=env) as server, \
            server.client() as client:
        response = client.post("/environment")
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        assert "NB2API_WEBHOOK_SECRET" not in response.json()["own"]
        assert SECRET not in server.output()


@pytest.mark.parametrize("secret", ["webhook", "token"])
def test_several_notebooks_under_workers_keep_secrets_out_of_the_environment(tmp_path, secret):
    """The workers of a folder's server read their settings from their environment: the secrets
    go to them in a private file, as for one notebook."""
    from conftest import serve, write_notebook

    folder = tmp_path / "team"
    write_notebook(folder, ENVIRONMENT, name="a.ipynb")
    write_notebook(folder, "#| api\ndef ping() -> str:\n    return 'pong'", name="b.ipynb")
    flag = ["--webhook-secret", SECRET] if secret == "webhook" else ["--token", SECRET]
    headers = {"Authorization": f"Bearer {SECRET}"} if secret == "token" else {}
    with serve(folder, "--workers", "2", *flag) as server, server.client() as client:
        response = client.post("/a/environment", headers=headers)
        assert response.status_code == 200, response.text
        assert SECRET not in response.text
        assert SECRET not in server.output()
