"""Helpers for the job and streaming tests: submit, wait for a job's state, gates."""

from __future__ import annotations

import httpx
from conftest import wait_until

TERMINAL = ("succeeded", "failed", "cancelled")
# The job endpoints, in every app's OpenAPI document beside the notebook's routes.
JOB_PATHS = frozenset({"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/result",
                       "/jobs/{job_id}/events"})
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
    """Notebook code that waits until the file ``gate`` exists (the test opens it), for at most
    two minutes, so that a failed test leaves no worker waiting for ever."""
    return (f"GATE = {str(gate)!r}\n"
            "def _wait_for_gate():\n"
            "    import os, time\n"
            "    deadline = time.monotonic() + 120\n"
            "    while not os.path.exists(GATE) and time.monotonic() < deadline:\n"
            "        time.sleep(0.01)\n")


class KillableServer:
    """``nb2api serve`` in a session of its own, so that a test can ``kill -9`` all of its
    processes at once (uvicorn's supervisor, its workers, their process pools)."""

    def __init__(self, notebook, *args: str) -> None:
        import os
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        from conftest import free_port, wait_until_answers

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="nb2api-jobs-", suffix=".log")[1])
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nb2api", "serve", str(notebook), "--host", "127.0.0.1",
                 "--port", str(self.port), *args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ,
            )
        try:
            wait_until_answers(f"{self.base_url}/readyz", self.process, self.output, timeout=90)
        except BaseException:
            self.kill()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def kill(self) -> None:
        """SIGKILL every process of the server."""
        import os
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def __enter__(self) -> KillableServer:
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is not None:
            print(f"--- the server printed:\n{self.output()}")
        self.kill()
        self.log.unlink(missing_ok=True)


def without_jobs(document: dict) -> dict:
    """An OpenAPI document as an exported app writes it, which runs no jobs: without the
    ``/jobs`` endpoints (``/<name>/jobs`` in the combined document of several notebooks), the
    202 of every route, and the schemas only those used."""
    import copy
    import json
    import re

    document = copy.deepcopy(document)
    document["paths"] = {path: operations for path, operations in document["paths"].items()
                         if not re.match(r"^(/[^/]+)?/jobs(/|$)", path)}
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.get("responses", {}).pop("202", None)
    schemas = document.get("components", {}).get("schemas")
    if schemas:
        used: set[str] = set()
        todo = [json.dumps(document["paths"])]
        while todo:
            for name in _references(todo.pop()):
                if name in schemas and name not in used:
                    used.add(name)
                    todo.append(json.dumps(schemas[name]))
        document["components"]["schemas"] = {name: schema for name, schema in schemas.items()
                                             if name in used}
    return document


def _references(text: str) -> list[str]:
    import re

    return re.findall(r'"#/components/schemas/([^"]+)"', text)
