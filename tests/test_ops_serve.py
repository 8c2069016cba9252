"""A real ``nb2api serve --workers 2`` under a few hundred concurrent requests."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from ops_support import ops_notebook, serve
from prometheus_client.parser import text_string_to_metric_families

from nb2api.serve.metrics import FLUSH_AFTER

REQUESTS = 400
CONNECTIONS = 200


async def _load(url: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def one(i: int) -> httpx.Response:
            return await client.post("/add", json={"a": i, "b": 1},
                                     headers={"X-Request-ID": f"load-{i}"})

        return await asyncio.gather(*(one(i) for i in range(REQUESTS)))


def _add_counts(text: str) -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "nb2api_requests_total" and s.labels["route"] == "/add"
    }


@pytest.mark.timeout(240)
def test_two_workers_answer_hundreds_of_concurrent_requests(tmp_path):
    with serve(ops_notebook("basic"), "--workers", "2", env={"TMPDIR": str(tmp_path)}) as (
        url, log
    ):
        assert list(tmp_path.glob("nb2api-metrics-*")), "multiprocess metrics folder"
        responses = asyncio.run(_load(url))
        failures = [r for r in responses if r.status_code != 200]
        assert failures == []
        assert [r.json() for r in responses] == [float(i + 1) for i in range(REQUESTS)]
        assert {r.headers["x-request-id"] for r in responses} == {
            f"load-{i}" for i in range(REQUESTS)
        }

        # Either worker answers the scrape with the sum over both (multiprocess mode); each
        # worker writes its figures for the others to read within metrics.FLUSH_AFTER.
        deadline = time.monotonic() + 10
        while True:
            counts = _add_counts(httpx.get(f"{url}/metrics", timeout=30).text)
            if counts == {"200": REQUESTS} or time.monotonic() > deadline:
                break
            time.sleep(FLUSH_AFTER)
        assert counts == {"200": REQUESTS}

        # stderr is not a terminal: one JSON line per request, with its request id. A listener
        # thread writes request lines, so give the last of them a moment.
        wanted = {f"load-{i}" for i in range(REQUESTS)}
        deadline = time.monotonic() + 30
        while True:
            lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
            access = [x for x in lines if x["logger"] == "nb2api.access"]
            if {x["request_id"] for x in access} >= wanted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert {x["request_id"] for x in access} >= wanted
        assert any("routes ready; docs at http://127.0.0.1:" in x["message"] for x in lines)
        assert any("running cell 1" in x["message"] for x in lines)
    assert not list(tmp_path.glob("nb2api-metrics-*")), "the metrics folder is removed at exit"
