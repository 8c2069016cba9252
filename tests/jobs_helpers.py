"""Helpers for the job and streaming tests: submit, wait for a job's state, gates."""

from __future__ import annotations

import httpx
from conftest import wait_until

TERMINAL = ("succeeded", "failed", "cancelled")
ASYNC = {"Prefer": "respond-async"}


def submit(client, path: str, body: dict | None = None, **headers: str) -> str:
    """POST ``body`` to ``path`` as a job; its id (after checking the 202)."""
    answer = client.post(path, json=body or {}, headers={**ASYNC, **headers})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def job(client, job_id: str) -> dict:
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_status(client, job_id: str, *statuses: str, timeout: float = 60) -> dict:
    """The job's document once its status is one of ``statuses`` (default: any terminal)."""
    wanted = statuses or TERMINAL

    def reached() -> dict | None:
        try:
            document = job(client, job_id)
        except httpx.HTTPError:
            return None
        return document if document["status"] in wanted else None

    return wait_until(reached, timeout=timeout, message=f"job {job_id} to be {wanted}")


def gated(gate) -> str:
    """Notebook code that waits until the file ``gate`` exists (the test opens it)."""
    return (f"GATE = {str(gate)!r}\n"
            "def _wait_for_gate():\n"
            "    import os, time\n"
            "    while not os.path.exists(GATE):\n"
            "        time.sleep(0.01)\n")
