"""The process pool: routes marked '#| executor: process' run in workers forked after setup."""

from __future__ import annotations

import os
import signal
import time

import nbformat
import pytest
from fastapi.testclient import TestClient
from ops_support import ops_notebook

from nb2api import NotebookError, create_app


def expected(n: int) -> int:
    return sum(i * i for i in range(n)) * 3


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ops_notebook("process"), processes=2)) as c:
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
    deadline = time.monotonic() + 60
    while True:
        response = client.post("/spin", json={"n": 10})
        if response.status_code == 200:
            break
        assert response.status_code == 500  # calls caught on the broken pool fail cleanly
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert response.json() == expected(10)
    assert client.get("/readyz").status_code == 200


def test_process_executor_needs_a_plain_def(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "#| api\n#| executor: process\nasync def nope(x: int) -> int:\n    return x\n")])
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match="needs a plain 'def' function; nope"):
        create_app(path)
