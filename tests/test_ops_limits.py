"""Per-route timeout (504) and queue bound (503 with Retry-After)."""

from __future__ import annotations

import asyncio
import time

import httpx
from ops_support import ops_notebook

from nb2api import create_app


async def _wait_for(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def run(app, scenario):
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:
            return await scenario(c)

    try:
        return asyncio.run(main())
    finally:
        app.state.runtime.stop()


def test_a_thread_route_over_its_timeout_gets_504_and_its_worker_frees_on_return():
    app = create_app(ops_notebook("limits"))
    pool = app.state.runtime.pool

    async def scenario(client):
        fast = await client.post("/slow", json={"seconds": 0.01})
        assert fast.json() == 0.01
        started = time.monotonic()
        response = await client.post("/slow", json={"seconds": 1.0})
        assert response.status_code == 504
        assert response.json()["detail"] == "slow() did not finish within 0.3 s"
        assert time.monotonic() - started < 0.9
        assert pool.pending == 1  # the thread still runs the function...
        await _wait_for(lambda: pool.pending == 0)  # ...until it returns

    run(app, scenario)


def test_an_async_route_over_its_timeout_gets_504():
    app = create_app(ops_notebook("limits"))

    async def scenario(client):
        response = await client.post("/slow_async", json={"seconds": 5})
        assert response.status_code == 504
        assert (await client.post("/slow_async", json={"seconds": 0})).json() == 0

    run(app, scenario)


def test_a_full_route_answers_503_with_retry_after():
    app = create_app(ops_notebook("limits"), max_queue=0)
    module = app.state.notebook.module

    async def scenario(client):
        first = asyncio.create_task(client.post("/hold"))
        await _wait_for(module.entered.is_set)
        busy = await client.post("/hold")
        assert busy.status_code == 503
        assert int(busy.headers["retry-after"]) >= 1
        assert "busy" in busy.json()["detail"]
        other = await client.post("/upload", json={"data": [1]})  # other routes are not held
        assert other.json() == 1
        await client.post("/release")
        assert (await first).json() == "released"
        assert (await client.post("/hold")).status_code == 200

    run(app, scenario)


def test_requests_queue_up_to_the_bound_then_get_503():
    app = create_app(ops_notebook("limits"), max_queue=1)
    module = app.state.notebook.module

    def queued() -> float:
        text = app.state.runtime.metrics.render().decode()
        line = next(x for x in text.splitlines()
                    if x.startswith('nb2api_route_queue_depth{route="/hold"}'))
        return float(line.split()[-1])

    async def scenario(client):
        first = asyncio.create_task(client.post("/hold"))
        await _wait_for(module.entered.is_set)
        second = asyncio.create_task(client.post("/hold"))
        await _wait_for(lambda: queued() == 1)
        third = await client.post("/hold")
        assert third.status_code == 503
        await client.post("/release")
        assert (await first).json() == "released"
        assert (await second).json() == "released"
        assert queued() == 0

    run(app, scenario)


def test_a_global_timeout_applies_where_no_directive_says():
    app = create_app(ops_notebook("limits"), timeout=0.2)
    module = app.state.notebook.module

    async def scenario(client):
        assert (await client.post("/hold")).status_code == 504
        module.gate.set()
        assert (await client.post("/upload", json={"data": []})).json() == 0

    run(app, scenario)


def test_the_openapi_document_lists_the_limit_answers():
    app = create_app(ops_notebook("limits"))
    try:
        paths = app.openapi()["paths"]
        assert {"503", "504"} <= set(paths["/slow"]["post"]["responses"])
        assert "503" not in paths["/slow_async"]["post"]["responses"]
        assert "504" in paths["/slow_async"]["post"]["responses"]
    finally:
        app.state.runtime.stop()
