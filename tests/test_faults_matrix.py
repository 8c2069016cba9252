"""Faults on real servers, for each executor: crash, hang, memory blow-up, a client that leaves,
SIGTERM with calls in flight; and a worker process killed under ``--workers 2``.

Every test keeps "bystander" calls in flight while the fault happens and says what became of each
one (completed, or failed with a clear status), and that the server is healthy afterwards
(``/readyz`` 200 within a bounded wait), or, after SIGTERM, that it exited 0 and left no process
behind. Calls mark a file when they start and end (``FAULT_MARKS``), so the test waits for events,
never for a fixed time; the notebook's own sleeps are the faults (and the bystanders' work).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import serve, wait_until, write_notebook

SETUP = """#| setup
import os
import pathlib
import resource
import time

MARKS = pathlib.Path(os.environ["FAULT_MARKS"])


def _mark(tag, what):
    if tag:
        (MARKS / f"{tag}.{what}").write_text(str(os.getpid()))


def _work(seconds, tag):
    _mark(tag, "started")
    time.sleep(seconds)
    _mark(tag, "done")
    return os.getpid()


def _allocate_past_a_limit(mb):
    # Bounded: the worker's address space may grow by 64 MB only, so the allocation fails at
    # once instead of taking the machine's memory.
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + 64 * 2**20, hard))
    try:
        return len(bytearray(mb * 2**20))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
"""

API = """#| api
def t_work(seconds: float, tag: str = "") -> int:
    return _work(seconds, tag)


#| timeout: 1
def t_hang(seconds: float, tag: str = "") -> int:
    return _work(seconds, tag)


#| max-concurrency: 1
def t_single(seconds: float, tag: str = "") -> int:
    return _work(seconds, tag)


def t_crash() -> int:
    raise RuntimeError("crashed on purpose")


def t_memory() -> int:
    return len(bytearray(2**50))  # a petabyte: refused by malloc at once


#| executor: process
def p_work(seconds: float, tag: str = "") -> int:
    return _work(seconds, tag)


#| executor: process
#| timeout: 1
def p_hang(seconds: float, tag: str = "") -> int:
    return _work(seconds, tag)


#| executor: process
#| max-concurrency: 1
def p_single(seconds: float, tag: str = "") -> int:
    return _work(seconds, tag)


#| executor: process
def p_crash() -> int:
    os._exit(1)


#| executor: process
def p_memory() -> int:
    return _allocate_past_a_limit(200)


async def light() -> str:
    return "light"
"""

EXECUTORS = ["t", "p"]  # thread pool, process pool: the route names' prefix


class Marks:
    """The folder where calls mark their start and end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def tag(self, what: str) -> str:
        """A tag no other call of the session has (the folder is shared by a module's tests)."""
        return f"{what}-{uuid.uuid4().hex}"

    def wait(self, tag: str, what: str, timeout: float = 30) -> int:
        """The pid of the process that marked ``tag`` ``what`` (started, done)."""
        path = self.folder / f"{tag}.{what}"
        wait_until(lambda: path.exists() and path.read_text(), timeout=timeout,
                   message=f"call {tag} {what}")
        return int(path.read_text())

    def marked(self, tag: str, what: str) -> bool:
        return (self.folder / f"{tag}.{what}").exists()


class Call(threading.Thread):
    """A request in flight on its own thread: ``response`` or ``error`` once joined."""

    def __init__(self, base_url: str, path: str, body: dict | None = None) -> None:
        super().__init__(daemon=True)
        self.base_url, self.path, self.body = base_url, path, body or {}
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        try:
            self.response = httpx.post(self.base_url + self.path, json=self.body, timeout=60)
        except httpx.HTTPError as exc:
            self.error = exc

    def result(self) -> httpx.Response:
        self.join(timeout=60)
        assert not self.is_alive(), f"{self.path} never answered"
        assert self.error is None, f"{self.path}: {self.error!r}"
        assert self.response is not None
        return self.response


def bystanders(server, marks: Marks, prefix: str, n: int = 2, seconds: float = 1.0) -> list:
    """``n`` calls of ``{prefix}_work`` in flight (started in the notebook) when this returns."""
    calls = []
    for _ in range(n):
        tag = marks.tag("bystander")
        calls.append((tag, Call(server.base_url, f"/{prefix}_work",
                                {"seconds": seconds, "tag": tag})))
    for tag, _ in calls:
        marks.wait(tag, "started")
    return calls


def assert_completed(calls: list, marks: Marks) -> None:
    """Each bystander completed normally: 200 and its work done."""
    for tag, call in calls:
        response = call.result()
        assert response.status_code == 200, response.text
        assert marks.marked(tag, "done")


def assert_healthy(server, prefix: str) -> None:
    with server.client() as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30,
                   message="/readyz 200")
        assert client.post(f"/{prefix}_work", json={"seconds": 0}).status_code == 200
        assert client.post("/light").json() == "light"


@pytest.fixture(scope="module")
def marks_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("marks")


@pytest.fixture(scope="module")
def server(tmp_path_factory, marks_folder):
    """One server with both executors; every test leaves it healthy (and checks that)."""
    notebook = write_notebook(tmp_path_factory.mktemp("faults"), SETUP, API)
    with serve(notebook, "--processes", "2", "--max-workers", "4",
               env={"FAULT_MARKS": str(marks_folder)}) as running:
        yield running


@pytest.fixture
def marks(marks_folder) -> Marks:
    return Marks(marks_folder)


@pytest.mark.parametrize("prefix", EXECUTORS)
def test_a_crashing_call_is_a_500_and_the_others_complete(server, marks, prefix):
    others = bystanders(server, marks, prefix)
    with server.client() as client:
        crashed = client.post(f"/{prefix}_crash")
    assert crashed.status_code == 500
    detail = crashed.json()["detail"]
    assert detail == ("t_crash() raised RuntimeError: crashed on purpose" if prefix == "t"
                      else "p_crash() ended its worker process (exit code 1)")
    assert len(crashed.json()["error_id"]) == 12
    assert_completed(others, marks)
    assert_healthy(server, prefix)


@pytest.mark.parametrize("prefix", EXECUTORS)
def test_a_hanging_call_is_a_504_while_the_server_answers(server, marks, prefix):
    # one bystander: with two process workers, the hanging call starts at once (a call's wait in
    # the queue counts towards its timeout too)
    others = bystanders(server, marks, prefix, n=1, seconds=1.5)
    tag = marks.tag("hang")
    hung = Call(server.base_url, f"/{prefix}_hang", {"seconds": 4, "tag": tag})
    marks.wait(tag, "started")
    with server.client() as client:  # while it hangs: probes and other routes answer
        assert client.get("/healthz").status_code == 200
        assert client.post("/light").json() == "light"
    response = hung.result()
    assert response.status_code == 504
    assert response.json() == {"detail": f"{prefix}_hang() did not finish within 1 s"}
    assert_completed(others, marks)
    # a thread or a process cannot be stopped: the call runs on to its end, then its worker frees
    marks.wait(tag, "done")
    assert_healthy(server, prefix)


@pytest.mark.parametrize("prefix", EXECUTORS)
def test_a_memory_blow_up_is_a_500_and_the_worker_serves_on(server, marks, prefix):
    others = bystanders(server, marks, prefix)
    with server.client() as client:
        response = client.post(f"/{prefix}_memory")
    assert response.status_code == 500
    assert response.json()["detail"].startswith(f"{prefix}_memory() raised MemoryError")
    assert_completed(others, marks)
    assert_healthy(server, prefix)


def _leave_mid_request(base_url: str, path: str, body: dict, started) -> None:
    """Send a request, wait until its call started, and close the connection unanswered."""
    host, port = base_url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        started()


@pytest.mark.parametrize("prefix", EXECUTORS)
def test_a_client_that_leaves_frees_the_slot_for_the_next_call(server, marks, prefix):
    others = bystanders(server, marks, prefix)
    tag = marks.tag("left")
    _leave_mid_request(server.base_url, f"/{prefix}_single", {"seconds": 1, "tag": tag},
                       lambda: marks.wait(tag, "started"))
    # the route takes one call at a time: the next one runs once the abandoned call returned
    with server.client() as client:
        after = client.post(f"/{prefix}_single", json={"seconds": 0})
    assert after.status_code == 200
    assert marks.marked(tag, "done")  # the abandoned call ran to its end, then freed the slot
    assert_completed(others, marks)
    assert_healthy(server, prefix)


def _family(process: psutil.Process) -> list[psutil.Process]:
    return [process, *process.children(recursive=True)]


def _gone(processes: list[psutil.Process]) -> bool:
    def alive(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return not any(alive(p) for p in processes)


@pytest.mark.parametrize("options", [("t", ()), ("p", ()), ("t", ("--workers", "2"))],
                         ids=["thread", "process", "workers-2"])
def test_sigterm_lets_calls_in_flight_finish_and_exits_0(tmp_path, options):
    prefix, args = options
    marks = Marks(tmp_path / "marks")
    marks.folder.mkdir()
    notebook = write_notebook(tmp_path / "nb", SETUP, API)
    with serve(notebook, "--processes", "2", *args,
               env={"FAULT_MARKS": str(marks.folder)}) as server:
        family = _family(psutil.Process(server.process.pid))
        calls = bystanders(server, marks, prefix, n=2, seconds=1.5)
        server.process.send_signal(signal.SIGTERM)
        # uvicorn stops accepting and waits (up to 10 s) for the calls in flight: they complete
        assert_completed(calls, marks)
        assert server.process.wait(timeout=30) == 0
        wait_until(lambda: _gone(family), timeout=30, message="every process of the server ends")
        assert len(family) >= 3  # the server and its process-pool workers (or server workers)


def test_a_killed_server_worker_fails_only_its_calls_and_is_replaced(tmp_path):
    marks = Marks(tmp_path / "marks")
    marks.folder.mkdir()
    notebook = write_notebook(tmp_path / "nb", SETUP, API)
    with serve(notebook, "--workers", "2", env={"FAULT_MARKS": str(marks.folder)}) as server:
        calls = bystanders(server, marks, "t", n=6, seconds=3)
        pids = {tag: marks.wait(tag, "started") for tag, _ in calls}
        victim = next(iter(pids.values()))
        supervisor = psutil.Process(server.process.pid)
        before = _workers(supervisor)
        assert victim in before and len(before) == 2
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(victim).send_signal(signal.SIGKILL)
        for tag, call in calls:
            call.join(timeout=60)
            assert not call.is_alive()
            if pids[tag] == victim:  # its connection closes unanswered: the client knows
                assert call.error is not None, call.response
            else:
                assert call.response is not None and call.response.status_code == 200, call.error
                assert call.response.json() == pids[tag]
        # uvicorn starts a replacement worker: two workers again, one of them new
        wait_until(lambda: len(_workers(supervisor) - {victim}) == 2
                   and _workers(supervisor) - before, timeout=60,
                   message="a replacement worker")
        with server.client() as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, timeout=30,
                       message="/readyz 200")
            for _ in range(4):
                assert client.post("/t_work", json={"seconds": 0},
                                   headers={"Connection": "close"}).status_code == 200
        assert server.process.poll() is None


def _workers(supervisor: psutil.Process) -> set[int]:
    """The supervisor's live worker processes."""
    workers = set()
    for child in supervisor.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(
                    child.cmdline()):
                workers.add(child.pid)
    return workers


@pytest.mark.parametrize("prefix", EXECUTORS)
def test_a_call_that_times_out_waiting_for_a_worker_never_runs(server, marks, prefix):
    workers = {"t": 4, "p": 2}[prefix]  # the server's --max-workers and --processes
    others = bystanders(server, marks, prefix, n=workers, seconds=2)  # every worker busy
    tag = marks.tag("queued")
    with server.client() as client:  # past the route's limiter, waiting for a worker: 504
        response = client.post(f"/{prefix}_hang", json={"seconds": 0, "tag": tag})
    assert response.status_code == 504
    assert_completed(others, marks)
    later = marks.tag("later")  # queued after it, so it starts after it would have
    with server.client() as client:
        assert client.post(f"/{prefix}_work", json={"seconds": 0, "tag": later}).status_code == 200
    assert not marks.marked(tag, "started"), "the call ran after its client was given a 504"
    assert_healthy(server, prefix)
