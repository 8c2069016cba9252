"""Generator routes: a function that yields streams its items as they come.

``def f(...) -> Iterator[T]`` or ``async def f(...) -> AsyncIterator[T]``. With
``Accept: text/event-stream`` the answer is Server-Sent Events (``data: <json>`` per item, then
``event: end``); otherwise NDJSON (one JSON document per line). Each item is encoded as a result
would be (a DataFrame as an array of records). A plain generator is stepped on the worker pool,
one item per step, so the event loop never runs notebook code and a thousand streams share the
pool's workers; an async generator runs on the event loop.

When the client goes away the generator is closed at once (its ``finally`` runs; a plain
generator in the middle of a step is closed when that step returns). An exception mid-stream ends
the stream with an ``event: error`` (SSE) or a last ``{"error": {detail, error_id}}`` line
(NDJSON), logged with that id. Called as a job, the items are collected into a JSON array, and
each one counts as progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..routes import RouteSpec
from ..settings import Settings
from ..types.encoding import Encoder, ResultError, make_encoder
from ..types.errors import error_response
from .context import request_headers
from .faults import CallFailed
from .jobs.current import JobContext, current_job
from .pools import WorkerPool

logger = logging.getLogger("nb2api")

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
_DONE = object()


class EventStream(StreamingResponse):
    """A streaming response that stops, and closes its source, as soon as the client leaves.

    Starlette's own stops at the next item it fails to send; this one also listens for the
    disconnect, so a source that is between items is closed at once.
    """

    def __init__(self, chunks: AsyncIterator[bytes], media_type: str) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(chunks, media_type=media_type, headers=headers)
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        streaming = asyncio.ensure_future(self.stream_response(send))
        watching = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            await asyncio.gather(streaming, watching, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.chunks.aclose()  # type: ignore[attr-defined]
        if streaming.done() and not streaming.cancelled():
            error = streaming.exception()
            if error is not None and not isinstance(error, OSError):
                raise error


def wants_events() -> bool:
    return SSE in request_headers().get("accept", "")


class Streamer:
    """How one generator route streams: as a response, or collected for a job."""

    def __init__(self, spec: RouteSpec, pool: WorkerPool, settings: Settings) -> None:
        self.spec = spec
        self.func = spec.func
        self.is_async = not _is_sync_generator(spec.func)
        self.pool = pool
        self.settings = settings
        self.encode: Encoder = make_encoder(spec.item)

    def respond(self, args: tuple, kwargs: dict) -> Response:
        events = wants_events()
        return EventStream(self._framed(args, kwargs, events), SSE if events else NDJSON)

    async def collect(self, args: tuple, kwargs: dict) -> Response:
        """The items as one JSON array (a job's result); an error as the 500 it would be."""
        job = current_job.get()
        parts: list[bytes] = []
        items = self.items(args, kwargs)
        try:
            async for item in items:
                parts.append(item)
                if isinstance(job, JobContext):
                    if job.cancelled:
                        break
                    job.items += 1
                    job.progress(None, f"{job.items} items")
        except Exception as exc:  # noqa: BLE001 - answered as the synchronous call's 500
            return self._error(exc)
        finally:
            await items.aclose()
        return Response(b"[" + b",".join(parts) + b"]", media_type="application/json")

    async def items(self, args: tuple, kwargs: dict) -> AsyncIterator[bytes]:
        """Each item, encoded."""
        if self.is_async:
            source = self.func(*args, **kwargs)
            try:
                async for item in source:
                    yield self.encode(item)
            except (SystemExit, KeyboardInterrupt) as exc:  # never up to the event loop
                raise CallFailed.from_exit(exc) from exc
            finally:
                await source.aclose()
            return
        generator = self.func(*args, **kwargs)  # runs no notebook code yet
        step: asyncio.Future[Any] | None = None
        try:
            while True:
                step = self.pool.submit(_next_encoded, generator, self.encode)
                item = await asyncio.shield(step)
                step = None
                if item is _DONE:
                    return
                yield item
        finally:
            self._close(generator, step)

    def _close(self, generator: Iterator[Any], step: asyncio.Future[Any] | None) -> None:
        """Close ``generator`` on a worker (its ``finally`` is notebook code), after the step
        it may be running returns: a running generator cannot be closed."""
        if step is None or step.done():
            self.pool.submit(_close, generator)
        else:
            step.add_done_callback(lambda _: self.pool.submit(_close, generator))

    async def _framed(self, args: tuple, kwargs: dict, events: bool) -> AsyncIterator[bytes]:
        items = self.items(args, kwargs)
        count = 0
        try:
            async for item in items:
                count += 1
                yield b"data: " + item + b"\n\n" if events else item + b"\n"
        except Exception as exc:  # noqa: BLE001 - ends the stream with the error, logged
            error = self._error(exc).body
            yield (b"event: error\ndata: " + error + b"\n\n" if events
                   else b'{"error":' + error + b"}\n")
            return
        finally:
            await items.aclose()
        if events:
            yield b"event: end\ndata: " + orjson.dumps({"items": count}) + b"\n\n"

    def _error(self, exc: Exception) -> Response:
        what = (exc.what if isinstance(exc, CallFailed)
                else "yielded an item that does not match its annotation"
                if isinstance(exc, ResultError) else None)
        return error_response(self.spec.name, exc, debug=self.settings.debug, logger=logger,
                              what=what)


def _is_sync_generator(func: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(func)


def _next_encoded(generator: Iterator[Any], encode: Encoder) -> Any:
    """The next item, encoded (on a worker: the notebook's code and the encoding)."""
    try:
        item = next(generator)
    except StopIteration:
        return _DONE
    return encode(item)


def _close(generator: Iterator[Any]) -> None:
    try:
        generator.close()
    except Exception:  # noqa: BLE001 - a finally that raised: the stream is over anyway
        logger.exception("closing a stream's generator raised")


def openapi_responses(spec: RouteSpec) -> dict[int | str, dict[str, Any]]:
    """A generator route's 200: NDJSON and SSE, each with the item's schema."""
    model = spec.response_model
    schema = ({"$ref": f"#/components/schemas/{model.__name__}"} if model is not None else {})
    return {200: {
        "description": "The items as they are produced: NDJSON, or Server-Sent Events with "
                       "'Accept: text/event-stream' (then a final 'event: end')",
        "content": {NDJSON: {"schema": schema}, SSE: {"schema": schema}},
    }}
