"""The MCP server of an app: ``tools/list`` and ``tools/call`` over the app's own routes.

Built from a FastAPI app that :func:`nb2api.serve.create_app` made: its route specs, its runtime
(pools, limits, metrics) and the endpoints FastAPI calls. The transports (:mod:`.http` for
``/mcp``, :mod:`.stdio` for ``nb2api mcp``) drive the same server.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import mcp.types as types
from fastapi import FastAPI
from fastapi.routing import APIRoute
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from .._version import __version__
from .calls import ToolCall
from .progress import reporting
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
        return _calls(self.app, self.tools)

    @functools.cached_property
    def listing(self) -> types.ListToolsResult:
        return _listing(self.tools)


class CombinedTools:
    """The tools of several notebooks served under prefixes (:mod:`nb2api.serve.multi`), named
    ``<prefix>_<function>``, read from the notebooks served now: a notebook added, reloaded or
    removed under ``--reload`` changes them at the next request."""

    def __init__(self, notebooks: Any) -> None:
        self.notebooks = notebooks  # a nb2api.serve.multi.Notebooks
        self._key: tuple[tuple[str, int], ...] | None = None
        self._built: tuple[dict[str, ToolSpec], dict[str, ToolCall], types.ListToolsResult]

    @property
    def tools(self) -> dict[str, ToolSpec]:
        return self._current()[0]

    @property
    def calls(self) -> dict[str, ToolCall]:
        return self._current()[1]

    @property
    def listing(self) -> types.ListToolsResult:
        return self._current()[2]

    def _current(self) -> tuple[dict[str, ToolSpec], dict[str, ToolCall], types.ListToolsResult]:
        live = sorted(self.notebooks.live.items())
        key = tuple((name, id(serving.app)) for name, serving in live)
        if key != self._key:
            tools: dict[str, ToolSpec] = {}
            calls: dict[str, ToolCall] = {}
            for prefix, serving in live:
                own = NotebookTools(serving.app).tools
                renamed = {f"{prefix}_{name}": dataclasses.replace(tool, name=f"{prefix}_{name}")
                           for name, tool in own.items()}
                tools.update(renamed)
                calls.update(_calls(serving.app, renamed))
            self._built = (tools, calls, _listing(tools))
            self._key = key
        return self._built


def _calls(app: FastAPI, tools: dict[str, ToolSpec]) -> dict[str, ToolCall]:
    """Each tool's call: the endpoint FastAPI calls for its route, on ``app``'s runtime."""
    endpoints = {
        (route.path, method): route.endpoint
        for route in app.router.routes if isinstance(route, APIRoute)
        for method in route.methods
    }
    runtime = app.state.runtime
    return {name: ToolCall(tool, endpoints[(tool.spec.path, tool.spec.method)], runtime)
            for name, tool in tools.items()}


def _listing(tools: dict[str, ToolSpec]) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[
        types.Tool(name=t.name, description=t.description, input_schema=t.input_schema,
                   output_schema=t.output_schema)
        for t in tools.values()
    ])


def build_server(app: FastAPI,
                 notebook: NotebookTools | CombinedTools | None = None) -> Server[Any]:
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
        if params.meta is None or params.meta.get("progress_token") is None:
            return await call(params.arguments)
        async with reporting(ctx.session.report_progress):  # the client asked for progress
            return await call(params.arguments)

    def input_schema(name: str) -> dict[str, Any] | None:
        tool = notebook.tools.get(name)
        return tool.input_schema if tool is not None else None

    loaded = getattr(app.state, "notebook", None)
    source = (f"the notebook {loaded.notebook.path.name}: each tool is one of its functions"
              if loaded is not None else "several notebooks: each tool is one function of one "
              "notebook, named <notebook>_<function>")
    return Server(
        app.title,
        version=__version__,
        instructions=f"Tools served by nb2api from {source}.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # For the 2026-07-28 protocol's header checks; else the SDK lists every tool per call.
        get_tool_input_schema=input_schema,
    )
