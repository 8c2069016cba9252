"""The most common MCP request, a ``tools/call`` of the handshake protocol, answered directly.

The SDK's stateless transport answers each POST with a fresh transport, memory streams, a task
per request and a dispatcher: several times the work of the tool call itself. A ``tools/call``
(MCP 2025-11-25 and earlier, JSON answer, no session) needs none of that: its params are checked
by the SDK's own request schema and model, the tool is called, and its result is shaped for the
wire by the SDK's own result schema, exactly as the SDK's runner does. Everything else
(``initialize``, ``tools/list``, notifications, the 2026-07-28 protocol, a request the SDK would
refuse) goes to the SDK unchanged.
"""

from __future__ import annotations

import mcp.types as types
import orjson
from mcp_types.methods import serialize_server_result, validate_client_request
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from .calls import ToolCall

DEFAULT_VERSION = types.DEFAULT_NEGOTIATED_VERSION  # a request without the version header
_VERSIONS = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)
_JSON_TYPES = (b"application/json", b"application/*", b"*/*")


def handshake_version(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The protocol version of a POST the direct path may answer: a JSON body, an answer in JSON
    accepted, no session, a handshake-era version (or none given); else None."""
    version = DEFAULT_VERSION
    json_body = accepts_json = False
    for name, value in headers:
        if name == b"content-type":
            json_body = value.split(b";")[0].strip().lower() == b"application/json"
        elif name == b"accept":
            accepts_json = any(part.split(b";")[0].strip().lower() in _JSON_TYPES
                               for part in value.split(b","))
        elif name == b"mcp-protocol-version":
            version = value.decode("latin-1")
            if version not in _VERSIONS:
                return None
        elif name == b"mcp-session-id":
            return None
    return version if json_body and accepts_json else None


async def answer(calls: dict[str, ToolCall], body: bytes, version: str) -> bytes | None:
    """The JSON-RPC response to ``body`` when it is a ``tools/call`` of a known tool that the
    SDK would accept; None for anything the SDK should answer."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if (not isinstance(message, dict) or message.get("jsonrpc") != "2.0"
            or message.get("method") != "tools/call"):
        return None
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    params = message.get("params")
    try:  # what the SDK's runner checks before it calls the handler
        validate_client_request("tools/call", version, params)
        typed = types.CallToolRequestParams.model_validate({} if params is None else params,
                                                           by_name=False)
    except Exception:
        return None  # the SDK says what is wrong
    call = calls.get(typed.name)
    if call is None:
        return None
    result = await call(typed.arguments)
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    wire = serialize_server_result("tools/call", version, dumped)
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": wire})
