"""The MCP tools of an app: one per notebook route, described as its ``/docs`` describes it.

A tool's description, input schema and output schema are read from the app's own OpenAPI document,
so a tool and its route cannot be documented differently: the description is the operation's
summary and description (the docstring's summary and body, and the markdown cell above); the input
schema merges the route's parameters (path, query, header, cookie) and the properties of its JSON
body into one object, each property with its constraints and its description; the output schema
is the 200 answer's JSON schema. Referenced models become local ``$defs``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..load.directives import option_flag
from ..routes import RouteSpec

_COMPONENTS = "#/components/schemas/"
_SKIPPED_SOURCES = ("form", "file")  # a tool takes JSON arguments: no uploads, no forms


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its route, what ``tools/list`` says of it, and how its results are wrapped."""

    spec: RouteSpec
    name: str
    description: str | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    wrapped: bool  # structured results are ``{"result": value}``: the schema is no JSON object


def is_tool(spec: RouteSpec) -> bool:
    """Whether ``spec``'s function is an MCP tool: not marked ``#| mcp: false``, and taking no
    uploaded file or form field (a tool's arguments are JSON)."""
    if not option_flag(spec.function.options.get("mcp")):
        return False
    return not any(p.source in _SKIPPED_SOURCES for p in spec.params)


def build_tools(specs: list[RouteSpec], openapi: dict[str, Any]) -> dict[str, ToolSpec]:
    """The tools of ``specs``, by name, in notebook order, from the app's OpenAPI document."""
    components = openapi.get("components", {}).get("schemas", {})
    tools = {}
    for spec in specs:
        if not is_tool(spec):
            continue
        operation = openapi["paths"][spec.path][spec.method.lower()]
        tools[spec.name] = _tool(spec, operation, components)
    return tools


def _tool(spec: RouteSpec, operation: dict[str, Any], components: dict[str, Any]) -> ToolSpec:
    description = "\n\n".join(
        part for part in (operation.get("summary"), operation.get("description")) if part
    )
    inputs = input_schema(operation, components)
    output = output_schema(operation, components)
    # Without a declared schema, an object answer is given as is and anything else wrapped.
    wrapped = output is not None and not _is_object(output)
    if output is not None:
        # MCP wants "type": "object" at the root of an output schema (until 2026-07-28).
        output = _wrap(output) if wrapped else _inlined_root(output)
    return ToolSpec(spec, spec.name, description or None, inputs, output, wrapped)


def input_schema(operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """One object schema for an operation's parameters and JSON body, with local ``$defs``."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in operation.get("parameters", []):
        schema = dict(parameter.get("schema", {}))
        if parameter.get("description") and "description" not in schema:
            schema["description"] = parameter["description"]
        properties[parameter["name"]] = schema
        if parameter.get("required"):
            required.append(parameter["name"])
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        schema = _resolved(body["schema"], components)
        properties.update(schema.get("properties", {}))
        required.extend(schema.get("required", []))
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        result["required"] = required
    return _with_defs(result, components)


def output_schema(operation: dict[str, Any], components: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of an operation's 200 answer; None when it is no JSON or says nothing."""
    answer = operation.get("responses", {}).get("200", {}).get("content", {})
    schema = answer.get("application/json", {}).get("schema")
    if not schema:
        return None
    return _with_defs(copy.deepcopy(schema), components)


def _resolved(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``schema`` itself, or the component its ``$ref`` names."""
    while "$ref" in schema and schema["$ref"].startswith(_COMPONENTS):
        schema = components[schema["$ref"][len(_COMPONENTS):]]
    return copy.deepcopy(schema)


def _is_object(schema: dict[str, Any]) -> bool:
    defs = schema.get("$defs", {})
    while "$ref" in schema:
        schema = defs.get(schema["$ref"].removeprefix("#/$defs/"), {})
    return schema.get("type") == "object"


def _inlined_root(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema whose root is a ``$ref``, with the referenced schema at its root."""
    defs = schema.get("$defs", {})
    root = schema
    while "$ref" in root:
        root = defs[root["$ref"].removeprefix("#/$defs/")]
    return {**root, "$defs": defs} if defs else dict(root)


def _wrap(schema: dict[str, Any]) -> dict[str, Any]:
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object", "properties": {"result": schema}, "required": ["result"],
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped


def _with_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its references to OpenAPI components made local: ``#/$defs/Name``, with
    every component it needs (also through other components) under ``$defs``."""
    needed: dict[str, Any] = {}

    def local(node: Any) -> Any:
        if isinstance(node, dict):
            out = {key: local(value) for key, value in node.items()}
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_COMPONENTS):
                name = ref[len(_COMPONENTS):]
                out["$ref"] = "#/$defs/" + name
                if name not in needed:
                    needed[name] = None  # taken before recursing: a model may refer to itself
                    needed[name] = local(components[name])
            return out
        if isinstance(node, list):
            return [local(item) for item in node]
        return node

    result = local(schema)
    if needed:
        result["$defs"] = {**result.get("$defs", {}), **needed}
    return result
