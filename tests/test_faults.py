"""Faults in notebook code: a dying process-pool worker, sys.exit() and Ctrl-C in a route."""

from __future__ import annotations

import os
import signal
import threading

import pytest
from conftest import wait_until
from fastapi.testclient import TestClient

from nb2api import create_app

SLOW_AND_EXIT = (
    "#| setup\nimport os\nimport time",
    "#| api\n#| executor: process\ndef p_slow(s: float) -> float:\n    time.sleep(s)\n    return s",
    "#| api\n#| executor: process\ndef p_exit() -> int:\n    os._exit(1)",
)


def test_a_dead_worker_fails_only_its_call_and_is_replaced_at_once(make_notebook):
    app = create_app(make_notebook(*SLOW_AND_EXIT), processes=2)
    pool = app.state.runtime.processes
    with TestClient(app) as client:
        slow: dict = {}
        caller = threading.Thread(
            target=lambda: slow.update(r=client.post("/p_slow", json={"s": 3})))
        caller.start()
        wait_until(lambda: pool.busy == 1, timeout=10, message="p_slow running")
        died = client.post("/p_exit")
        assert died.status_code == 500
        body = died.json()
        assert body["detail"] == "p_exit() ended its worker process (exit code 1)"
        assert len(body["error_id"]) == 12
        # the pool is whole again without waiting for another call (a required 2 s bound)
        wait_until(lambda: client.get("/readyz").status_code == 200, timeout=2,
                   message="/readyz 200 after a worker died")
        caller.join(timeout=30)
        assert slow["r"].status_code == 200 and slow["r"].json() == 3  # not on the dead worker
        assert client.post("/p_slow", json={"s": 0}).json() == 0


def test_a_worker_killed_while_idle_is_replaced_before_the_next_call(make_notebook):
    app = create_app(make_notebook(*SLOW_AND_EXIT), processes=1)
    with TestClient(app) as client:
        [slot] = app.state.runtime.processes._slots
        os.kill(slot.process.pid, signal.SIGKILL)
        wait_until(lambda: not slot.process.is_alive(), timeout=10, message="the worker dies")
        assert client.post("/p_slow", json={"s": 0}).json() == 0  # not a 500
        assert client.get("/readyz").status_code == 200


EXITS = (
    "#| setup\nimport sys\nimport asyncio",
    "#| api\n"
    "def t_exit(code: int) -> int:\n    sys.exit(code)\n\n\n"
    "def t_interrupt() -> int:\n    raise KeyboardInterrupt\n\n\n"
    "#| timeout: 5\ndef t_exit_timed() -> int:\n    sys.exit('bye')\n\n\n"
    "#| executor: process\ndef p_exit(code: int) -> int:\n    sys.exit(code)\n\n\n"
    "#| executor: process\ndef p_interrupt() -> int:\n    raise KeyboardInterrupt\n\n\n"
    "async def a_exit(code: int) -> int:\n    sys.exit(code)\n\n\n"
    "#| timeout: 5\nasync def a_interrupt() -> int:\n    raise KeyboardInterrupt\n\n\n"
    "def ok() -> int:\n    return 1",
)


@pytest.mark.parametrize(("route", "body", "detail"), [
    ("t_exit", {"code": 3}, "t_exit() raised SystemExit: 3"),
    ("t_interrupt", {}, "t_interrupt() raised KeyboardInterrupt"),
    ("t_exit_timed", {}, "t_exit_timed() raised SystemExit: bye"),
    ("p_exit", {"code": 4}, "p_exit() raised SystemExit: 4"),
    ("p_interrupt", {}, "p_interrupt() raised KeyboardInterrupt"),
    ("a_exit", {"code": 5}, "a_exit() raised SystemExit: 5"),
    ("a_interrupt", {}, "a_interrupt() raised KeyboardInterrupt"),
])
@pytest.mark.parametrize("fast_path", [True, False])
def test_exit_and_interrupt_are_the_usual_500(make_notebook, route, body, detail, fast_path):
    with TestClient(create_app(make_notebook(*EXITS), processes=1, fast_path=fast_path),
                    raise_server_exceptions=False) as client:
        response = client.post(f"/{route}", json=body)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        answer = response.json()
        assert answer["detail"] == detail
        assert len(answer["error_id"]) == 12
        assert client.post("/ok").json() == 1  # serving on
        assert client.get("/readyz").status_code == 200
