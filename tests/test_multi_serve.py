"""``nb2api serve`` with several notebooks, as real servers on 127.0.0.1: isolation between the
notebooks' pools, --skip-broken, --workers, and a live folder under --reload."""

from __future__ import annotations

import os
import re
import threading
import time

import httpx
from conftest import serve, wait_until, write_notebook

ADD = "#| api\ndef add(a: int, b: int) -> int:\n    return a + b"


def _metric(server, line_start: str) -> float | None:
    """The value of the first /metrics line that starts with ``line_start``."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_one_notebook_saturating_its_pool_does_not_delay_another(tmp_path):
    gate = tmp_path / "gate"
    write_notebook(
        tmp_path / "nbs",
        f"#| setup\n#| max-workers: 2\nimport pathlib, time\nGATE = pathlib.Path({str(gate)!r})",
        "#| api\ndef hold() -> str:\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not GATE.exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n"
        "    return 'released'",
        name="a.ipynb",
    )
    write_notebook(tmp_path / "nbs", "#| api\ndef ping() -> str:\n    return 'pong'",
                   name="b.ipynb")
    with serve(tmp_path / "nbs", "--max-workers", "4") as server:
        assert _metric(server, 'nb2api_pool_workers{executor="thread",notebook="a"}') == 2
        assert _metric(server, 'nb2api_pool_workers{executor="thread",notebook="b"}') == 4
        answers: list[httpx.Response] = []

        def hold() -> None:
            answers.append(httpx.post(f"{server.base_url}/a/hold", timeout=150))

        holders = [threading.Thread(target=hold) for _ in range(3)]
        for thread in holders:
            thread.start()
        try:
            # A's two workers are blocked on the gate and its third call waits for one.
            wait_until(lambda: _metric(
                server, 'nb2api_pool_busy_workers{executor="thread",notebook="a"}') == 2,
                message="a's pool to be saturated")
            wait_until(lambda: _metric(
                server, 'nb2api_route_queue_depth{notebook="a",route="/hold"}') == 1,
                message="a's third call to queue")
            with server.client() as client:
                for _ in range(20):
                    response = client.post("/b/ping")
                    assert (response.status_code, response.json()) == (200, "pong")
            assert not answers and all(thread.is_alive() for thread in holders)
            assert _metric(
                server, 'nb2api_pool_busy_workers{executor="thread",notebook="a"}') == 2
        finally:
            gate.touch()
            for thread in holders:
                thread.join(timeout=150)
        assert [(r.status_code, r.json()) for r in answers] == [(200, "released")] * 3


def test_skip_broken_serves_the_rest_and_says_which_and_why(tmp_path):
    write_notebook(tmp_path, ADD, name="a.ipynb")
    write_notebook(tmp_path, "#| setup\nimport math\nmath.nothing_here", ADD, name="b.ipynb")
    write_notebook(tmp_path, "scratch = 1", name="scratch.ipynb")
    with serve(tmp_path, "--skip-broken", "--log-format", "text") as server, \
            server.client() as client:
        assert client.post("/a/add", json={"a": 1, "b": 2}).json() == 3
        ready = client.get("/readyz").json()
        assert ready["broken"] == ["b"]
        assert "cell 1" in ready["notebooks"]["b"]["reason"]
        output = server.output()
        assert re.search(r"not serving /b: .*b\.ipynb, cell 1 .*AttributeError", output)
        assert re.search(r"skipped .*scratch\.ipynb: no cell is marked setup or api", output)
        assert re.search(r"1 notebook ready: http://127\.0\.0\.1:\d+/a/ \(1 route\)", output)


def test_a_list_and_a_named_prefix_under_several_workers(tmp_path):
    a = write_notebook(tmp_path, ADD, name="a.ipynb")
    b = write_notebook(tmp_path / "models", ADD.replace("a + b", "a * b"), name="v2.ipynb")
    with serve(a, f"pricing={b}", "--workers", "2") as server, server.client() as client:
        for _ in range(10):
            assert client.post("/a/add", json={"a": 2, "b": 3}).json() == 5
            assert client.post("/pricing/add", json={"a": 2, "b": 3}).json() == 6
        assert client.get("/readyz").json()["status"] == "ready"

        def counted() -> bool:  # each process writes its figures within 0.1 s
            text = client.get("/metrics").text
            return all(f'nb2api_requests_total{{method="POST",notebook="{name}",route="/add",'
                       f'status="200"}} 10.0' in text for name in ("a", "pricing"))

        wait_until(counted, timeout=30, message="both notebooks' requests in /metrics")
        text = client.get("/metrics").text
        assert 'nb2api_pool_workers{executor="thread",notebook="a"}' in text


def _save(folder, name, *cells) -> None:
    """Write a notebook into ``folder`` in one step, as an editor's save does."""
    staged = write_notebook(folder.parent / "staging", *cells, name=name)
    os.replace(staged, folder / name)


def test_a_live_folder_adds_reloads_keeps_and_stops_notebooks_without_failing_others(tmp_path):
    folder = tmp_path / "nbs"
    write_notebook(folder, ADD, name="a.ipynb")
    with serve(folder, "--reload", "--log-format", "text") as server, \
            server.client() as client:
        stop = threading.Event()
        failures: list[str] = []
        answered = [0]

        def load() -> None:  # about 100 requests a second to A, bounded
            with httpx.Client(base_url=server.base_url, timeout=30) as a:
                while not stop.is_set() and answered[0] < 30_000:
                    try:
                        response = a.post("/a/add", json={"a": 1, "b": 2})
                        if (response.status_code, response.json()) != (200, 3):
                            failures.append(f"{response.status_code} {response.text}")
                    except httpx.HTTPError as error:
                        failures.append(repr(error))
                    answered[0] += 1
                    stop.wait(0.01)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            def b_answers():
                response = client.post("/b/ping")
                return response if response.status_code == 200 else None

            added = time.monotonic()
            _save(folder, "b.ipynb", "#| api\ndef ping() -> str:\n    return 'v1'")
            first = wait_until(b_answers, timeout=60, message="the new notebook to serve")
            print(f"a notebook added to the folder served after "
                  f"{time.monotonic() - added:.2f} s")
            assert first.json() == "v1"

            _save(folder, "b.ipynb", "#| setup\nraise RuntimeError('half-written')",
                  "#| api\ndef ping() -> str:\n    return 'v2'")
            wait_until(lambda: "reload_error" in client.get("/readyz").json()["notebooks"]["b"],
                       timeout=60, message="the broken save to be noticed")
            assert client.post("/b/ping").json() == "v1"  # the last good version
            assert client.get("/readyz").json()["status"] == "ready"
            assert "still serving the last version of /b" in server.output()

            _save(folder, "b.ipynb", "#| api\ndef ping() -> str:\n    return 'v3'")
            fixed = wait_until(lambda: (r := client.post("/b/ping")).json() == "v3" and r,
                               timeout=60, message="the fixed save to serve")
            assert fixed.headers["x-notebook-version"] != first.headers["x-notebook-version"]
            assert "reload_error" not in client.get("/readyz").json()["notebooks"]["b"]

            (folder / "b.ipynb").unlink()
            wait_until(lambda: client.post("/b/ping").status_code == 404, timeout=60,
                       message="the removed notebook to stop")
            assert set(client.get("/readyz").json()["notebooks"]) == {"a"}
            assert [t["name"] for t in client.get("/openapi.json").json()["tags"]] == ["a"]
        finally:
            stop.set()
            loader.join(timeout=60)
        assert answered[0] > 0
        assert failures == []
