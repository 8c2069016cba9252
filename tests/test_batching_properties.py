"""Whatever mix of requests arrives together, each gets exactly its own items back."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import write_notebook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nb2api

requests = st.lists(
    st.tuples(st.lists(st.integers(-1000, 1000), max_size=7), st.sampled_from([1, 2, 3])),
    min_size=1, max_size=12,
)


@pytest.fixture(scope="module", params=[True, False], ids=["fast path", "no fast path"])
def app(request, tmp_path_factory):
    path = write_notebook(tmp_path_factory.mktemp("batching"), (
        "#| api\n#| batch: max_size=5, max_wait_ms=2\n"
        "def echo(xs: list[int], k: int) -> list[list[int]]:\n"
        "    return [[x, k, len(xs)] for x in xs]"
    ))
    return nb2api.create_app(path, fast_path=request.param, access_log=False)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests)
def test_each_request_gets_its_own_items_back(app, sent):
    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/echo", json={"xs": xs, "k": k})
                                          for xs, k in sent))

    answers = asyncio.run(send_all())
    for (xs, k), answer in zip(sent, answers, strict=True):
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert [[x, kk] for x, kk, _ in got] == [[x, k] for x in xs]
        # a batch holds at most max_size items, unless one request alone is larger
        assert all(size <= max(5, len(xs)) for _, _, size in got)
