"""A real ``nb2api serve --workers 2`` under a few hundred concurrent requests."""

from __future__ import annotations

import asyncio
import json
import ssl

import httpx
import pytest
from conftest import serve, wait_until
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = 400
CONNECTIONS = 200


async def _load(url: str) -> list[httpx.Response]:
    """``CONNECTIONS`` clients at once, each sending its share of the requests in turn on its
    own keep-alive connection.

    One client per connection, not one client with a pool of ``CONNECTIONS``: httpx's pool does
    work proportional to connections times queued requests on every request, which made this
    client, not the server, the bottleneck (about 10 s for 400 requests on an idle machine).
    A connection then sat idle for up to 5 s between its requests, uvicorn's keep-alive
    timeout, and on a loaded machine the server closed connections as the next request went
    out (``httpx.ReadError``).
    """
    tls = ssl.create_default_context()  # made once: one per client costs more than the load

    responses: list[httpx.Response | None] = [None] * REQUESTS

    async def connection(first: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60, verify=tls,
                                     limits=httpx.Limits(max_connections=1)) as client:
            for i in range(first, REQUESTS, CONNECTIONS):
                responses[i] = await client.post("/add", json={"a": i, "b": 1},
                                                 headers={"X-Request-ID": f"load-{i}"})

    await asyncio.gather(*(connection(c) for c in range(CONNECTIONS)))
    return responses


def _add_counts(text: str) -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "nb2api_requests_total" and s.labels["route"] == "/add"
    }


@pytest.mark.timeout(300)
def test_two_workers_answer_hundreds_of_concurrent_requests(tmp_path, make_notebook):
    notebook = make_notebook(
        "#| setup\nimport math",
        "#| api\nasync def add(a: float, b: float) -> float:\n    return a + b",
    )
    with serve(notebook, "--workers", "2", env={"TMPDIR": str(tmp_path)}) as server:
        url = server.base_url
        assert list(tmp_path.glob("nb2api-metrics-*")), "multiprocess metrics folder"
        responses = asyncio.run(_load(url))
        assert [r.status_code for r in responses] == [200] * REQUESTS
        assert [r.json() for r in responses] == [float(i + 1) for i in range(REQUESTS)]
        assert [r.headers["x-request-id"] for r in responses] == [
            f"load-{i}" for i in range(REQUESTS)
        ]

        # Either worker answers the scrape with the sum over both (multiprocess mode); each
        # worker writes its figures for the others to read within metrics.FLUSH_AFTER.
        wait_until(lambda: _add_counts(httpx.get(f"{url}/metrics", timeout=30).text)
                   == {"200": REQUESTS}, message=f"/metrics to count {REQUESTS} requests")

        # stderr is not a terminal: one JSON line per request, with its request id. A listener
        # thread writes request lines, so wait for the last of them.
        wanted = {f"load-{i}" for i in range(REQUESTS)}

        def logged_every_request() -> list[dict] | None:
            lines = [json.loads(x) for x in server.output().splitlines() if x.startswith("{")]
            access = {x["request_id"] for x in lines if x["logger"] == "nb2api.access"}
            return lines if access >= wanted else None

        lines = wait_until(logged_every_request, message="one access log line per request")
        assert any(" ready; docs at http://127.0.0.1:" in x["message"] for x in lines)
        assert any("running cell 1" in x["message"] for x in lines)
    assert not list(tmp_path.glob("nb2api-metrics-*")), "the metrics folder is removed at exit"
