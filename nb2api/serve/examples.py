"""The notebook's example calls as requests of its routes: bound, checked, answered, documented.

Each :class:`~nb2api.load.Example` (a literal call in a cell marked ``example``) is bound to its
function's parameters the way Python binds the call (positional, keyword, defaults), split as
the route reads its parameters (path, query, JSON body, headers), and validated by the route's
own request models: an example that does not fit is an :class:`ExampleError` at load.

Its answer is the direct call's result encoded as the route encodes it (the same
:func:`~nb2api.types.errors.respond`), computed at load within a time budget unless turned off
or the function says ``#| example: false``. :func:`document_examples` shows both in the OpenAPI
document as named examples (Swagger UI's "Try it out" drop-down): FastAPI's own
``openapi_examples`` form, in the request body, or in the query and path parameters.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from ..errors import ExampleError
from ..load import LoadedNotebook
from ..load.examples import Example
from ..routes import RouteSpec
from ..types import datatypes, images
from ..types.encoding import dumps, make_encoder
from ..types.errors import respond

logger = logging.getLogger("nb2api")

_PATH_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")


@dataclass(frozen=True)
class RouteExample:
    """One example as a request of its route, and what the direct call gives."""

    example: Example
    spec: RouteSpec
    path: str  # the URL path, path parameters filled in
    query: dict[str, Any] = field(default_factory=dict)  # as JSON values
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # the JSON body, None for a route without one
    path_values: dict[str, Any] = field(default_factory=dict)  # as JSON values

    @property
    def name(self) -> str:
        return self.example.name

    @property
    def route(self) -> str:
        return f"{self.spec.method} {self.spec.path}"

    @property
    def called(self) -> bool:
        """False for a function marked ``#| example: false``: never called at load."""
        return self.spec.function.options.get("example", "true").lower() != "false"

    @property
    def media_type(self) -> str:
        return images.media_type(self.spec.returns) or "application/json"

    async def answer(self) -> Response:
        """The direct call's result, encoded and answered as the route answers it."""
        spec, example = self.spec, self.example
        args, kwargs = copy.deepcopy((example.args, example.kwargs))  # a call may change them

        async def outcome() -> Any:
            if spec.is_async:
                return await spec.func(*args, **kwargs)
            return await asyncio.to_thread(spec.func, *args, **kwargs)

        try:
            return await respond(spec.name, outcome(), self.encode,
                                 media_type=self.media_type, logger=logger)
        except HTTPException as exc:  # as FastAPI answers one the function raises
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=exc.headers)

    @functools.cached_property
    def encode(self) -> Callable[[Any], bytes]:
        """The route's own encoder (:func:`~nb2api.types.encoding.make_encoder`)."""
        return make_encoder(self.spec.returns)


def route_examples(loaded: LoadedNotebook, specs: list[RouteSpec],
                   warn: Callable[[str], None] = logger.warning) -> list[RouteExample]:
    """The notebook's examples as requests of ``specs``, in notebook order. Raises
    :class:`ExampleError` for one that does not fit its route."""
    by_name = {spec.name: spec for spec in specs}
    found = []
    for example in loaded.examples:
        spec = by_name.get(example.function)
        if spec is None:
            continue
        request = _request(example, spec, str(loaded.notebook.path), warn)
        if request is not None:
            found.append(request)
    return found


def _request(example: Example, spec: RouteSpec, notebook: str,
             warn: Callable[[str], None]) -> RouteExample | None:
    def unfit(reason: str, parameter: str | None = None) -> ExampleError:
        return ExampleError(f"example does not fit {spec.method} {spec.path}: {reason}",
                            path=notebook, cell=example.cell.ref, line=example.line,
                            function=spec.name, parameter=parameter)

    if example.problem is not None:
        raise unfit(example.problem)
    try:
        bound = inspect.signature(spec.func).bind(*example.args, **example.kwargs)
    except TypeError as exc:
        raise unfit(str(exc)) from None
    sources = {p.name: p for p in spec.params}
    body: dict[str, Any] = {}
    query: dict[str, Any] = {}
    path_values: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for name, value in bound.arguments.items():
        param = sources[name]
        try:
            plain = json.loads(dumps(value))
        except (TypeError, ValueError) as exc:
            raise unfit(f"{name}: {exc}", name) from None
        if param.source == "body":
            body[name] = plain
        elif param.source == "query" and param.marker is None:
            if plain is not None:  # a query string has no null: left out, the default applies
                query[name] = plain
        elif param.source == "path":
            path_values[name] = plain
        elif param.source == "header" and isinstance(plain, str | int | float | bool):
            alias = getattr(param.marker, "alias", None)
            underscores = getattr(param.marker, "convert_underscores", True)
            headers[alias or (name.replace("_", "-") if underscores else name)] = _text(plain)
        else:
            warn(f"{notebook}, {example.cell.ref}, line {example.line}: {example.text} is not "
                 f"an example: parameter '{name}' comes from a {param.source}, which examples "
                 "do not fill")
            return None
    _validate(spec, body, query, path_values, unfit)
    path = _PATH_PARAM.sub(
        lambda m: urllib.parse.quote(_text(path_values.get(m.group(1), "")), safe=""), spec.path
    )
    return RouteExample(example, spec, path, query, headers,
                        body if spec.body_model is not None else None, path_values)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _validate(spec: RouteSpec, body: dict[str, Any], query: dict[str, Any],
              path_values: dict[str, Any], unfit: Callable[..., ExampleError]) -> None:
    """Check the request as the route checks it: its body and query models, its path types."""
    checks: list[tuple[Callable[[], Any], str]] = []
    if spec.body_model is not None:
        checks.append((lambda: spec.body_model.model_validate(body), ""))  # type: ignore[union-attr]
    if spec.query_model is not None:
        checks.append((lambda: spec.query_model.model_validate(query), ""))  # type: ignore[union-attr]
    for p in spec.params:
        if p.source == "path" and p.name in path_values:
            adapter = TypeAdapter(datatypes.request_type(p.annotation))
            checks.append((lambda a=adapter, v=path_values[p.name]: a.validate_python(v),
                           p.name))
    for check, prefix in checks:
        try:
            check()
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [prefix] if prefix else []
            loc += [str(part) for part in first["loc"]]
            where = ".".join(loc)
            raise unfit(f"{where + ': ' if where else ''}{first['msg']}",
                        loc[0] if loc else None) from None


@dataclass(frozen=True)
class Answered:
    """What the examples' direct calls gave at load: JSON values by example name."""

    values: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def answer_at_load(examples: list[RouteExample], budget: float,
                   warn: Callable[[str], None] = logger.warning) -> Answered:
    """Call each example's function (not those marked ``#| example: false``) for its
    documented answer, until ``budget`` seconds are spent; the others show their requests only.

    The calls run on a thread of their own with its own event loop, so that loading works as
    well from inside a running loop (JupyterLab, a test) as from the command line.
    """
    values: dict[str, Any] = {}
    started = time.perf_counter()
    for number, example in enumerate([e for e in examples if e.called]):
        left = budget - (time.perf_counter() - started)
        if left <= 0:
            warn(f"examples: the {budget:g} s budget for answering them at load was spent after "
                 f"{number}; the rest show their requests only (--examples-budget)")
            break
        outcome: list[Response | BaseException] = []
        thread = threading.Thread(
            target=lambda e=example, into=outcome: into.append(_run(e)),
            name="nb2api-example", daemon=True,  # a call past the budget is left to finish
        )
        thread.start()
        thread.join(left)
        if not outcome:
            warn(f"examples: {example.name} ({example.route}) takes longer than the {budget:g} s "
                 "budget left; it and the rest show their requests only (--examples-budget)")
            break
        response = outcome[0]
        if isinstance(response, BaseException) or response.status_code != 200:
            detail = response if isinstance(response, BaseException) else bytes(
                response.body).decode("utf-8", "replace")[:200]
            warn(f"{example.example.cell.ref}, line {example.example.line}: example "
                 f"{example.name} did not answer at load ({detail}); it shows its request only")
            continue
        if response.media_type == "application/json":
            values[example.name] = json.loads(response.body)
    return Answered(values, time.perf_counter() - started)


def _run(example: RouteExample) -> Response | BaseException:
    try:
        return asyncio.run(example.answer())
    except BaseException as exc:  # an HTTPException the function raised, or worse
        return exc


def document_examples(app: FastAPI, examples: list[RouteExample], answered: Answered) -> None:
    """Make ``app.openapi()`` show ``examples`` as named request examples of their operations
    and their answers as named examples of the 200 response."""
    if not examples:
        return
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_examples(generate(), examples, answered)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_examples(document: dict[str, Any], examples: list[RouteExample],
                  answered: Answered) -> dict[str, Any]:
    """``document`` with each example in its operation, as FastAPI writes ``openapi_examples``:
    ``examples`` of the JSON request body, or of each query and path parameter."""
    for example in examples:
        operation = document.get("paths", {}).get(example.spec.path, {}).get(
            example.spec.method.lower())
        if operation is None:
            continue
        summary = {"summary": example.example.text[:120]}
        if example.body is not None:
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None:
                content.setdefault("examples", {})[example.name] = {
                    **summary, "value": example.body}
        values = {("query", k): v for k, v in example.query.items()}
        values |= {("path", k): v for k, v in example.path_values.items()}
        values |= {("header", k): v for k, v in example.headers.items()}
        for parameter in operation.get("parameters", []):
            key = (parameter.get("in"), parameter.get("name"))
            if key in values:
                parameter.setdefault("examples", {})[example.name] = {
                    **summary, "value": values[key]}
        if example.name in answered.values:
            ok = operation.get("responses", {}).get("200", {}).get("content", {}).get(
                "application/json")
            if ok is not None:
                ok.setdefault("examples", {})[example.name] = {
                    **summary, "value": answered.values[example.name]}
    return document


def example_cases(examples: list[RouteExample], answered: Answered) -> list[dict[str, Any]]:
    """Each example as plain JSON data: its request and, when it was answered, the JSON answer.
    What an exported project's ``tests/test_examples.py`` replays."""
    return [
        {
            "name": example.name,
            "call": example.example.text,
            "method": example.spec.method,
            "path": example.path,
            "query": example.query,
            "headers": example.headers,
            "json": example.body,
            "media_type": example.media_type,
            "expected": answered.values.get(example.name),
            "answered": example.name in answered.values,
        }
        for example in examples
    ]
