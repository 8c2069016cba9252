"""Helpers of the MCP tests: the official ``mcp`` client over Streamable HTTP and over stdio,
and the OpenAPI request schema a tool's input schema must equal."""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

T = TypeVar("T")
Session = Callable[[ClientSession], Awaitable[T]]


def over_http(url: str, work: Session[T], token: str | None = None, timeout: float = 60) -> T:
    """``work(session)`` on an initialized ``ClientSession`` over Streamable HTTP to ``url``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def run() -> T:
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(asyncio.wait_for(run(), timeout))


def over_stdio(notebook: Path, work: Session[T], *args: str, timeout: float = 90,
               errlog: Any = None, cwd: Path | None = None) -> T:
    """``work(session)`` on a ``ClientSession`` to ``nb2api mcp NOTEBOOK ARGS`` over stdio."""
    import os

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "nb2api", "mcp", str(notebook), *args],
        env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "HOME", "LANG")},
        cwd=cwd,
    )

    async def run() -> T:
        async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return asyncio.run(asyncio.wait_for(run(), timeout))


def resolved(schema: Any, defs: dict[str, Any], prefix: str) -> Any:
    """``schema`` with every ``$ref`` starting with ``prefix`` replaced by what it names, and no
    ``$defs`` left (the test notebooks' models do not refer to themselves)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix):
            target = resolved(defs[ref[len(prefix):]], defs, prefix)
            rest = {k: resolved(v, defs, prefix) for k, v in schema.items() if k != "$ref"}
            return {**target, **rest}
        return {k: resolved(v, defs, prefix) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [resolved(item, defs, prefix) for item in schema]
    return schema


def tool_input(tool: Any) -> dict[str, Any]:
    """A listed tool's input schema with its ``$defs`` resolved."""
    schema = copy.deepcopy(tool.input_schema)
    return resolved(schema, schema.get("$defs", {}), "#/$defs/")


def openapi_request(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    """The request schema of an operation: an object of its parameters (path, query, header,
    cookie, each with its description) and its JSON body's properties, refs resolved."""
    components = document.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"
    operation = document["paths"][path][method.lower()]
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in operation.get("parameters", []):
        schema = resolved(parameter["schema"], components, prefix)
        if "description" in parameter:
            schema.setdefault("description", parameter["description"])
        properties[parameter["name"]] = schema
        if parameter.get("required"):
            required.append(parameter["name"])
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        schema = resolved(body["schema"], components, prefix)
        properties.update(schema["properties"])
        required += schema.get("required", [])
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    return result
