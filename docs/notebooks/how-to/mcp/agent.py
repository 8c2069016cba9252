import asyncio
import os
from pathlib import Path

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

URL = os.environ.get("MCP_URL", "http://localhost:8000/mcp")
TOKEN = Path("token.txt").read_text().strip()


async def main() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=headers) as http, \
            streamable_http_client(URL, http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        print([tool.name for tool in tools.tools])
        result = await session.call_tool("species_summary", {"name": "setosa", "stat": "max"})
        print(result.structured_content)
        result = await session.call_tool("list_species", {})
        print(result.structured_content)
        flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": -1}
        result = await session.call_tool("predict", {"flower": flower})
        print(result.is_error, result.content[0].text)


asyncio.run(main())
