"""``#| batch``: concurrent requests to one route answered by one call of its function.

A batched function takes a ``list[T]``, a ``pd.DataFrame`` (rows) or an ``np.ndarray`` (first
axis) and returns one item per input item. Each request is validated on its own, then waits in
its route's group of requests whose plain parameters are equal (and whose tables have the same
columns, arrays the same trailing shape and dtype). A group starts a batch, in arrival order, once
it holds ``max_size`` items or its first request has waited ``max_wait``, and one of the route's
slots is free (its ``max-concurrency``, by default the pool's size): while every slot is busy the
group keeps growing up to ``max_size``, so batches grow with the load. The call runs on the
route's pool (threads or processes), where the items are merged, the function called and its
result split back by each request's item count (and, on threads, each part encoded).

The limits hold per request: its timeout covers its wait and the call (504), a route whose groups
already hold ``max_size + max_queue`` requests answers 503, and a request whose client goes away
before its batch starts drops out of it. When the function raises, every request of the batch gets
the same 500, logged once with the batch's size.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import Receive

from ..routes import BatchSpec, RouteSpec
from ..settings import Settings
from ..types import images
from ..types._lazy import LazyModule
from ..types.encoding import Encoder, make_encoder
from ..types.errors import CallFailed, error_response, respond
from .context import request_receive
from .limits import Busy, TimedOut, route_limits
from .logs import request_id
from .metrics import Metrics
from .pools import WorkerPool

if TYPE_CHECKING:
    from .tracing import BatchSpan, BatchSpans, Tracing

np = LazyModule("numpy")
pd = LazyModule("pandas")
logger = logging.getLogger("nb2api")

BatchCall = Callable[[list[dict[str, Any]], list[int | None], dict[str, Any]], list[Any]]
_GONE = 499  # nginx's "client closed request": what the log says of a request that left


def batch_calls(specs: list[RouteSpec]) -> dict[str, BatchCall]:
    """The function each ``#| batch`` route's pool calls, by route name: made before a process
    pool forks, which must know it."""
    return {spec.name: batch_call(spec) for spec in specs if spec.batch is not None}


def batchers(specs: list[RouteSpec], calls: dict[str, BatchCall], settings: Settings,
             pools: dict[str, WorkerPool], metrics: Metrics | None) -> dict[str, Batcher]:
    return {spec.name: Batcher(spec, calls[spec.name], settings, pools, metrics)
            for spec in specs if spec.batch is not None}


def batch_call(spec: RouteSpec) -> BatchCall:
    """``call(parts, counts, shared)``: the requests' merged parameters (``parts``, one dict per
    request, ``counts`` items each) and the plain ones they share, in one call of the function;
    its result split back into one part per request."""
    assert spec.batch is not None
    func, name = spec.func, spec.name
    kinds = dict(spec.batch.batched)
    positional = [p.name for p in spec.params if p.positional_only]

    def call(parts: list[dict[str, Any]], counts: list[int | None],
             shared: dict[str, Any]) -> list[Any]:
        if len(parts) == 1:
            arguments = {**shared, **parts[0]}
        else:
            arguments = {**shared, **{key: _merge(kind, [part[key] for part in parts])
                                      for key, kind in kinds.items()}}
        args = tuple(arguments.pop(key) for key in positional) if positional else ()
        return split(func(*args, **arguments), counts)

    call.__name__ = call.__qualname__ = name
    return call


def _merge(kind: str, values: list[Any]) -> Any:
    if kind == "list":
        return list(itertools.chain.from_iterable(values))
    if kind == "frame":
        return pd.concat(values)  # each request's index kept: a result indexed alike splits back
    return np.concatenate(values)


def split(result: Any, counts: list[int | None]) -> list[Any]:
    """``result`` cut into one part per request, ``counts[i]`` items each (``None``: a request
    that ran alone and is not cut); CallFailed when its length is not the items' total."""
    if counts == [None]:
        return [result]
    total = sum(c or 0 for c in counts)
    try:
        length = len(result)
    except TypeError:
        length = None
    whole = isinstance(result, (str, bytes, dict))  # sized, but not one item per input item
    if length != total or whole:
        got = (f"{length} results" if length is not None and not whole
               else f"a value of type {type(result).__name__}")
        raise CallFailed(
            f"returned {got} for {total} input items",
            "a '#| batch' function returns one result per input item, in order (a list, "
            "DataFrame, Series or array of the same length)",
        )
    if len(counts) == 1:
        return [result]
    pandas = _is_pandas(result)
    fresh_index = pandas and _range_from_zero(result.index)
    parts = []
    start = 0
    for count in counts:
        end = start + (count or 0)
        if pandas:
            part = result.iloc[start:end]
            # A result built anew (0..n-1), or indexed as the requests' own default indexes
            # were, answers each request as it would have alone: with a default index.
            if fresh_index or part.index.equals(pd.RangeIndex(len(part))):
                part = part.reset_index(drop=True)
            parts.append(part)
        else:
            parts.append(result[start:end])
        start = end
    return parts


def _is_pandas(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("pandas") and hasattr(value, "iloc")


def _range_from_zero(index: Any) -> bool:
    return (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1)


def _count(kind: str, value: Any) -> int | None:
    """Items in one request's merged parameter; None for what has no first axis (0-d)."""
    if kind == "array":
        return value.shape[0] if getattr(value, "ndim", 0) else None
    return len(value)


def _shape(kind: str, value: Any) -> Hashable:
    """What must be equal for two requests' values to merge: columns, trailing shape, dtype."""
    if kind == "frame":
        return tuple(value.columns), tuple(value.dtypes)
    if kind == "array":
        return value.shape[1:], value.dtype
    return None


@dataclass(eq=False)
class _Group:
    shared: dict[str, Any]
    requests: deque[_Request] = field(default_factory=deque)
    items: int = 0  # of the requests still waiting
    timer: asyncio.TimerHandle | None = None
    dispatching: bool = False  # a task waits for a slot to start this group's next batch


@dataclass(eq=False)
class _Request:
    values: dict[str, Any]  # the merged parameters' values
    count: int | None
    arrived: float
    future: asyncio.Future
    failed: Callable[[Exception], None] | None
    group: _Group | None = None  # while it waits in one
    watch: asyncio.Future | None = None  # the server's next message: the client going away
    started: bool = False
    gone: bool = False  # left before its batch started: timed out, or its client went away
    traced: Any = None  # its traced request, when tracing is on and samples it
    request_id: str | None = None


class _Failure:
    """The 500 that every request of a failed batch answers with: one body, one error id."""

    def __init__(self, response: Response) -> None:
        self.body = response.body

    def response(self) -> Response:
        return Response(self.body, status_code=500, media_type="application/json")


class _Timed:
    """A part encoded on the worker, with when (for the request's ``encode`` span)."""

    __slots__ = ("body", "start", "end")

    def __init__(self, body: Any, start: int, end: int) -> None:
        self.body, self.start, self.end = body, start, end


class _Unencodable:
    """A part the worker could not encode: its request's own 500, made by :func:`respond`."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class _BatchLog(logging.LoggerAdapter):
    """The batch's one error line says how many requests and items it held."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        requests, items = self.extra["batch_requests"], self.extra["batch_size"]
        kwargs["extra"] = {**kwargs.get("extra", {}), **self.extra}
        return f"{msg} (a batch of {requests} requests, {items} items)", kwargs


class Batcher:
    """The requests of one ``#| batch`` route, grouped and merged into calls of its function."""

    def __init__(self, spec: RouteSpec, call: BatchCall, settings: Settings,
                 pools: dict[str, WorkerPool], metrics: Metrics | None) -> None:
        assert spec.batch is not None
        self.name = spec.name
        self.batch: BatchSpec = spec.batch
        self.pool, self.limiter, self.timeout = route_limits(spec, settings, pools, metrics)
        assert self.pool is not None  # routes refuse '#| batch' on 'async def'
        encoder = make_encoder(spec.returns)
        self.path = spec.path
        self.batch_call, self.encoder = call, encoder
        if self.pool.kind == "thread":
            # Parts are encoded on the worker too: a big table never holds the event loop.
            self.call: Callable[..., Any] = _encoding(call, encoder)
            self.encode: Encoder | None = None
        else:
            self.call, self.encode = call, encoder
        self.spans: BatchSpans | None = None  # with tracing on (see observe)
        self.sentry = False
        # The queue bound counts requests (here), not the batches waiting for a slot.
        self.max_waiting = self.batch.max_size + settings.max_queue
        self.limiter.max_queue = sys.maxsize
        self.debug = settings.debug
        self.media_type = images.media_type(spec.returns) or "application/json"
        self.sources = {p.name: p.source for p in spec.params}
        self.groups: dict[Hashable, _Group] = {}
        self.waiting = 0  # requests not yet in a started batch
        self.on_queue = self.limiter.on_queue  # requests, not batches, are the route's queue
        self.limiter.on_queue = None
        self.started = metrics.batch_hook(spec.path) if metrics is not None else None
        self._tasks: set[asyncio.Task] = set()  # held here: the loop keeps only weak references

    def observe(self, tracing: Tracing | None, sentry: bool) -> None:
        """Trace the route's requests and batches (when ``tracing``); send a failed batch to
        Sentry (when ``sentry``), once, with its error id and size."""
        self.sentry = sentry
        if tracing is None:
            return
        self.spans = tracing.batches(self.name, self.path)
        if self.encode is not None:
            self.encode = tracing.encoder(self.encode)  # encoded in the request's task
        else:
            self.call = _encoding(self.batch_call, self.encoder, timed=True)

    async def answer(self, arguments: dict[str, Any],
                     failed: Callable[[Exception], None] | None = None,
                     reported: Callable[[BaseException, str], None] | None = None) -> Response:
        """The answer to one validated request (``arguments`` by parameter name); ``failed``
        and ``reported`` hear of its 500s as the endpoint's do."""
        values = {name: arguments.pop(name) for name, _ in self.batch.batched}
        count = self._count(values)
        loop = asyncio.get_running_loop()
        request = _Request(values, count, time.perf_counter(), loop.create_future(), failed)
        if self.waiting >= self.max_waiting:
            raise Busy(self.name, self.limiter.retry_after())
        if self.spans is not None:
            request.traced = self.spans.waiting()
        if self.sentry:
            request.request_id = request_id.get()
        key = self._key(arguments, values)
        if key is None or count is None or count == 0 or count >= self.batch.max_size:
            self._queued(1)
            self._spawn(self._alone(request, arguments))
        else:
            self._join(key, arguments, request)
        outcome = await self._outcome(request)
        if isinstance(outcome, _Failure):
            return outcome.response()
        if isinstance(outcome, Response):
            return outcome
        if isinstance(outcome, _Timed):
            if request.traced is not None and self.spans is not None:
                self.spans.encoded(request.traced, outcome.start, outcome.end)
            outcome = outcome.body
        return await respond(self.name, _ready(outcome), self.encode, media_type=self.media_type,
                             debug=self.debug, logger=logger, failed=failed, reported=reported)

    # -- a request's wait ----------------------------------------------------------------------

    async def _outcome(self, request: _Request) -> Any:
        """The request's part of its batch's result; 504 past its timeout; a 499 for nobody
        when its client left before the batch started."""
        receive = request_receive()
        if receive is not None:
            self._watch(request, receive)
        try:
            if self.timeout is None:
                return await request.future
            left = request.arrived + self.timeout - time.perf_counter()
            return await asyncio.wait_for(request.future, max(0.0, left))
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            self._leave(request)
            raise TimedOut(self.name, self.timeout or 0.0) from None
        except asyncio.CancelledError:
            self._leave(request)
            raise
        finally:
            if request.watch is not None:
                request.watch.cancel()
            if request.traced is not None and self.spans is not None and not request.started:
                self.spans.left(request.traced, time.time_ns())

    def _watch(self, request: _Request, receive: Receive) -> None:
        """Hear the client go away while the request waits: its body has been read, so the
        server's next message is the disconnect."""
        watch = request.watch = asyncio.ensure_future(receive())

        def heard(done: asyncio.Future) -> None:
            if done.cancelled() or done.exception() is not None or request.future.done():
                return
            if done.result().get("type") != "http.disconnect":
                self._watch(request, receive)  # not the disconnect: listen on
            elif not request.started:
                self._leave(request, Response(status_code=_GONE))

        watch.add_done_callback(heard)

    def _leave(self, request: _Request, answer: Response | None = None) -> None:
        """The request no longer waits (answered with ``answer`` if given): out of its group
        if its batch has not started."""
        if answer is None:
            request.future.cancel()
        elif not request.future.done():
            request.future.set_result(answer)
        if not request.started and not request.gone:
            request.gone = True
            if request.group is not None:
                request.group.items -= request.count or 0
            self._queued(-1)

    # -- groups and batches --------------------------------------------------------------------

    def _join(self, key: Hashable, shared: dict[str, Any], request: _Request) -> None:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(shared)
        group.requests.append(request)
        request.group = group
        group.items += request.count or 0
        self._queued(1)
        if group.items >= self.batch.max_size:
            self._kick(key, group)
        elif group.timer is None and not group.dispatching:
            group.timer = asyncio.get_running_loop().call_later(
                self.batch.max_wait, self._kick, key, group)

    def _kick(self, key: Hashable, group: _Group) -> None:
        """Start the group's next batch as soon as a slot is free."""
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        if not group.dispatching:
            group.dispatching = True
            self._spawn(self._dispatch(key, group))

    async def _dispatch(self, key: Hashable, group: _Group) -> None:
        await self.limiter.enter()  # meanwhile the group grows
        group.dispatching = False
        requests = self._take(group)
        self._rearm(key, group)
        if not requests:
            self.limiter.leave(None)
            return
        await self._run(requests, group.shared)

    def _take(self, group: _Group) -> list[_Request]:
        """The group's waiting requests, in arrival order, up to ``max_size`` items."""
        taken: list[_Request] = []
        items = 0
        while group.requests:
            request = group.requests[0]
            if request.gone:
                group.requests.popleft()
                continue
            if taken and items + (request.count or 0) > self.batch.max_size:
                break
            group.requests.popleft()
            group.items -= request.count or 0
            request.started = True
            items += request.count or 0
            taken.append(request)
        self._queued(-len(taken))
        return taken

    def _rearm(self, key: Hashable, group: _Group) -> None:
        """After a batch left: the next one's timer, or the group forgotten when empty."""
        while group.requests and group.requests[0].gone:
            group.requests.popleft()
        if not group.requests:
            if not group.dispatching and group.timer is None and self.groups.get(key) is group:
                del self.groups[key]
            return
        if group.items >= self.batch.max_size:
            self._kick(key, group)
        elif group.timer is None and not group.dispatching:
            due = group.requests[0].arrived + self.batch.max_wait - time.perf_counter()
            group.timer = asyncio.get_running_loop().call_later(
                max(0.0, due), self._kick, key, group)

    async def _alone(self, request: _Request, shared: dict[str, Any]) -> None:
        """A request that runs as its own batch: too large to share, or nothing to group by."""
        await self.limiter.enter()
        if request.gone:
            self.limiter.leave(None)
            return
        request.started = True
        self._queued(-1)
        await self._run([request], shared)

    async def _run(self, requests: list[_Request], shared: dict[str, Any]) -> None:
        """One call for ``requests`` on the pool, within a slot the caller took."""
        limiter, pool = self.limiter, self.pool
        assert pool is not None
        items = sum(1 if r.count is None else r.count for r in requests)  # a 0-d array: 1
        began = time.perf_counter()
        if self.started is not None:
            self.started(items, began - requests[0].arrived)
        span = (self.spans.started([r.traced for r in requests], items)
                if self.spans is not None else None)
        call = span.run(self.call) if span is not None and pool.kind == "thread" else self.call
        try:
            try:
                future = pool.submit(call, [r.values for r in requests],
                                     [r.count for r in requests], shared)
            except Exception as exc:  # noqa: BLE001 - a pool that is shutting down
                limiter.leave(None)
                self._failed(requests, items, exc, span)
                return
            future.add_done_callback(lambda done: limiter.leave(
                None if done.cancelled() else time.perf_counter() - began))
            try:
                parts = await future
            except HTTPException as exc:  # raised by the notebook on purpose: every request's
                for request in requests:  # answer
                    _settle(request, exc)
                return
            except Exception as exc:  # noqa: BLE001 - the function failed: one 500 for the batch
                self._failed(requests, items, exc, span)
                return
            for request, part in zip(requests, parts, strict=True):
                _settle(request, part)
        finally:
            if span is not None:
                span.end()

    def _failed(self, requests: list[_Request], items: int, exc: Exception,
                span: BatchSpan | None = None) -> None:
        """Every request of the batch answers the same 500, logged once, with one error id,
        reported once (on the batch's span, to Sentry)."""
        if requests[0].failed is not None:
            requests[0].failed(exc)
        what = exc.what if isinstance(exc, CallFailed) else None
        log = _BatchLog(logger, {"batch_requests": len(requests), "batch_size": items})

        def reported(exc: BaseException, error_id: str) -> None:
            if span is not None:
                span.failed(exc, error_id)
            if self.sentry:
                from . import sentry

                ids = [r.request_id for r in requests if r.request_id is not None]
                sentry.report(self.name, exc, error_id, tags={
                    "batch_size": items, "batch_requests": len(requests),
                    "request_id": ids[0] if len(ids) == 1 else None,
                    "trace_id": f"{span.trace_id:032x}" if span is not None else None,
                }, context={"batch": {"size": items, "request_ids": ids}})

        failure = _Failure(error_response(self.name, exc, debug=self.debug, logger=log,
                                          what=what, reported=reported))
        for request in requests:
            _settle(request, failure)

    # -- per request ---------------------------------------------------------------------------

    def _count(self, values: dict[str, Any]) -> int | None:
        """The request's items; a 422 when its merged parameters disagree."""
        kinds = dict(self.batch.batched)
        counts = {name: _count(kinds[name], value) for name, value in values.items()}
        (first, count), *others = counts.items()
        for name, other in others:
            if other != count:
                where = "query" if self.sources.get(name) == "query" else "body"
                raise RequestValidationError([{
                    "type": "value_error",
                    "loc": (where, name),
                    "msg": f"Value error, has {other} items where '{first}' has {count}; a "
                           "batched function takes as many of each",
                    "input": None,
                }])
        return count

    def _key(self, shared: dict[str, Any], values: dict[str, Any]) -> Hashable | None:
        """What requests must have in common to share a batch; None when a value cannot be
        compared (the request then runs alone)."""
        kinds = dict(self.batch.batched)
        key = (
            tuple((type(value), value) for value in shared.values()),
            tuple(_shape(kinds[name], value) for name, value in values.items()),
        )
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _queued(self, change: int) -> None:
        self.waiting += change
        if self.on_queue is not None and change:
            self.on_queue(change)


def _settle(request: _Request, outcome: Any) -> None:
    if request.future.done():
        return  # it left: timed out, cancelled, or its client went away
    if isinstance(outcome, BaseException):
        request.future.set_exception(outcome)
    else:
        request.future.set_result(outcome)


async def _ready(part: Any) -> Any:
    if isinstance(part, _Unencodable):
        raise part.exc
    return part


def _encoding(call: BatchCall, encode: Encoder, timed: bool = False) -> Callable[..., list[Any]]:
    """``call``, then each part encoded (on the worker), or kept as :class:`_Unencodable`;
    ``timed``: each encoded part as :class:`_Timed`."""

    def encoded(parts: list[dict[str, Any]], counts: list[int | None],
                shared: dict[str, Any]) -> list[Any]:
        results = []
        for part in call(parts, counts, shared):
            start = time.time_ns() if timed else 0
            try:
                body = encode(part)
            except Exception as exc:  # noqa: BLE001 - answered by respond, for this request
                results.append(_Unencodable(exc))
                continue
            results.append(_Timed(body, start, time.time_ns()) if timed else body)
        return results

    encoded.__name__ = encoded.__qualname__ = call.__name__
    return encoded
