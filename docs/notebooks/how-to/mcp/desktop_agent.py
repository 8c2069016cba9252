import asyncio

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

server = StdioServerParameters(command="nb2api", args=["mcp", "iris.ipynb"])


async def main() -> None:
    with open("cells.log", "w") as log:
        async with stdio_client(server, errlog=log) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            print([tool.name for tool in tools.tools])
            result = await session.call_tool("list_species", {})
            print(result.structured_content)


asyncio.run(main())
