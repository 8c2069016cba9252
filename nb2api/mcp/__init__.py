"""An edge: the notebook's functions as MCP tools for LLM agents.

``tools`` describes each route as a tool (from the app's OpenAPI document); ``calls`` runs a tool
call through the route's own endpoint and turns its response into an MCP result; ``server`` is
the MCP server over them; ``http`` mounts it at ``/mcp`` (Streamable HTTP) and ``stdio`` runs it
for ``nb2api mcp``; ``app`` composes the app that ``nb2api.create_app`` returns.
"""

from __future__ import annotations

from .app import create_app
from .http import MCP_PATH, mount_mcp

__all__ = ["MCP_PATH", "create_app", "mount_mcp"]
