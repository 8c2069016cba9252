"""``#| batch`` served: real servers on 127.0.0.1, fast path on and off.

The notebook's functions record each batch they are called with (``SEEN``) and wait on a gate the
tests close and open, so which requests share a batch is decided by the test, not by timing: the
routes wait up to a minute for a batch to fill, and each request is sent once the server shows the
previous one waiting (its queue depth in ``/metrics``). Each test uses its own ``label``, a plain
parameter, so tests never share a batch.
"""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import serve, wait_until, write_notebook

NOTEBOOK = (
    "#| setup\nimport threading\nimport numpy as np\nimport pandas as pd\n"
    "from fastapi import HTTPException\n"
    "GATE = threading.Event()\nGATE.set()\nSEEN = []",
    # one batch: 4 items, or a request of 4 or more alone; never by time (a minute)
    "#| api\n"
    "#| batch: max_size=4, max_wait_ms=60000\n"
    "#| max-concurrency: 1\n"
    "def tag(xs: list[int], label: str) -> list[str]:\n"
    "    SEEN.append([label, list(xs)])\n"
    "    GATE.wait(30)\n"
    "    if -1 in xs:\n"
    "        raise ValueError('minus one')\n"
    "    if -2 in xs:\n"
    "        return ['short'] * (len(xs) - 1)\n"    "    if -3 in xs:\n"
    "        raise HTTPException(418, 'a teapot')\n"
    "    if -4 in xs:\n"
    "        return [None if x == -4 else f'{label}{x}/{len(xs)}' for x in xs]\n"
    "    return [f'{label}{x}/{len(xs)}' for x in xs]",
    "#| api\n"
    "#| batch: max_size=4, max_wait_ms=60000\n"
    "#| max-concurrency: 1\n"
    "#| timeout: 1\n"
    "def slow(xs: list[int], label: str) -> list[int]:\n"
    "    SEEN.append([label, list(xs)])\n"
    "    GATE.wait(30)\n"
    "    return xs",
    "#| api\n"
    "#| batch: max_size=3, max_wait_ms=60000\n"
    "#| executor: process\n"
    "def rows(df: pd.DataFrame, a: np.ndarray) -> pd.DataFrame:\n"
    "    return df.assign(batch=len(df), a=a.sum(axis=1))",
    "#| api\n#| batch: max_size=8, max_wait_ms=1\n"
    "def pairs(a: list[int], b: list[int], note=None) -> list[int]:\n"
    "    return [x * y for x, y in zip(a, b)]",
    "#| api\ndef seen(label: str) -> list[list[int]]:\n"
    "    return [xs for name, xs in SEEN if name == label]",
    "#| api\ndef gate(open: bool) -> None:\n    GATE.set() if open else GATE.clear()",
)


@pytest.fixture(scope="module", params=["fast path", "no fast path"])
def server(request, tmp_path_factory):
    path = write_notebook(tmp_path_factory.mktemp("batching"), *NOTEBOOK)
    args = ["--max-queue", "1", "--processes", "1"]
    if request.param == "no fast path":
        args.append("--no-fast-path")
    with serve(path, *args) as running:
        yield running


@pytest.fixture
def client(server):
    with server.client() as http:
        yield http
    httpx.post(f"{server.base_url}/gate", json={"open": True})


def queued(client: httpx.Client, route: str) -> int:
    text = client.get("/metrics").text
    match = re.search(rf'^nb2api_route_queue_depth{{route="{route}"}} (\S+)', text, re.M)
    return int(float(match.group(1))) if match else 0


def histogram(client: httpx.Client, name: str, route: str) -> tuple[float, float]:
    """``(count, sum)`` of a histogram for ``route``."""
    text = client.get("/metrics").text
    count = re.search(rf'^{name}_count{{route="{route}"}} (\S+)', text, re.M)
    total = re.search(rf'^{name}_sum{{route="{route}"}} (\S+)', text, re.M)
    return (float(count.group(1)), float(total.group(1))) if count else (0.0, 0.0)


def one_by_one(client, pool, route: str, bodies: list[dict], waiting_before: int = 0):
    """Send ``bodies`` in this order, each once the previous one waits in the route's queue;
    the futures of their responses."""
    futures = []
    for number, body in enumerate(bodies):
        futures.append(pool.submit(client.post, route, json=body))
        if number < len(bodies) - 1:
            wait_until(lambda n=number: queued(client, route) == waiting_before + n + 1,
                       message=f"request {number + 1} to wait")
    return futures


def test_concurrent_requests_merge_into_one_call_in_arrival_order(client):
    with ThreadPoolExecutor(4) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [x], "label": "m"} for x in (3, 1, 4)]
                             + [{"xs": [1], "label": "m"}])
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json() for a in answers] == [["m3/4"], ["m1/4"], ["m4/4"], ["m1/4"]]
    assert client.post("/seen", json={"label": "m"}).json() == [[3, 1, 4, 1]]


def test_each_request_gets_its_own_items_back(client):
    with ThreadPoolExecutor(2) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [5, 6, 7], "label": "s"},
                                                    {"xs": [8], "label": "s"}])
        assert [f.result().json() for f in futures] == [["s5/4", "s6/4", "s7/4"], ["s8/4"]]


def test_requests_with_other_plain_values_form_other_batches(client):
    bodies = [{"xs": [1, 2], "label": "g1"}, {"xs": [3, 4], "label": "g2"},
              {"xs": [5, 6], "label": "g1"}, {"xs": [7, 8], "label": "g2"}]
    with ThreadPoolExecutor(4) as pool:
        futures = one_by_one(client, pool, "/tag", bodies[:2])
        wait_until(lambda: queued(client, "/tag") == 2, message="two groups to wait")
        futures += [pool.submit(client.post, "/tag", json=body) for body in bodies[2:]]
        answers = [f.result().json() for f in futures]
    assert answers == [["g11/4", "g12/4"], ["g23/4", "g24/4"], ["g15/4", "g16/4"],
                       ["g27/4", "g28/4"]]
    assert client.post("/seen", json={"label": "g1"}).json() == [[1, 2, 5, 6]]
    assert client.post("/seen", json={"label": "g2"}).json() == [[3, 4, 7, 8]]


def test_a_bad_request_gets_its_own_422_and_the_batch_goes_on(client):
    with ThreadPoolExecutor(4) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [x], "label": "v"} for x in (1, 2, 3)])
        wait_until(lambda: queued(client, "/tag") == 3, message="three requests to wait")
        bad = client.post("/tag", json={"xs": ["three"], "label": "v"})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "xs", 0]
        assert queued(client, "/tag") == 3  # the others still wait for a fourth item
        futures.append(pool.submit(client.post, "/tag", json={"xs": [4], "label": "v"}))
        assert [f.result().json() for f in futures] == [["v1/4"], ["v2/4"], ["v3/4"], ["v4/4"]]


def test_merged_parameters_with_different_lengths_get_a_422(client):
    answer = client.post("/pairs", json={"a": [1, 2, 3], "b": [4, 5]})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["body", "b"] and "has 2 items where 'a' has 3" in error["msg"]
    assert client.post("/pairs", json={"a": [1, 2], "b": [4, 5]}).json() == [4, 10]


def test_a_raise_answers_every_request_of_the_batch_with_one_error_id(client, server):
    with ThreadPoolExecutor(4) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [x], "label": "f"}
                                                    for x in (1, -1, 2, 3)])
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [500] * 4
    bodies = [a.json() for a in answers]
    assert {b["detail"] for b in bodies} == {"tag() raised ValueError: minus one"}
    (error_id,) = {b["error_id"] for b in bodies}

    def logged() -> list[str]:  # the log is written by a thread of its own: wait for the line
        return [line for line in server.output().splitlines()
                if error_id in line and "minus one" in line]

    wait_until(logged, message="the batch's error in the log")
    assert len(logged()) == 1 and "a batch of 4 requests, 4 items" in logged()[0]


def test_a_result_of_the_wrong_length_is_a_500_that_says_so(client):
    with ThreadPoolExecutor(2) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [1, -2, 3], "label": "w"},
                                                    {"xs": [4], "label": "w"}])
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [500, 500]
    assert answers[0].json()["detail"].startswith("tag() returned 3 results for 4 input items")


def test_an_http_exception_is_the_answer_of_every_request_of_the_batch(client):
    with ThreadPoolExecutor(2) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [1, -3, 2], "label": "h"},
                                                    {"xs": [3], "label": "h"}])
        answers = [f.result() for f in futures]
    assert [(a.status_code, a.json()) for a in answers] == [(418, {"detail": "a teapot"})] * 2


def test_a_part_that_does_not_fit_the_return_annotation_fails_only_its_request(client):
    with ThreadPoolExecutor(2) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [1, 2, 3], "label": "p"},
                                                    {"xs": [-4], "label": "p"}])
        first, second = (f.result() for f in futures)
    assert first.json() == ["p1/4", "p2/4", "p3/4"]
    assert second.status_code == 500
    assert second.json()["detail"].startswith("tag() returned a value that does not match")


def test_a_request_with_no_items_or_a_value_that_cannot_be_compared_runs_alone(client):
    assert client.post("/tag", json={"xs": [], "label": "e"}).json() == []
    assert client.post("/seen", json={"label": "e"}).json() == [[]]
    answer = client.post("/pairs", json={"a": [2], "b": [3], "note": {"any": "json"}})
    assert answer.json() == [6]


def test_a_request_larger_than_max_size_runs_alone(client):
    answer = client.post("/tag", json={"xs": [1, 2, 3, 4, 5, 6], "label": "big"})
    assert answer.json() == [f"big{x}/6" for x in range(1, 7)]
    assert client.post("/seen", json={"label": "big"}).json() == [[1, 2, 3, 4, 5, 6]]


def test_a_request_that_times_out_while_waiting_drops_out_with_a_504(client):
    client.post("/gate", json={"open": False})
    with ThreadPoolExecutor(4) as pool:
        blocker = pool.submit(client.post, "/slow", json={"xs": [1, 2, 3, 4], "label": "t"})
        wait_until(lambda: client.post("/seen", json={"label": "t"}).json() == [[1, 2, 3, 4]],
                   message="the first batch to start")
        late = client.post("/slow", json={"xs": [5], "label": "t"})  # waits for a slot
        assert late.status_code == 504
        assert late.json()["detail"] == "slow() did not finish within 1 s"
        assert blocker.result().status_code == 504  # it runs on, without a client
        client.post("/gate", json={"open": True})
        futures = one_by_one(client, pool, "/slow", [{"xs": [x], "label": "t"}
                                                     for x in (6, 7, 8, 9)])
        assert [f.result().json() for f in futures] == [[6], [7], [8], [9]]
    # 5 never reached the function: it left before its batch started
    assert client.post("/seen", json={"label": "t"}).json() == [[1, 2, 3, 4], [6, 7, 8, 9]]


def test_a_full_queue_answers_503_with_retry_after(client):
    client.post("/gate", json={"open": False})
    with ThreadPoolExecutor(8) as pool:
        blocker = pool.submit(client.post, "/tag", json={"xs": [0, 0, 0, 0], "label": "q"})
        wait_until(lambda: client.post("/seen", json={"label": "q"}).json(),
                   message="the first batch to start")
        # max_size (4) + --max-queue (1) requests may wait
        futures = one_by_one(client, pool, "/tag", [{"xs": [x], "label": "q"}
                                                    for x in (1, 2, 3, 4, 5)])
        wait_until(lambda: queued(client, "/tag") == 5, message="five requests to wait")
        refused = client.post("/tag", json={"xs": [6], "label": "q"})
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "too many requests waiting" in refused.json()["detail"]
        client.post("/gate", json={"open": True})
        assert blocker.result().status_code == 200
        assert [f.result().status_code for f in futures[:4]] == [200] * 4
        wait_until(lambda: queued(client, "/tag") == 1, message="5 to wait for a batch")
        assert client.post("/tag", json={"xs": [6, 7, 8], "label": "q"}).status_code == 200
        assert futures[4].result().json() == ["q5/4"]
    assert client.post("/seen", json={"label": "q"}).json() == [[0, 0, 0, 0], [1, 2, 3, 4],
                                                                 [5, 6, 7, 8]]


def test_a_client_that_goes_away_drops_out_of_a_batch_not_yet_started(client, server):
    client.post("/gate", json={"open": False})
    with ThreadPoolExecutor(4) as pool:
        blocker = pool.submit(client.post, "/tag", json={"xs": [0, 0, 0, 0], "label": "d"})
        wait_until(lambda: client.post("/seen", json={"label": "d"}).json(),
                   message="the first batch to start")
        host, port = urlsplit(server.base_url).hostname, urlsplit(server.base_url).port
        body = json.dumps({"xs": [99], "label": "d"}).encode()
        with socket.create_connection((host, port)) as raw:
            raw.sendall(b"POST /tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            wait_until(lambda: queued(client, "/tag") == 1, message="the request to wait")
        wait_until(lambda: queued(client, "/tag") == 0, message="the request to drop out")
        client.post("/gate", json={"open": True})
        assert blocker.result().status_code == 200
        futures = one_by_one(client, pool, "/tag", [{"xs": [x], "label": "d"}
                                                    for x in (1, 2, 3, 4)])
        assert [f.result().json() for f in futures] == [["d1/4"], ["d2/4"], ["d3/4"], ["d4/4"]]
    assert client.post("/seen", json={"label": "d"}).json() == [[0, 0, 0, 0], [1, 2, 3, 4]]


def test_metrics_count_batch_sizes_and_the_wait_before_each(client):
    count, total = histogram(client, "nb2api_batch_size", "/tag")
    waits, _ = histogram(client, "nb2api_batch_wait_seconds", "/tag")
    with ThreadPoolExecutor(2) as pool:
        futures = one_by_one(client, pool, "/tag", [{"xs": [1, 2, 3], "label": "x"},
                                                    {"xs": [4], "label": "x"}])
        assert all(f.result().status_code == 200 for f in futures)
    assert client.post("/tag", json={"xs": [1] * 9, "label": "x"}).status_code == 200
    assert histogram(client, "nb2api_batch_size", "/tag") == (count + 2, total + 4 + 9)
    assert histogram(client, "nb2api_batch_wait_seconds", "/tag")[0] == waits + 2
    text = client.get("/metrics").text
    assert re.search(r'^nb2api_batch_size_bucket\{le="4.0",route="/tag"\} ', text, re.M)


def test_a_process_pool_route_batches_tables_and_arrays(client):
    bodies = [{"df": [{"x": 1}, {"x": 2}], "a": [[1, 1], [2, 2]]},
              {"df": [{"x": 3}], "a": [[3, 3]]}]
    with ThreadPoolExecutor(2) as pool:
        futures = one_by_one(client, pool, "/rows", bodies)
        answers = [f.result().json() for f in futures]
    assert answers == [[{"x": 1, "batch": 3, "a": 2}, {"x": 2, "batch": 3, "a": 4}],
                       [{"x": 3, "batch": 3, "a": 6}]]
    # a table of other columns never shares a batch: it runs when its own batch is full
    other = client.post("/rows", json={"df": [{"y": 1}] * 3, "a": [[1]] * 3})
    assert other.json() == [{"y": 1, "batch": 3, "a": 1}] * 3


def test_several_server_processes_each_batch(make_notebook):
    path = make_notebook(
        "#| api\n#| batch: max_size=4, max_wait_ms=20\n"
        "def echo(xs: list[int]) -> list[list[int]]:\n    return [[x, len(xs)] for x in xs]",
    )
    with serve(path, "--workers", "2") as running, running.client() as http, \
            ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(http.post, "/echo", json={"xs": [x]}) for x in range(16)]
        answers = [f.result().json() for f in futures]
        assert [a[0][0] for a in answers] == list(range(16))
        assert all(1 <= size <= 4 for (_, size), in answers)
        wait_until(lambda: histogram(http, "nb2api_batch_size", "/echo")[1] == 16,
                   message="both workers' batches in /metrics")
