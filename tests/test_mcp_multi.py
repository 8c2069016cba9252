"""MCP on a server of several notebooks: one /mcp at the root, every notebook's tools named
``<notebook>_<function>``, each call answered by its own notebook's app."""

from __future__ import annotations

import httpx
from conftest import serve, write_notebook
from mcp_helpers import over_http

PRICING = "#| api\ndef quote(area: float, rate: float = 10.0) -> float:\n    return area * rate"
CHURN = "#| api\ndef quote(months: int) -> str:\n    return 'stays' if months > 12 else 'leaves'"


def test_several_notebooks_share_one_mcp_with_namespaced_tools(tmp_path):
    folder = tmp_path / "team"
    write_notebook(folder, PRICING, name="pricing.ipynb")
    write_notebook(folder, CHURN, name="churn.ipynb")
    with serve(folder, "--token", "team-token") as server:
        url = f"{server.base_url}/mcp"

        async def work(session):
            tools = {t.name: t for t in (await session.list_tools()).tools}
            priced = await session.call_tool("pricing_quote", {"area": 3.0})
            churned = await session.call_tool("churn_quote", {"months": 30})
            refused = await session.call_tool("churn_quote", {"months": "many"})
            return tools, priced, churned, refused

        tools, priced, churned, refused = over_http(url, work, token="team-token")
        rest = httpx.post(f"{server.base_url}/pricing/quote", json={"area": 3.0},
                          headers={"Authorization": "Bearer team-token"}).json()
        anonymous = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                               headers={"Accept": "application/json, text/event-stream"})
    assert sorted(tools) == ["churn_quote", "pricing_quote"]  # two quote()s, kept apart
    assert set(tools["pricing_quote"].input_schema["properties"]) == {"area", "rate"}
    assert priced.structured_content == {"result": rest} == {"result": 30.0}
    assert churned.structured_content == {"result": "stays"}
    assert refused.is_error and "months" in refused.content[0].text
    assert anonymous.status_code == 401


def test_no_mcp_on_several_notebooks(tmp_path):
    folder = tmp_path / "team"
    write_notebook(folder, PRICING, name="pricing.ipynb")
    write_notebook(folder, CHURN, name="churn.ipynb")
    with serve(folder, "--no-mcp") as server:
        assert httpx.post(f"{server.base_url}/mcp", json={}).status_code == 404
        assert httpx.post(f"{server.base_url}/pricing/quote", json={"area": 1.0}).json() == 10.0
