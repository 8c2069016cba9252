"""``nb2api serve`` as a real subprocess on 127.0.0.1, talked to over HTTP."""

import threading

import httpx
from conftest import EXAMPLES, code, serve, wait_until

FLOWER = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.5, "petal_width": 2.1}


def test_serves_the_quickstart_over_http():
    with serve(EXAMPLES / "quickstart.ipynb") as server, server.client() as client:
        response = client.post("/predict", json={"flower": FLOWER})
        assert response.status_code == 200
        assert response.json()["species"] == "virginica"
        assert client.get("/species/setosa").json()["petal_width"] < 0.5
        assert client.post("/predict", json={"flower": {}}).status_code == 422
        assert client.get("/openapi.json").json()["info"]["title"] == "quickstart"
        assert "swagger" in client.get("/docs").text.lower()
        assert client.get("/redoc").status_code == 200
        output = server.output()
    assert "running cell 2" in output and "routes ready" in output


BLOCKING_POOL = (
    "#| setup\nimport threading\n\n"
    "gate = threading.Event()\nlock = threading.Lock()\nrunning = peak = 0",
    '''#| api
def heavy() -> str:
    """Holds its worker, as a CPU-heavy computation would, until release() opens the gate."""
    global running, peak
    with lock:
        running += 1
        peak = max(peak, running)
    try:
        gate.wait(120)
    finally:
        with lock:
            running -= 1
    return threading.current_thread().name


async def light() -> str:
    return "light"


async def busy() -> dict[str, int]:
    return {"running": running, "peak": peak}


async def release() -> str:
    gate.set()
    return "open"''',
)


def test_a_busy_pool_does_not_block_the_event_loop(make_notebook):
    with serve(make_notebook(*BLOCKING_POOL), "--max-workers", "2") as server, \
            server.client() as client:
        names: list[str] = []

        def call_heavy() -> None:
            with server.client() as own:
                names.append(own.post("/heavy", json={}).json())

        heavy = [threading.Thread(target=call_heavy) for _ in range(3)]
        for thread in heavy:
            thread.start()
        wait_until(lambda: client.post("/busy", json={}).json()["running"] == 2,
                   message="both workers to be held by heavy()")
        # Both workers are held and a third call waits for one: the event loop still answers.
        assert client.post("/light", json={}).json() == "light"
        assert names == [] and all(thread.is_alive() for thread in heavy)

        assert client.post("/release", json={}).json() == "open"
        for thread in heavy:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in heavy)
        # Two workers, three calls: the third ran only once a worker was free.
        assert client.post("/busy", json={}).json() == {"running": 0, "peak": 2}
    assert len(names) == 3 and all(name.startswith("nb2api-worker") for name in names)


TAGGED = (
    code("import math\nCALLS = []\nCALLS.append('setup')", tags=["setup"]),
    'raise RuntimeError("an unmarked cell must never run")',
    code("def area(radius: float) -> float:\n    return math.pi * radius**2", tags=["api"]),
)


def test_several_worker_processes(make_notebook):
    with serve(make_notebook(*TAGGED), "--workers", "2") as server, server.client() as client:
        for radius in range(20):
            assert client.post("/area", json={"radius": radius}).status_code == 200


def test_reload_picks_up_a_saved_notebook(make_notebook):
    path = make_notebook(*TAGGED, name="live.ipynb")
    with serve(path, "--reload") as server, server.client() as client:
        assert client.post("/double", json={"x": 2}).status_code == 404
        make_notebook(*TAGGED, "#| api\ndef double(x: int) -> int:\n    return 2 * x",
                      name="live.ipynb")

        def doubled() -> int | None:
            try:
                response = client.post("/double", json={"x": 2})
            except httpx.HTTPError:
                return None  # the server is restarting
            return response.json() if response.status_code == 200 else None

        assert wait_until(doubled, timeout=60, interval=0.3, message="the reload") == 4


def test_reload_keeps_the_last_good_version_while_a_save_is_broken(make_notebook):
    good = "#| api\ndef version() -> int:\n    return 1"
    path = make_notebook("#| setup\nimport math", good, name="live.ipynb")
    with serve(path, "--reload", "--log-format", "text") as server, \
            server.client() as client:
        assert client.post("/version").json() == 1
        make_notebook("#| setup\nimport math", "#| api\ndef version() -> int:\n    return (",
                      name="live.ipynb")
        wait_until(lambda: 'cell 2 ("def version() -> int:"), line 3: syntax error'
                   in server.output(), timeout=60, message="the failed reload in the log")
        for _ in range(5):  # answered at once, by the last version that loaded
            assert client.post("/version", timeout=10).json() == 1
        make_notebook("#| setup\nimport math", "#| api\ndef version() -> int:\n    return 2",
                      name="live.ipynb")
        wait_until(lambda: client.post("/version", timeout=10).json() == 2, timeout=60,
                   interval=0.2, message="the fixed version")
        assert "Traceback" not in server.output()
