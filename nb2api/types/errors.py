"""A route's answer: its encoded result, or a 500 that says which function failed and how.

Any exception from notebook code other than an ``HTTPException`` becomes a 500 with the JSON body
``{"detail": "predict() raised KeyError: 'petal'", "error_id": "3f2a9c0d1b7e"}``; the same id is
logged with the traceback, so one log line explains one response. The traceback reaches the
response only when ``debug`` is on. ``nb2api serve`` and an exported app both answer through
:func:`respond`, so their 500s cannot differ.
"""

from __future__ import annotations

import logging
import math
import signal
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request

from . import display, images
from .encoding import Encoder, NotJSONError, ResultError, dumps

_MISMATCH = "returned a value that does not match its return annotation"
_MAX_DETAIL = 300


class ErrorBody(BaseModel):
    """What a route answers when the notebook code raised."""

    detail: str
    error_id: str


class CallFailed(Exception):
    """A call that failed without an ordinary exception; the 500's detail is
    ``"<route>() <what>: <text>"``. Picklable: it crosses back from a worker process."""

    def __init__(self, what: str, text: str = "") -> None:
        super().__init__(what, text)
        self.what = what
        self.text = text

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_exit(cls, exc: BaseException) -> CallFailed:
        text = str(exc).strip()
        failed = cls(f"raised {type(exc).__name__}", text)
        failed.__cause__ = exc
        return failed

    @classmethod
    def worker_lost(cls, exitcode: int | None) -> CallFailed:
        if exitcode is None:
            how = "ended its worker process"
        elif exitcode < 0:
            try:
                name = signal.Signals(-exitcode).name
            except ValueError:
                name = f"signal {-exitcode}"
            how = f"ended its worker process (killed by {name})"
        else:
            how = f"ended its worker process (exit code {exitcode})"
        return cls(how)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's 422, also when the input it quotes is no JSON that FastAPI writes.

    Python's json reads ``-Infinity``, ``NaN``, a lone surrogate ``"\\ud800"`` and deep nesting
    from a request body; FastAPI's own handler then fails to write its 422 (a bare 500). Here
    a non-finite number is quoted as the text that was sent, and the rest is written as a
    result would be (:func:`~.encoding.dumps`).
    """
    try:
        return await request_validation_exception_handler(request, exc)
    except (ValueError, TypeError, RecursionError):
        pass
    errors = []
    for error in exc.errors():
        safe = {}
        for key, value in error.items():
            if key == "input":
                safe[key] = _quoted_input(value)
            else:
                try:
                    safe[key] = jsonable_encoder(value)
                except (ValueError, TypeError, RecursionError):
                    safe[key] = str(value)
        errors.append(safe)
    return Response(dumps({"detail": errors}), status_code=422, media_type="application/json")


def exception_handlers() -> dict[Any, Any]:
    """What an app takes as ``FastAPI(exception_handlers=...)``: :func:`validation_error`."""
    return {RequestValidationError: validation_error}


def _quoted_input(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, bytes | bytearray):  # a body that is not JSON (nor UTF-8), as sent
        return bytes(value).decode("utf-8", "replace")
    return value  # dumps writes the rest: big integers, lone surrogates, deep nesting


def error_responses(media_type: str | None = None) -> dict[int | str, dict[str, Any]]:
    """The 500 of a route, for its OpenAPI ``responses``; ``media_type`` is the route's own
    when its results are not JSON (an image), since its errors still are."""
    return {500: _json_answer(ErrorBody, "The notebook code raised", media_type)}


def _json_answer(model: type[BaseModel], description: str,
                 media_type: str | None) -> dict[str, Any]:
    # FastAPI documents a response model under the route's media type: right for JSON routes;
    # a route that answers an image gets its JSON errors written out under application/json.
    if media_type is None or media_type == "application/json":
        return {"model": model, "description": description}
    schema = model.model_json_schema()
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class DetailBody(BaseModel):
    """What a request gets that nb2api refuses before any notebook code runs."""

    detail: str


def body_error_responses(media_type: str | None = None) -> dict[int | str, dict[str, Any]]:
    """The 400 of a route with a JSON body, for its OpenAPI ``responses``: FastAPI's answer to a
    body that Python's json cannot read at all (not UTF-8, nested too deeply); JSON that is
    merely malformed gets a 422. ``media_type`` as for :func:`error_responses`."""
    return {400: _json_answer(
        DetailBody, "The body could not be read (not UTF-8, or nested too deeply)", media_type
    )}


async def respond(
    route: str,
    outcome: Awaitable[Any],
    encode: Encoder | None = None,
    *,
    media_type: str = "application/json",
    debug: bool = False,
    logger: logging.Logger,
    failed: Callable[[Exception], None] | None = None,
    reported: Callable[[BaseException, str], None] | None = None,
) -> Response:
    """Await ``outcome`` (the function's result, or its bytes when ``encode`` is None, as
    :func:`~.encoding.encode_after` gives them) and answer with the encoded result.

    An ``HTTPException`` passes through; a result JSON cannot write is answered through the
    display protocol (or passed through when it is a ``Response``), only then; a result that
    does not fit the return annotation and any other exception become :func:`error_response`;
    ``failed`` hears of the latter, ``reported`` of every 500 with its error id.
    """
    try:
        result = await outcome
        content = result if encode is None else encode(result)
    except HTTPException:
        raise
    except ResultError as exc:
        return error_response(route, exc, debug=debug, logger=logger, what=_MISMATCH,
                              reported=reported)
    except NotJSONError as exc:  # only now: the JSON path pays nothing for these checks
        shown = display.response(exc.result, dumps) if exc.whole else None
        if shown is not None:
            return shown  # a Response passed through, or the result as Jupyter shows it
        if failed is not None:
            failed(exc)
        what, fix = _not_shown(exc)
        return error_response(route, ResultError(fix), debug=debug, logger=logger, what=what,
                              reported=reported)
    except Exception as exc:
        if failed is not None:
            failed(exc)
        what = exc.what if isinstance(exc, CallFailed) else None
        return error_response(route, exc, debug=debug, logger=logger, what=what,
                              reported=reported)
    if isinstance(content, Response):  # a table in the format the request asked for
        return content
    return Response(content, media_type=media_type)


def _not_shown(exc: NotJSONError) -> tuple[str, str]:
    """What a result neither JSON nor the display protocol covers is, and the fix."""
    kind = type(exc.value).__name__
    if images.is_figure(exc.value):
        return f"returned a {kind} inside a {type(exc.result).__name__}", str(exc)
    if exc.whole:
        what = f"returned a value of type {kind}, which is not JSON and has no display method"
        fix = (
            "return JSON data (a dict, list, pydantic model, dataclass, DataFrame) or a "
            f"fastapi.Response, or give {kind} a display method (_repr_json_, _repr_html_, ...)"
        )
        return what, fix
    container = type(exc.result).__name__
    what = f"returned a {container} holding a value of type {kind}, which is not JSON"
    return what, "turn it into JSON data (a dict, a list, a str) before returning it"


def error_response(
    route: str, exc: BaseException, *, debug: bool = False, logger: logging.Logger,
    what: str | None = None, reported: Callable[[BaseException, str], None] | None = None,
) -> JSONResponse:
    """The 500 for ``exc`` raised by ``route()``; logs the traceback under a new error id, and
    hands ``exc`` and the id to ``reported`` (tracing, error tracking)."""
    error_id = uuid.uuid4().hex[:12]
    message = f"{route}() {what}" if what else f"{route}() raised {type(exc).__name__}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{message}: {text}" if text else message
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 3] + "..."
    logger.error(
        "%s [error_id=%s]",
        detail,
        error_id,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"error_id": error_id, "route": route},
    )
    if reported is not None:
        reported(exc, error_id)
    body: dict[str, Any] = {"detail": detail, "error_id": error_id}
    if debug:
        body["traceback"] = traceback.format_exception(exc)
    return JSONResponse(body, status_code=500)
