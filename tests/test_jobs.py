"""Jobs: submit, follow, result, cancel, progress and bounds, through the app (issue 14)."""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import wait_until
from fastapi.testclient import TestClient
from jobs_helpers import ASYNC, gated, job, submit, wait_status

import nb2api

BASIC = """#| api
import time
import nb2api
import pandas as pd
from typing import Annotated
from fastapi import HTTPException

def add(a: int, b: int) -> int:
    nb2api.progress(0.5, "half way")
    return a + b

def table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(n), "y": [i * 0.5 for i in range(n)]})

def csv(n: int) -> Annotated[bytes, "text/csv"]:
    return b"x\\n" + b"".join(b"%d\\n" % i for i in range(n))

def refuse(code: int) -> int:
    raise HTTPException(code, "refused by the notebook")

def broken() -> int:
    return {}["missing"]

def big(n: int) -> str:
    return "x" * n
"""


@pytest.fixture
def make_client(make_notebook, tmp_path):
    def make(*cells, **settings):
        path = make_notebook(*cells)
        settings.setdefault("jobs_db", tmp_path / "jobs.db")
        return TestClient(nb2api.create_app(path, **settings), raise_server_exceptions=False)

    return make


@pytest.mark.parametrize("fast_path", [True, False])
def test_submit_answers_202_with_location_and_the_job(make_client, fast_path):
    with make_client(BASIC, fast_path=fast_path) as client:
        answer = client.post("/add", json={"a": 1, "b": 2}, headers=ASYNC)
        assert answer.status_code == 202
        body = answer.json()
        assert set(body) == {"id", "status", "route", "created"}
        assert body["status"] == "queued" and body["route"] == "add"
        assert answer.headers["location"] == f"/jobs/{body['id']}"
        assert answer.headers["preference-applied"] == "respond-async"
        # unguessable: at least 128 random bits, URL-safe
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", body["id"])
        assert len(body["id"]) * 6 >= 128
        done = wait_status(client, body["id"])
        assert done["status"] == "succeeded"
        assert done["progress"] == {"fraction": 0.5, "message": "half way"}
        assert done["created"] <= done["started"] <= done["finished"]
        assert done["error"] is None
        # the synchronous call is unchanged
        assert client.post("/add", json={"a": 1, "b": 2}).json() == 3


@pytest.mark.parametrize("fast_path", [True, False])
def test_an_invalid_request_stays_a_422_and_makes_no_job(make_client, fast_path):
    with make_client(BASIC, fast_path=fast_path) as client:
        answer = client.post("/add", json={"a": "one"}, headers=ASYNC)
        assert answer.status_code == 422
        assert client.get("/jobs").json()["jobs"] == []


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_function_marked_job_is_always_asynchronous(make_client, fast_path):
    notebook = "#| api\n#| job\ndef slow(n: int) -> int:\n    return n * 2\n"
    with make_client(notebook, fast_path=fast_path) as client:
        answer = client.post("/slow", json={"n": 21})
        assert answer.status_code == 202
        assert "preference-applied" not in answer.headers  # not asked: the route says so
        job_id = answer.json()["id"]
        assert wait_status(client, job_id)["status"] == "succeeded"
        assert client.get(f"/jobs/{job_id}/result").json() == 42


@pytest.mark.parametrize(("path", "body"), [
    ("/add", {"a": 2, "b": 3}),
    ("/table", {"n": 3}),
    ("/csv", {"n": 4}),
    ("/refuse", {"code": 418}),
    ("/big", {"n": 10}),
])
def test_the_result_is_exactly_the_synchronous_answer(make_client, path, body):
    with make_client(BASIC) as client:
        direct = client.post(path, json=body)
        job_id = submit(client, path, body)
        wait_status(client, job_id)
        result = client.get(f"/jobs/{job_id}/result")
        assert result.status_code == direct.status_code
        assert result.headers["content-type"] == direct.headers["content-type"]
        assert result.content == direct.content


def test_a_failed_job_has_its_error_and_its_500(make_client, caplog):
    with make_client(BASIC) as client:
        job_id = submit(client, "/broken")
        done = wait_status(client, job_id)
        assert done["status"] == "failed"
        assert done["error"]["detail"] == "broken() raised KeyError: 'missing'"
        result = client.get(f"/jobs/{job_id}/result")
        assert result.status_code == 500
        assert result.json() == done["error"]  # the id the log gives with the traceback
        assert done["error"]["error_id"] in caplog.text
        refused = wait_status(client, submit(client, "/refuse", {"code": 409}))
        assert refused["status"] == "failed"
        assert refused["error"]["detail"] == "refused by the notebook"


def test_result_of_an_unfinished_job_is_202_with_its_status(make_client, tmp_path):
    gate = tmp_path / "gate"
    notebook = "#| api\n" + gated(gate) + "def wait() -> int:\n    _wait_for_gate()\n    return 1\n"
    with make_client(notebook) as client:
        job_id = submit(client, "/wait")
        wait_status(client, job_id, "running")
        pending = client.get(f"/jobs/{job_id}/result")
        assert pending.status_code == 202
        assert pending.json()["status"] == "running"
        gate.touch()
        wait_status(client, job_id)
        assert client.get(f"/jobs/{job_id}/result").json() == 1


def test_unknown_jobs_are_404(make_client):
    with make_client(BASIC) as client:
        for answer in (client.get("/jobs/nope"), client.get("/jobs/nope/result"),
                       client.get("/jobs/nope/events"), client.delete("/jobs/nope")):
            assert answer.status_code == 404, answer.text


def test_events_stream_status_and_progress_until_the_end(make_client, tmp_path):
    gate = tmp_path / "gate"
    notebook = ("#| api\nimport nb2api\n" + gated(gate)
                + "def steps() -> str:\n    nb2api.progress(0.25, 'started')\n"
                "    _wait_for_gate()\n    nb2api.progress(1.0, 'done')\n    return 'ok'\n")
    with make_client(notebook) as client:
        job_id = submit(client, "/steps")
        wait_until(lambda: (job(client, job_id)["progress"] or {}).get("message") == "started",
                   message="the first progress report")
        gate.touch()
        with client.stream("GET", f"/jobs/{job_id}/events") as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            text = "".join(answer.iter_text())
        events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", text)
        assert events[-1] == ("end", "{}")
        statuses = [json.loads(data) for name, data in events if name == "status"]
        assert statuses[-1]["status"] == "succeeded"
        assert statuses[-1]["progress"] == {"fraction": 1.0, "message": "done"}


def test_list_filters_by_status_and_pages(make_client):
    with make_client(BASIC) as client:
        ids = [submit(client, "/add", {"a": i, "b": 0}) for i in range(5)]
        failed = submit(client, "/broken")
        for job_id in [*ids, failed]:
            wait_status(client, job_id)
        seen, after = [], None
        while True:
            page = client.get("/jobs", params={"limit": 2, **({"after": after} if after else {})})
            assert page.status_code == 200
            data = page.json()
            assert len(data["jobs"]) <= 2
            seen += [j["id"] for j in data["jobs"]]
            after = data["next"]
            if after is None:
                break
        assert sorted(seen) == sorted([*ids, failed]) and len(seen) == 6
        assert seen[0] == failed  # newest first
        only_failed = client.get("/jobs", params={"status": "failed"}).json()["jobs"]
        assert [j["id"] for j in only_failed] == [failed]
        assert client.get("/jobs", params={"status": "lost"}).status_code == 422


CANCEL = """#| api
import os, time
import nb2api
{gate}
STARTED = {started!r}

def hold(tag: str) -> str:
    open(os.path.join(STARTED, tag), "w").close()
    _wait_for_gate()
    return tag

def polite() -> str:
    open(os.path.join(STARTED, "polite"), "w").close()
    while not nb2api.cancelled():
        time.sleep(0.01)
    open(os.path.join(STARTED, "returned early"), "w").close()
    return "stopped"

#| executor: process
def crunch() -> int:
    open(os.path.join(STARTED, "pid"), "w").write(str(os.getpid()))
    while True:
        pass
"""


def _cancel_notebook(tmp_path):
    gate, started = tmp_path / "gate", tmp_path / "started"
    started.mkdir()
    return CANCEL.format(gate=gated(gate), started=str(started)), gate, started


def test_a_cancelled_queued_job_never_starts(make_client, tmp_path):
    notebook, gate, started = _cancel_notebook(tmp_path)
    with make_client(notebook, max_workers=1) as client:  # one slot: the second job queues
        first = submit(client, "/hold", {"tag": "first"})
        wait_status(client, first, "running")
        second = submit(client, "/hold", {"tag": "second"})
        assert job(client, second)["status"] == "queued"
        cancelled = client.delete(f"/jobs/{second}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        gate.touch()
        assert wait_status(client, first)["status"] == "succeeded"
        third = submit(client, "/hold", {"tag": "third"})  # the slot is free again
        assert wait_status(client, third)["status"] == "succeeded"
        assert not (started / "second").exists()
        assert job(client, second)["status"] == "cancelled"
        assert client.get(f"/jobs/{second}/result").status_code == 409


def test_a_running_thread_job_sees_cancelled_and_its_late_result_is_discarded(
        make_client, tmp_path):
    notebook, gate, started = _cancel_notebook(tmp_path)
    with make_client(notebook) as client:
        job_id = submit(client, "/polite")
        wait_until(lambda: (started / "polite").exists(), message="the job to start")
        assert client.delete(f"/jobs/{job_id}").status_code == 200
        wait_until(lambda: (started / "returned early").exists(),
                   message="the function to see nb2api.cancelled()")
        document = job(client, job_id)
        assert document["status"] == "cancelled"
        assert client.get(f"/jobs/{job_id}/result").status_code == 409
        again = client.delete(f"/jobs/{job_id}")
        assert again.status_code == 409


def test_a_running_process_job_is_stopped(make_client, tmp_path):
    notebook, gate, started = _cancel_notebook(tmp_path)
    with make_client(notebook, processes=1) as client:
        job_id = submit(client, "/crunch")
        wait_until(lambda: (started / "pid").exists() and (started / "pid").read_text(),
                   message="the job to start in a worker process")
        pid = int((started / "pid").read_text())
        assert client.delete(f"/jobs/{job_id}").status_code == 200

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return _zombie(pid)

        wait_until(gone, timeout=10, message="the worker process to stop")
        assert job(client, job_id)["status"] == "cancelled"
        (started / "pid").unlink()
        # the pool forked a new worker: the route still answers
        again = submit(client, "/crunch")
        wait_until(lambda: (started / "pid").exists() and (started / "pid").read_text(),
                   message="a new worker process")
        assert int((started / "pid").read_text()) != pid
        assert client.delete(f"/jobs/{again}").status_code == 200


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")
    except OSError:
        return True


def test_a_finished_job_cannot_be_cancelled(make_client):
    with make_client(BASIC) as client:
        job_id = submit(client, "/add", {"a": 1, "b": 1})
        wait_status(client, job_id)
        answer = client.delete(f"/jobs/{job_id}")
        assert answer.status_code == 409
        assert "succeeded" in answer.json()["detail"]


PROGRESS = """#| api
import nb2api

def steps(n: int) -> int:
    for i in range(n):
        nb2api.progress((i + 1) / n, f"step {i + 1} of {n}")
    return n

#| executor: process
def steps_apart(n: int) -> int:
    for i in range(n):
        nb2api.progress((i + 1) / n, f"step {i + 1} of {n}")
    return n
"""


@pytest.mark.parametrize("route", ["/steps", "/steps_apart"])
def test_progress_updates_the_job_on_both_executors(make_client, route):
    with make_client(PROGRESS, processes=1) as client:
        job_id = submit(client, route, {"n": 4})
        wait_status(client, job_id)
        wait_until(lambda: job(client, job_id)["progress"] == {"fraction": 1.0,
                                                               "message": "step 4 of 4"},
                   message="the last progress report")


def test_progress_and_cancelled_are_no_ops_outside_a_job(make_client):
    nb2api.progress(0.5, "in a test")  # nothing to report to
    assert nb2api.cancelled() is False
    with make_client(PROGRESS, processes=1) as client:
        assert client.post("/steps", json={"n": 3}).json() == 3
        assert client.post("/steps_apart", json={"n": 3}).json() == 3
        assert client.get("/jobs").json()["jobs"] == []


def test_max_jobs_answers_503_with_retry_after(make_client, tmp_path):
    notebook, gate, started = _cancel_notebook(tmp_path)
    with make_client(notebook, max_jobs=2, max_workers=1) as client:
        submit(client, "/hold", {"tag": "a"})
        submit(client, "/hold", {"tag": "b"})
        refused = client.post("/hold", json={"tag": "c"}, headers=ASYNC)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "--max-jobs 2" in refused.json()["detail"]
        gate.touch()


def test_a_result_over_max_result_size_fails_the_job(make_client):
    with make_client(BASIC, max_result_size=100) as client:
        small = wait_status(client, submit(client, "/big", {"n": 10}))
        assert small["status"] == "succeeded"
        large = wait_status(client, submit(client, "/big", {"n": 1000}))
        assert large["status"] == "failed"
        assert "more than --max-result-size 100" in large["error"]["detail"]


def test_finished_jobs_expire_after_job_ttl(make_client):
    with make_client(BASIC, job_ttl=0.01) as client:
        job_id = submit(client, "/add", {"a": 1, "b": 1})
        wait_until(lambda: client.get(f"/jobs/{job_id}").status_code == 404, timeout=60,
                   message="the finished job to expire")


def test_job_endpoints_need_the_token(make_client):
    token = "t0ken-for-jobs"
    auth = {"Authorization": f"Bearer {token}"}
    with make_client(BASIC, token=token) as client:
        assert client.post("/add", json={"a": 1, "b": 1}, headers=ASYNC).status_code == 401
        for answer in (client.get("/jobs"), client.get("/jobs/x"), client.get("/jobs/x/result"),
                       client.get("/jobs/x/events"), client.delete("/jobs/x")):
            assert answer.status_code == 401
        job_id = submit(client, "/add", {"a": 1, "b": 1}, **auth)
        assert client.get(f"/jobs/{job_id}", headers=auth).status_code == 200
        assert client.get(f"/jobs/{job_id}").status_code == 401


def test_metrics_count_jobs_by_status_and_time_them(make_client):
    with make_client(BASIC) as client:
        wait_status(client, submit(client, "/add", {"a": 1, "b": 1}))
        wait_status(client, submit(client, "/broken"))
        text = client.get("/metrics").text
        for status in ("queued", "running", "succeeded", "failed"):
            assert re.search(rf'nb2api_jobs_total{{.*status="{status}".*}} [1-9]', text), status
        assert re.search(r'nb2api_job_duration_seconds_count{route="add",status="succeeded"} 1',
                         text)


def test_openapi_documents_the_job_endpoints_and_every_202(make_client):
    with make_client(BASIC) as client:
        document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result", "/jobs/{job_id}/events"} <= set(
        paths)
    assert "delete" in paths["/jobs/{job_id}"]
    for name in ("add", "table", "csv", "refuse", "broken", "big"):
        answers = paths[f"/{name}"]["post"]["responses"]
        schema = answers["202"]["content"]["application/json"]["schema"]
        assert schema["title"] == "JobAccepted"
        assert set(schema["required"]) == {"id", "status", "route", "created"}
        assert "Location" in answers["202"]["headers"]
    assert "text/event-stream" in paths["/jobs/{job_id}/events"]["get"]["responses"]["200"][
        "content"]


def test_the_jobs_database_defaults_to_a_folder_beside_the_notebook(make_notebook):
    path = make_notebook(BASIC)
    with TestClient(nb2api.create_app(path)) as client:
        assert client.get("/jobs").json()["jobs"] == []
        assert not (path.parent / ".nb2api").exists()  # made on first use
        wait_status(client, submit(client, "/add", {"a": 1, "b": 1}))
    assert (path.parent / ".nb2api" / "jobs.db").is_file()


def test_an_uploaded_file_runs_as_a_job(make_client):
    notebook = ('#| api\nfrom fastapi import UploadFile\n'
                'def size(data: bytes, upload: UploadFile) -> int:\n'
                '    return len(data) + len(upload.file.read())\n')
    files = {"data": ("a.bin", b"abc"), "upload": ("b.bin", b"defg")}
    with make_client(notebook) as client:
        assert client.post("/size", files=files).json() == 7
        answer = client.post("/size", files=files, headers=ASYNC)
        assert answer.status_code == 202
        assert wait_status(client, answer.json()["id"])["status"] == "succeeded"
        assert client.get(f"/jobs/{answer.json()['id']}/result").json() == 7


def test_jobs_are_not_bound_by_the_global_timeout_but_by_the_functions_own(
        make_client, tmp_path):
    gate = tmp_path / "gate"
    notebook = ("#| api\n" + gated(gate) + "def slow() -> int:\n    _wait_for_gate()\n"
                "    return 1\n\n#| timeout: 0.2\ndef bounded() -> int:\n    _wait_for_gate()\n"
                "    return 2\n")
    with make_client(notebook, timeout=0.2) as client:
        assert client.post("/slow", json={}).status_code == 504  # a request: --timeout holds
        job_id = submit(client, "/slow")
        bounded = submit(client, "/bounded")
        failed = wait_status(client, bounded)
        assert failed["status"] == "failed"
        assert client.get(f"/jobs/{bounded}/result").status_code == 504
        assert job(client, job_id)["status"] == "running"  # past --timeout, still running
        gate.touch()
        assert wait_status(client, job_id)["status"] == "succeeded"


def test_an_async_route_runs_as_a_job(make_client):
    notebook = ("#| api\nimport asyncio, nb2api\nasync def later(x: int) -> int:\n"
                "    await asyncio.sleep(0)\n    nb2api.progress(1, 'done')\n    return x + 1\n")
    with make_client(notebook) as client:
        job_id = submit(client, "/later", {"x": 1})
        done = wait_status(client, job_id)
        assert done["status"] == "succeeded" and done["progress"]["message"] == "done"
        assert client.get(f"/jobs/{job_id}/result").json() == 2


def test_job_directives_are_read_and_checked(make_notebook):
    path = make_notebook("#| api\nimport os\n\n#| job: retries=2\ndef f() -> int:\n    return 1\n\n"
                         "#| job\ndef g() -> int:\n    return 1\n\ndef h() -> int:\n    return 1\n")
    options = {spec.name: spec.options for spec in nb2api.build_routes(nb2api.load_notebook(path))}
    assert (options["f"].job, options["f"].retries) == (True, 2)
    assert (options["g"].job, options["g"].retries) == (True, 0)
    assert (options["h"].job, options["h"].retries) == (False, 0)
    bad = make_notebook("#| api\n#| job: retries=many\ndef f() -> int:\n    return 1\n",
                        name="bad.ipynb")
    with pytest.raises(nb2api.NotebookError) as error:
        nb2api.load_notebook(bad)
    assert "'#| job: retries=many' is not '#| job' or '#| job: retries=N'" in str(error.value)
    assert "cell 1" in str(error.value)


def test_two_notebooks_share_a_jobs_file_without_seeing_each_others_jobs(
        make_notebook, tmp_path):
    db = tmp_path / "shared.db"
    one = nb2api.create_app(make_notebook("#| api\ndef f() -> int:\n    return 1\n",
                                          name="one.ipynb"), jobs_db=db)
    two = nb2api.create_app(make_notebook("#| api\ndef f() -> int:\n    return 2\n",
                                          name="two.ipynb"), jobs_db=db)
    with TestClient(one) as first, TestClient(two) as second:
        ids = [submit(first, "/f"), submit(second, "/f")]
        assert wait_status(first, ids[0])["status"] == "succeeded"
        assert wait_status(second, ids[1])["status"] == "succeeded"
        assert first.get(f"/jobs/{ids[0]}/result").json() == 1
        assert second.get(f"/jobs/{ids[1]}/result").json() == 2
        assert first.get(f"/jobs/{ids[1]}").status_code == 404
        assert [j["id"] for j in first.get("/jobs").json()["jobs"]] == [ids[0]]


def test_a_job_running_when_the_app_stops_is_interrupted(make_client, tmp_path):
    gate = tmp_path / "gate"
    notebook = "#| api\n" + gated(gate) + "def wait() -> int:\n    _wait_for_gate()\n    return 1\n"
    with make_client(notebook) as client:
        job_id = submit(client, "/wait")
        wait_status(client, job_id, "running")
    gate.touch()
    with make_client(notebook) as client:
        done = wait_status(client, job_id)
        assert done["status"] == "failed"
        assert done["error"]["detail"] == "interrupted by a restart"


def test_a_browser_may_read_where_its_job_is(make_client):
    with make_client(BASIC, cors_origins=("https://app.example",)) as client:
        answer = client.post("/add", json={"a": 1, "b": 1},
                             headers={**ASYNC, "Origin": "https://app.example"})
        assert answer.status_code == 202
        exposed = answer.headers["access-control-expose-headers"].lower()
        assert "location" in exposed and "preference-applied" in exposed


def test_location_is_under_the_root_path(make_client):
    with make_client(BASIC, root_path="/models/iris") as client:
        answer = client.post("/add", json={"a": 1, "b": 1}, headers=ASYNC)
        assert answer.headers["location"] == f"/models/iris/jobs/{answer.json()['id']}"


def test_an_app_started_twice_at_once_runs_its_jobs(make_notebook, tmp_path):
    app = nb2api.create_app(make_notebook(BASIC), jobs_db=tmp_path / "jobs.db")
    with TestClient(app) as first, TestClient(app) as second:  # two lifespans, two loops
        for client in (first, second):
            job_id = submit(client, "/add", {"a": 2, "b": 2})
            assert wait_status(client, job_id)["status"] == "succeeded"
    with TestClient(app) as again:  # and once more after both stopped
        assert wait_status(again, submit(again, "/add", {"a": 1, "b": 1}))["status"] == "succeeded"
