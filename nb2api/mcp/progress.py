"""``nb2api.progress(...)`` during a tool call, sent to the client as MCP progress
notifications when its ``tools/call`` carried a ``_meta.progressToken``.

For the length of the call, the calling task's ``current_job`` is a
:class:`~nb2api.serve.jobs.current.JobContext` whose reporter hands each report to the event loop
(``call_soon_threadsafe``: the function may run on the loop, in a pool thread, or in a worker
process whose reports a reader thread receives). One task sends them, one after the other, in
the order they were made; the call's result waits until every report made before it was sent.
A call without a token never comes here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ..serve.jobs.current import JobContext, current_job

logger = logging.getLogger("nb2api")

# progress (the fraction), total (1.0), message: as ``ServerSession.report_progress`` takes them.
SendProgress = Callable[[float, float | None, str | None], Awaitable[None]]
_Report = tuple[float | None, str]


@asynccontextmanager
async def reporting(send: SendProgress) -> AsyncIterator[None]:
    """Within the block, every ``nb2api.progress(fraction, message)`` of the function the block
    calls is sent with ``send(fraction, 1.0, message)``, in order, before the block ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[_Report | None] = asyncio.Queue()

    def report(job: JobContext) -> None:  # on any thread; the job orders its own reports
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (job.fraction, job.message))
        except RuntimeError:  # the loop closed: the server is stopping
            pass

    sender = asyncio.create_task(_send_all(queue, send), name="nb2api-mcp-progress")
    token = current_job.set(JobContext(f"mcp-{secrets.token_hex(8)}", report))
    try:
        yield
    except BaseException:
        sender.cancel()
        raise
    finally:
        current_job.reset(token)
    # After the reports already handed to the loop (same FIFO), so none is left behind.
    loop.call_soon(queue.put_nowait, None)
    await sender


async def _send_all(queue: asyncio.Queue[_Report | None], send: SendProgress) -> None:
    last = 0.0  # a report without a fraction keeps the last one: MCP's progress is a number
    while (report := await queue.get()) is not None:
        fraction, message = report
        if fraction is not None:
            last = fraction
        try:
            await send(last, 1.0, message or None)
        except Exception as exc:  # the client went away: the call itself goes on
            logger.debug("mcp: a progress notification was not sent: %s", exc)
