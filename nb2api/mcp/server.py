"""The MCP server of an app: ``tools/list`` and ``tools/call`` over the app's own routes.

Built from a FastAPI app that :func:`nb2api.serve.create_app` made: its route specs, its runtime
(pools, limits, metrics) and the endpoints FastAPI calls. The transports (:mod:`.http` for
``/mcp``, :mod:`.stdio` for ``nb2api mcp``) drive the same server.
"""

from __future__ import annotations

import functools
from typing import Any

import mcp.types as types
from fastapi import FastAPI
from fastapi.routing import APIRoute
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from .._version import __version__
from .calls import ToolCall
from .tools import ToolSpec, build_tools


class NotebookTools:
    """The tools of one app and their calls, read from the app when first asked for (its OpenAPI
    document is built then, once)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @functools.cached_property
    def tools(self) -> dict[str, ToolSpec]:
        return build_tools(self.app.state.routes, self.app.openapi())

    @functools.cached_property
    def calls(self) -> dict[str, ToolCall]:
        endpoints = {
            (route.path, method): route.endpoint
            for route in self.app.router.routes if isinstance(route, APIRoute)
            for method in route.methods
        }
        runtime = self.app.state.runtime
        return {
            name: ToolCall(tool, endpoints[(tool.spec.path, tool.spec.method)], runtime)
            for name, tool in self.tools.items()
        }

    @functools.cached_property
    def listing(self) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[
            types.Tool(name=t.name, description=t.description, input_schema=t.input_schema,
                       output_schema=t.output_schema)
            for t in self.tools.values()
        ])


def build_server(app: FastAPI, notebook: NotebookTools | None = None) -> Server[Any]:
    """A low-level MCP server whose tools are ``app``'s notebook routes (``notebook``'s)."""
    notebook = notebook if notebook is not None else NotebookTools(app)

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return notebook.listing

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        call = notebook.calls.get(params.name)
        if call is None:
            known = ", ".join(notebook.tools) or "none"
            raise MCPError(types.INVALID_PARAMS, f"no tool named {params.name!r} (tools: {known})")
        return await call(params.arguments)

    def input_schema(name: str) -> dict[str, Any] | None:
        tool = notebook.tools.get(name)
        return tool.input_schema if tool is not None else None

    loaded = app.state.notebook
    return Server(
        app.title,
        version=__version__,
        instructions=f"Tools served by nb2api from the notebook {loaded.notebook.path.name}: "
        "each tool is one of its functions.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # For the 2026-07-28 protocol's header checks; else the SDK lists every tool per call.
        get_tool_input_schema=input_schema,
    )
