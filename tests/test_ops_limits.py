"""Per-route timeout (504) and queue bound (503 with Retry-After)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from nb2api import create_app

# Calls that must outlast a timeout wait on a gate instead of sleeping, so what a test checks
# does not depend on how fast a busy machine runs it. The timeouts are long enough for a fast
# call on such a machine.
LIMITS = (
    "#| setup\nimport asyncio\nimport threading\n\n"
    "entered = threading.Event()\ngate = threading.Event()",
    '''#| api
def release() -> str:
    """Open the gate."""
    gate.set()
    return "open"


def upload(data: list[int]) -> int:
    """Count the items."""
    return len(data)


#| timeout: 2
def slow(hold: bool) -> str:
    """Answer at once, or hold a worker thread until release() opens the gate."""
    if hold:
        gate.wait(60)
    return "done"


#| timeout: 2
async def slow_async(seconds: float) -> float:
    """Sleep on the event loop."""
    await asyncio.sleep(seconds)
    return seconds


#| max-concurrency: 1
def hold() -> str:
    """Take the route's one slot until release() opens the gate."""
    entered.set()
    gate.wait(30)
    return "released"''',
)


@pytest.fixture
def limits_app(make_notebook):
    """``limits_app(**settings)``: an app of the LIMITS notebook."""
    return lambda **settings: create_app(make_notebook(*LIMITS), **settings)


async def _wait_for(predicate, seconds: float = 30.0) -> None:
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


def test_a_thread_route_over_its_timeout_gets_504_and_its_worker_frees_on_return(limits_app):
    app = limits_app()
    pool = app.state.runtime.pool

    async def scenario(client):
        assert (await client.post("/slow", json={"hold": False})).json() == "done"
        response = await client.post("/slow", json={"hold": True})
        assert response.status_code == 504  # answered while the gate is still closed
        assert response.json()["detail"] == "slow() did not finish within 2 s"
        assert pool.pending == 1  # the thread still runs the function...
        assert (await client.post("/release")).json() == "open"
        await _wait_for(lambda: pool.pending == 0)  # ...until it returns

    run(app, scenario)


def test_an_async_route_over_its_timeout_gets_504(limits_app):
    app = limits_app()

    async def scenario(client):
        response = await client.post("/slow_async", json={"seconds": 120})
        assert response.status_code == 504
        assert (await client.post("/slow_async", json={"seconds": 0})).json() == 0

    run(app, scenario)


def test_a_full_route_answers_503_with_retry_after(limits_app):
    app = limits_app(max_queue=0)
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


def test_requests_queue_up_to_the_bound_then_get_503(limits_app):
    app = limits_app(max_queue=1)
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


def test_a_global_timeout_applies_where_no_directive_says(limits_app):
    app = limits_app(timeout=2)
    module = app.state.notebook.module

    async def scenario(client):
        assert (await client.post("/hold")).status_code == 504
        module.gate.set()
        assert (await client.post("/upload", json={"data": []})).json() == 0

    run(app, scenario)


def test_the_openapi_document_lists_the_limit_answers(limits_app):
    app = limits_app()
    try:
        paths = app.openapi()["paths"]
        assert {"503", "504"} <= set(paths["/slow"]["post"]["responses"])
        assert "503" not in paths["/slow_async"]["post"]["responses"]
        assert "504" in paths["/slow_async"]["post"]["responses"]
    finally:
        app.state.runtime.stop()
