"""The process pool: routes marked '#| executor: process' run in workers forked after setup."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import wait_until, write_notebook
from fastapi.testclient import TestClient

from nb2api import NotebookError, create_app

PROCESS = (
    "#| setup\nimport os\n\n"
    "# State made at setup: the forked workers must see it without running setup again.\n"
    "FACTOR = 3\nSTARTED_IN = os.getpid()",
    '''#| api
def spin_thread(n: int) -> int:
    """Pure-Python CPU work on the thread pool."""
    return sum(i * i for i in range(n)) * FACTOR


#| executor: process
def spin(n: int) -> int:
    """The same work in a worker process."""
    return sum(i * i for i in range(n)) * FACTOR


#| executor: process
def where() -> dict[str, int]:
    """The worker's pid and the pid that ran setup."""
    return {"pid": os.getpid(), "setup_pid": STARTED_IN}


#| executor: process
def fail(n: int) -> int:
    """Raise in the worker process."""
    raise ValueError(f"bad n {n}")''',
)


def expected(n: int) -> int:
    return sum(i * i for i in range(n)) * 3


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    notebook = write_notebook(tmp_path_factory.mktemp("processes"), *PROCESS)
    with TestClient(create_app(notebook, processes=2)) as c:
        yield c


def test_process_routes_return_correct_results(client):
    for n in (0, 1, 10, 5000):
        assert client.post("/spin", json={"n": n}).json() == expected(n)
    assert client.post("/spin_thread", json={"n": 5000}).json() == expected(5000)


def test_workers_are_forked_after_setup(client):
    where = client.post("/where").json()
    assert where["pid"] != os.getpid()
    assert where["setup_pid"] == os.getpid()  # setup ran once, here, before the fork


def test_an_exception_in_a_worker_is_a_500_with_an_error_id(client):
    response = client.post("/fail", json={"n": 7})
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "fail() raised ValueError: bad n 7"
    assert len(body["error_id"]) == 12


def test_metrics_show_the_process_pool(client):
    text = client.get("/metrics").text
    assert 'nb2api_pool_workers{executor="process"} 2.0' in text


def test_a_killed_worker_is_replaced(client):
    os.kill(client.post("/where").json()["pid"], signal.SIGKILL)

    def answered():
        response = client.post("/spin", json={"n": 10})
        assert response.status_code in (200, 500)  # calls caught on the broken pool fail cleanly
        return response if response.status_code == 200 else None

    response = wait_until(answered, timeout=60, interval=0.1, message="a replaced worker")
    assert response.json() == expected(10)
    assert client.get("/readyz").status_code == 200


def test_process_executor_needs_a_plain_def(make_notebook):
    notebook = make_notebook("#| api\n#| executor: process\nasync def nope(x: int) -> int:\n"
                             "    return x\n")
    with pytest.raises(NotebookError, match="needs a plain 'def' function; nope"):
        create_app(notebook)
