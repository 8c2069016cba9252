"""One tool call: the route's REST code path after parsing, and its answer as an MCP result.

The arguments are validated by the route's own request models (its body model, its query model,
the types of its path and header parameters), then the route's endpoint, the very function
FastAPI calls, is awaited: the same worker pool, concurrency limit, queue bound, timeout and
encoding as a REST request. Its response becomes the tool's result: JSON as structured content
and the same JSON as text; an image as image content; a 422's field detail, a 500's ``detail`` and
``error_id`` (logged as for REST), a 503 or 504 as an error result. The call counts in the
request metrics under the route's path.
"""

from __future__ import annotations

import base64
import inspect
import logging
import time
import typing
from collections.abc import Callable
from typing import Any

import mcp.types as types
import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.exceptions import HTTPException

from ..serve.context import current_scope
from ..serve.runtime import Runtime
from ..types import datatypes
from ..types.encoding import dumps
from ..types.errors import error_response
from .tools import ToolSpec

logger = logging.getLogger("nb2api")

# What a tool's result is shown as when the function returns something only Jupyter's display
# protocol shows: data first, then an image, then text an agent reads best.
ACCEPT = (b"application/json, image/png, image/jpeg, image/svg+xml;q=0.9, text/markdown;q=0.8, "
          b"text/plain;q=0.7, text/html;q=0.5, */*;q=0.1")
_AS_FASTAPI: dict[str, Any] = {"from_attributes": True}  # as FastAPI validates a request's parts
_PARAMS_CONFIG = ConfigDict(protected_namespaces=(), arbitrary_types_allowed=True,
                            validate_by_name=True, validate_by_alias=True)


class ToolCall:
    """``await ToolCall(tool, endpoint, runtime)(arguments)``: one call of ``tool``."""

    def __init__(self, tool: ToolSpec, endpoint: Callable[..., Any], runtime: Runtime) -> None:
        spec = tool.spec
        self.tool = tool
        self.endpoint = endpoint
        self.metrics = runtime.metrics
        self.debug = runtime.settings.debug
        self.tracing = runtime.tracing  # a span per call, when on
        self.reported = runtime.reporter(spec)
        self.body_names = [p.name for p in spec.params if p.source == "body"]
        self.query_names = [p.name for p in spec.params if p.source == "query" and p.marker is None]
        self.body_model = spec.body_model
        self.query_model = spec.query_model
        # The endpoint's keywords for the body and the query models, by their annotations.
        self.body_keyword = self.query_keyword = None
        for name, parameter in inspect.signature(endpoint).parameters.items():
            base = typing.get_args(parameter.annotation)[:1]
            if base and base[0] is spec.body_model and spec.body_model is not None:
                self.body_keyword = name
            elif base and base[0] is spec.query_model and spec.query_model is not None:
                self.query_keyword = name
        # Path parameters and the ones marked Header()/Cookie()/Query()/Path(): their types and
        # markers, as FastAPI validates each of them.
        singles = [p for p in spec.params
                   if p.source not in ("body", "form", "file")
                   and not (p.source == "query" and p.marker is None)]
        self.single_model: type[BaseModel] | None = None
        self.single_sources = {p.name: p.source for p in singles}
        # The names /docs shows a header or cookie under (an alias, "user-agent"), and its own.
        self.single_names = {p.name: _spellings(p) for p in singles}
        if singles:
            fields: dict[str, Any] = {}
            for p in singles:
                info = p.marker if p.marker is not None else Field(description=p.description)
                default = ... if p.required else p.default
                fields[p.name] = (typing.Annotated[datatypes.request_type(p.annotation), info],
                                  default)
            self.single_model = create_model(  # type: ignore[call-overload]
                f"{spec.name}_parameters", __config__=_PARAMS_CONFIG, **fields
            )

    async def __call__(self, arguments: dict[str, Any] | None) -> types.CallToolResult:
        spec = self.tool.spec
        metrics = self.metrics
        started = time.perf_counter()
        if metrics is not None:
            metrics.request_started()
        status = 500
        scope_token = current_scope.set(None)  # the /mcp request's headers are not the call's
        span = self.tracing.tool_call(self.tool.name, spec.path) if self.tracing else None
        try:
            try:
                keywords = self._parse(arguments or {})
            except _Invalid as invalid:
                status = 422
                return _error({"detail": invalid.errors})
            try:
                response = await self.endpoint(**keywords)
            except HTTPException as exc:
                status = exc.status_code
                return _error({"detail": exc.detail, "status": exc.status_code})
            except Exception as exc:  # the endpoint answers failures itself; this is a bug
                response = error_response(spec.name, exc, debug=self.debug, logger=logger,
                                          reported=self.reported)
            status, media_type, body = await _answer(response)
            return self._result(status, media_type, body)
        finally:
            if span is not None:
                span.end(status)
            current_scope.reset(scope_token)
            if metrics is not None:
                metrics.request_finished(spec.path, spec.method, status,
                                         time.perf_counter() - started)

    def _parse(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The endpoint's keywords, validated as FastAPI validates a request's parts; raises
        :class:`_Invalid` with FastAPI's field-level detail."""
        errors: list[dict[str, Any]] = []
        keywords: dict[str, Any] = {}
        if self.single_model is not None:
            given = {}
            for name, spellings in self.single_names.items():
                for spelling in spellings:
                    if spelling in arguments:
                        given[name] = arguments[spelling]
                        break
            try:
                keywords.update(dict(self.single_model.model_validate(given, **_AS_FASTAPI)))
            except ValidationError as exc:
                errors += [_located(e, (self.single_sources.get(str(e["loc"][0]), "query"),))
                           for e in exc.errors(include_url=False)]
        for keyword, model, names, where in (
            (self.query_keyword, self.query_model, self.query_names, "query"),
            (self.body_keyword, self.body_model, self.body_names, "body"),
        ):
            if model is None or keyword is None:
                continue
            given = {n: arguments[n] for n in names if n in arguments}
            try:
                keywords[keyword] = model.model_validate(given, **_AS_FASTAPI)
            except ValidationError as exc:
                errors += [_located(e, (where,)) for e in exc.errors(include_url=False)]
        if errors:
            raise _Invalid(errors)
        return keywords

    def _result(self, status: int, media_type: str, body: bytes) -> types.CallToolResult:
        if status >= 400:
            return types.CallToolResult(
                content=[types.TextContent(text=body.decode("utf-8", "replace"))], is_error=True
            )
        if media_type == "application/json" or media_type.endswith("+json"):
            value = orjson.loads(body) if body else None
            if self.tool.wrapped or not isinstance(value, dict):
                value = {"result": value}
            return types.CallToolResult(
                content=[types.TextContent(text=body.decode("utf-8"))], structured_content=value
            )
        if media_type.startswith("image/"):
            data = base64.b64encode(body).decode("ascii")
            return types.CallToolResult(content=[types.ImageContent(data=data,
                                                                    mime_type=media_type)])
        if media_type.startswith("text/"):
            return types.CallToolResult(
                content=[types.TextContent(text=body.decode("utf-8", "replace"))]
            )
        blob = types.BlobResourceContents(
            uri=f"nb2api://{self.tool.name}/result", mime_type=media_type,
            blob=base64.b64encode(body).decode("ascii"),
        )
        return types.CallToolResult(content=[types.EmbeddedResource(resource=blob)])


def _spellings(p: Any) -> list[str]:
    names = [p.name]
    alias = getattr(p.marker, "alias", None)
    if alias:
        names.append(alias)
    if p.source == "header" and getattr(p.marker, "convert_underscores", False):
        names.append(p.name.replace("_", "-"))
    return names


class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _located(error: Any, prefix: tuple[str, ...]) -> dict[str, Any]:
    """A pydantic error as FastAPI's 422 writes it: ``loc`` starting with the request part."""
    found = {**error, "loc": [*prefix, *error["loc"]]}
    try:
        return jsonable_encoder(found)
    except (ValueError, TypeError, RecursionError):
        return {key: (value if key in ("type", "loc", "msg") else str(value))
                for key, value in found.items()}


def _error(body: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=dumps(body).decode("utf-8"))], is_error=True
    )


async def _answer(response: Response) -> tuple[int, str, bytes]:
    """The status, media type and body of an endpoint's response. A plain response has its body
    ready; one that decides when it is sent (a display result, a stream) is run as ASGI."""
    if type(response).__call__ is Response.__call__:
        return response.status_code, _media_type(response), bytes(response.body)
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", ()))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
             "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/",
             "raw_path": b"/", "query_string": b"", "root_path": "",
             "headers": [(b"accept", ACCEPT)], "extensions": {}}
    await response(scope, receive, send)
    media_type = next((v.decode("latin-1") for k, v in headers if k == b"content-type"), "")
    return status, media_type.split(";")[0].strip(), b"".join(chunks)


def _media_type(response: Response) -> str:
    value = response.headers.get("content-type") or response.media_type or ""
    return value.split(";")[0].strip()
