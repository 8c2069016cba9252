"""``nb2api serve`` as a real subprocess on 127.0.0.1, talked to over HTTP."""

import json
import shutil
import threading
import time

import httpx
from conftest import EXAMPLES, serve

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


def test_a_busy_pool_does_not_block_the_event_loop(notebook):
    with serve(notebook("core_pool"), "--max-workers", "2") as server:
        results = {}

        def call(key, path, body=None):
            started = time.monotonic()
            with server.client() as client:
                results[key] = (client.post(path, json=body).json(), time.monotonic() - started)

        heavy = [threading.Thread(target=call, args=(i, "/heavy", {"seconds": 3})) for i in range(3)]
        for thread in heavy:
            thread.start()
        time.sleep(0.5)  # both workers are now asleep in heavy(); the third call waits
        call("light", "/light")
        for thread in heavy:
            thread.join(timeout=30)
    value, seconds = results["light"]
    assert value == "light"
    assert seconds < 1.5, f"light route took {seconds:.2f} s while the pool was busy"
    names = {results[i][0] for i in range(3)}
    assert all(name.startswith("nb2api-worker") for name in names)
    # Two workers, three 3-second calls: the third waited for a free worker.
    assert max(results[i][1] for i in range(3)) >= 5.0


def test_several_worker_processes(notebook):
    with serve(notebook("core_tags"), "--workers", "2") as server, server.client() as client:
        for radius in range(20):
            assert client.post("/area", json={"radius": radius}).status_code == 200


def test_reload_picks_up_a_saved_notebook(tmp_path, notebook):
    path = tmp_path / "live.ipynb"
    shutil.copy(notebook("core_tags"), path)
    with serve(path, "--reload") as server, server.client() as client:
        assert client.post("/double", json={"x": 2}).status_code == 404
        nb = json.loads(path.read_text())
        nb["cells"].append({"cell_type": "code", "id": "new", "metadata": {}, "outputs": [],
                            "execution_count": None,
                            "source": "#| api\ndef double(x: int) -> int:\n    return 2 * x\n"})
        path.write_text(json.dumps(nb))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response = client.post("/double", json={"x": 2})
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass  # the server is restarting
            time.sleep(0.3)
        assert response.json() == 4
