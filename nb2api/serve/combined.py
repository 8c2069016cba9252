"""One OpenAPI document for several notebooks: the root ``/openapi.json`` and ``/docs``.

Each notebook's own document (its ``/<name>/openapi.json``) goes in under its prefix, its
operations tagged with its name. A model name that two notebooks define differently gets the
notebook's name in front (``pricing_Sale``, ``churn_Sale``) and every ``$ref`` to it follows; a
name only one notebook uses, or that several define identically (FastAPI's
``HTTPValidationError``), stays short. Operation ids are treated the same way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

_SCHEMAS = "#/components/schemas/"


def combine(documents: dict[str, dict[str, Any]], info: dict[str, Any],
            tags: dict[str, str]) -> dict[str, Any]:
    """The document serving each of ``documents`` (by notebook name) under ``/<name>``.

    ``info`` is the combined document's ``info``; ``tags`` the description of each notebook's
    tag. The documents are not changed."""
    renamed = _renamed_schemas(documents)
    operation_ids = _colliding_operation_ids(documents)
    combined: dict[str, Any] = {
        "openapi": next(iter(documents.values()), {}).get("openapi", "3.1.0"),
        "info": info,
        "paths": {},
        "tags": [{"name": name, "description": tags.get(name, "")} for name in documents],
    }
    schemas: dict[str, Any] = {}
    security: dict[str, Any] = {}
    for name, original in documents.items():
        document = copy.deepcopy(original)
        names = renamed.get(name, {})
        if names:
            _rewrite_refs(document, names)
        for path, item in document.get("paths", {}).items():
            for operation in _operations(item):
                operation["tags"] = [name, *[t for t in operation.get("tags", ()) if t != name]]
                op_id = operation.get("operationId")
                if op_id in operation_ids:
                    operation["operationId"] = f"{name}_{op_id}"
            combined["paths"][f"/{name}{path}"] = item
        components = document.get("components", {})
        for schema, definition in components.get("schemas", {}).items():
            schemas[names.get(schema, schema)] = definition
        security.update(components.get("securitySchemes", {}))
    if schemas or security:
        combined["components"] = {}
        if schemas:
            combined["components"]["schemas"] = dict(sorted(schemas.items()))
        if security:
            combined["components"]["securitySchemes"] = security
    return combined


def _operations(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
        if isinstance(item.get(method), dict):
            yield item[method]


def _schemas(document: dict[str, Any]) -> dict[str, Any]:
    return document.get("components", {}).get("schemas", {})


def _renamed_schemas(documents: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """notebook -> {schema name: its name in the combined document}, for colliding names.

    Two definitions collide when their text differs once the names already renamed are
    renamed in them: a model identical in two notebooks except that it refers to a colliding
    one collides too. Repeated until nothing new collides."""
    owners: dict[str, list[str]] = {}
    for notebook, document in documents.items():
        for schema in _schemas(document):
            owners.setdefault(schema, []).append(notebook)
    shared = {schema: notebooks for schema, notebooks in owners.items() if len(notebooks) > 1}
    taken = set(owners)
    colliding: set[str] = set()
    while True:
        renames = {notebook: {schema: _prefixed(notebook, schema, taken) for schema in colliding
                              if notebook in shared[schema]}
                   for notebook in documents}
        found = set(colliding)
        for schema, notebooks in shared.items():
            if schema in found:
                continue
            texts = {_text(_schemas(documents[n])[schema], renames[n]) for n in notebooks}
            if len(texts) > 1:
                found.add(schema)
        if found == colliding:
            return {notebook: names for notebook, names in renames.items() if names}
        colliding = found


def _prefixed(notebook: str, schema: str, taken: set[str]) -> str:
    name = f"{notebook}_{schema}"
    while name in taken:  # a notebook that already has a model of that name
        name = f"{notebook}_{name}"
    return name


def _text(definition: Any, renames: dict[str, str]) -> str:
    if renames:
        definition = copy.deepcopy(definition)
        _rewrite_refs(definition, renames)
    return json.dumps(definition, sort_keys=True)


def _rewrite_refs(node: Any, renames: dict[str, str]) -> None:
    """Point every ``$ref`` to a renamed schema at its new name, in place."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS):
            target = ref[len(_SCHEMAS):]
            if target in renames:
                node["$ref"] = _SCHEMAS + renames[target]
        for value in node.values():
            _rewrite_refs(value, renames)
    elif isinstance(node, list):
        for value in node:
            _rewrite_refs(value, renames)


def _colliding_operation_ids(documents: dict[str, dict[str, Any]]) -> set[str]:
    seen: dict[str, int] = {}
    for document in documents.values():
        for item in document.get("paths", {}).values():
            for operation in _operations(item):
                op_id = operation.get("operationId")
                if op_id:
                    seen[op_id] = seen.get(op_id, 0) + 1
    return {op_id for op_id, count in seen.items() if count > 1}
