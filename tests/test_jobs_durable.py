"""Jobs survive a kill -9 of the whole server, and run exactly once under --workers N."""

from __future__ import annotations

from conftest import wait_until
from jobs_helpers import TERMINAL, KillableServer, gated, job, submit, wait_status

CRASH = """#| api
import nb2api
{gate}

def work(i: int) -> int:
    if i >= 5:
        _wait_for_gate()
    return i * 10

#| job: retries=1
def work_again(i: int) -> int:
    _wait_for_gate()
    return i * 100
"""


def test_every_accepted_job_ends_and_is_readable_after_kill_9_and_a_restart(
        make_notebook, tmp_path):
    gate = tmp_path / "gate"
    notebook = make_notebook(CRASH.format(gate=gated(gate)))
    args = ("--jobs-db", str(tmp_path / "jobs.db"), "--max-workers", "2")
    with KillableServer(notebook, *args) as server, server.client() as client:
        quick = [submit(client, "/work", {"i": i}) for i in range(5)]
        for job_id in quick:
            assert wait_status(client, job_id)["status"] == "succeeded"
        again = submit(client, "/work_again", {"i": 5})
        wait_status(client, again, "running")
        gated_ids = [submit(client, "/work", {"i": i}) for i in range(6, 20)]
        interrupted = gated_ids[0]
        wait_status(client, interrupted, "running")  # both slots taken; 13 jobs queued
        assert [job(client, j)["status"] for j in gated_ids[1:]] == ["queued"] * 13
        server.kill()
    gate.touch()
    every = [*quick, again, *gated_ids]
    assert len(every) == 20
    with KillableServer(notebook, *args) as server, server.client() as client:
        documents = {job_id: wait_status(client, job_id) for job_id in every}
        assert all(d["status"] in TERMINAL for d in documents.values())
        for i, job_id in enumerate(quick):  # finished results are still there
            assert documents[job_id]["status"] == "succeeded"
            assert client.get(f"/jobs/{job_id}/result").json() == i * 10
        # running, without retries: failed, with the reason and a 500 to read
        assert documents[interrupted]["status"] == "failed"
        assert documents[interrupted]["error"]["detail"] == "interrupted by a restart"
        result = client.get(f"/jobs/{interrupted}/result")
        assert result.status_code == 500
        assert result.json()["detail"] == "interrupted by a restart"
        # running, with '#| job: retries=1': ran again
        assert documents[again]["status"] == "succeeded"
        assert documents[again]["attempts"] == 2
        assert client.get(f"/jobs/{again}/result").json() == 500
        # queued: ran
        for i, job_id in zip(range(7, 20), gated_ids[1:], strict=True):
            assert documents[job_id]["status"] == "succeeded"
            assert client.get(f"/jobs/{job_id}/result").json() == i * 10


ONCE = """#| api
import os

RUNS = {runs!r}

def once(i: int) -> int:
    with open(RUNS, "a") as runs:
        runs.write(f"{{i}} {{os.getpid()}}\\n")
    return i
"""


def test_under_two_workers_each_of_200_jobs_runs_exactly_once(make_notebook, tmp_path):
    runs = tmp_path / "runs.txt"
    notebook = make_notebook(ONCE.format(runs=str(runs)))
    args = ("--workers", "2", "--jobs-db", str(tmp_path / "jobs.db"))
    with KillableServer(notebook, *args) as server, server.client() as client:
        ids = [submit(client, "/once", {"i": i}) for i in range(200)]
        for i, job_id in enumerate(ids):  # read through whichever worker answers
            assert wait_status(client, job_id, timeout=120)["status"] == "succeeded"
            assert client.get(f"/jobs/{job_id}/result").json() == i
    lines = runs.read_text().splitlines()
    ran = sorted(int(line.split()[0]) for line in lines)
    assert ran == list(range(200))  # every job once, none twice


POLITE = """#| api
import os, time
import nb2api

def polite(tag: str) -> str:
    while not nb2api.cancelled():
        time.sleep(0.01)
    open(os.path.join({folder!r}, tag), "w").close()
    return tag
"""


def test_under_two_workers_a_cancel_reaches_the_job_in_either(make_notebook, tmp_path):
    notebook = make_notebook(POLITE.format(folder=str(tmp_path)))
    args = ("--workers", "2", "--jobs-db", str(tmp_path / "jobs.db"))
    with KillableServer(notebook, *args) as server:
        for n in range(4):  # new connections: the DELETE lands on either worker
            with server.client() as client:
                job_id = submit(client, "/polite", {"tag": f"job{n}"})
                wait_status(client, job_id, "running")
            with server.client() as client:
                assert client.delete(f"/jobs/{job_id}").status_code == 200
            wait_until(lambda n=n: (tmp_path / f"job{n}").exists(),
                       message="the job to see nb2api.cancelled()")
            with server.client() as client:
                assert job(client, job_id)["status"] == "cancelled"
