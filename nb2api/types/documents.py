"""The OpenAPI document, as an app answers: float fields of returned models may be null.

Results are written with NaN and infinities as ``null`` (JSON has neither). A float result, also
inside a list, dict or union, is documented as "number or null" where its annotation is read
(:func:`.datatypes.nullable_floats`); a float field of a model the notebook returns is not, since
the model's schema is pydantic's own. :func:`answered_floats` finishes the job on the generated
document: each model reached from a successful response gets its number fields as
``["number", "null"]``. A model also taken in a request keeps its schema there, and answers get
a copy named ``<Model>-Output`` (FastAPI's own name for a model that reads and writes
differently). Serve and export both install it with :func:`document_answered_floats`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

_REF = "#/components/schemas/"


def document_answered_floats(app: Any) -> None:
    """Make ``app.openapi()`` give :func:`answered_floats` of FastAPI's document (cached)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = answered_floats(generate())
        return app.openapi_schema

    app.openapi = openapi


def answered_floats(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the number fields of answered models documented as number or null."""
    schemas = document.get("components", {}).get("schemas", {})
    if not schemas:
        return document
    answers, requests = [], []
    for operation in _operations(document):
        for status, response in operation.get("responses", {}).items():
            if str(status).startswith("2"):
                answers += [c.get("schema", {}) for c in response.get("content", {}).values()]
        body = operation.get("requestBody", {})
        requests += [c.get("schema", {}) for c in body.get("content", {}).values()]
        requests += [p.get("schema", {}) for p in operation.get("parameters", [])]
    answered = _reached(answers, schemas)
    shared = answered & _reached(requests, schemas)
    renamed = {name: _output_name(name, schemas) for name in shared}
    for name in answered:
        schema = schemas[name]
        if name in shared:
            schema = schemas[renamed[name]] = copy.deepcopy(schema)
        _rename_refs(schema, renamed)
        _nullable_numbers(schema)
    for schema in answers:
        _rename_refs(schema, renamed)
    return document


def _operations(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                yield operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            yield ref[len(_REF):]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _reached(roots: list[Any], schemas: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    pending = [name for root in roots for name in _refs(root)]
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending.extend(_refs(schemas[name]))
    return seen


def _output_name(name: str, schemas: dict[str, Any]) -> str:
    candidate, n = f"{name}-Output", 2
    while candidate in schemas:
        candidate, n = f"{name}-Output{n}", n + 1
    return candidate


def _rename_refs(node: Any, renamed: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF) and ref[len(_REF):] in renamed:
            node["$ref"] = _REF + renamed[ref[len(_REF):]]
        for value in node.values():
            _rename_refs(value, renamed)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, renamed)


def _nullable_numbers(node: Any) -> None:
    """Every ``"type": "number"`` inside ``node`` (not through ``$ref``) becomes number or null."""
    if isinstance(node, dict):
        if node.get("type") == "number":
            node["type"] = ["number", "null"]
        for key, value in node.items():
            if key in ("anyOf", "oneOf") and {"type": "null"} in value:
                # Already "number or null" (a float result, an Optional field): its number stays.
                value = [member for member in value if member.get("type") != "number"]
            _nullable_numbers(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_numbers(value)
