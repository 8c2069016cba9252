"""Error tracking: the 500s of notebook code sent to Sentry, tagged with their ``error_id``.

Imported only when ``SENTRY_DSN`` is set (:mod:`.telemetry`). The SDK is set up once per server
process with none of its automatic integrations: they would patch Starlette and FastAPI under
nb2api (and the fast path) and send every logged error a second time. nb2api hands it exactly
the exceptions that became a 500, with the id the client got, the route and, when tracing is
on, the trace id.
"""

from __future__ import annotations

import os
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.atexit import AtexitIntegration
from sentry_sdk.integrations.dedupe import DedupeIntegration

from .._version import __version__
from .jobs.current import current_job
from .logs import request_id, trace_id

_started_pid: int | None = None


def start() -> None:
    """Set the SDK up in this process (once; again in a forked or spawned server process).
    The DSN, environment and release come from ``SENTRY_DSN``, ``SENTRY_ENVIRONMENT`` and
    ``SENTRY_RELEASE``, as the SDK reads them."""
    global _started_pid
    if _started_pid == os.getpid():
        return
    sentry_sdk.init(
        default_integrations=False,
        auto_enabling_integrations=False,
        # Events still queued at exit are sent, without a line on stderr about it.
        integrations=[AtexitIntegration(callback=lambda pending, timeout: None),
                      DedupeIntegration()],
        send_default_pii=False,
        server_name=None,
    )
    sentry_sdk.set_tag("nb2api.version", __version__)
    _started_pid = os.getpid()


def report(route: str, exc: BaseException, error_id: str, *,
           tags: dict[str, Any] | None = None,
           context: dict[str, dict[str, Any]] | None = None) -> None:
    """Send ``exc``, which ``route()`` raised and which its client got as the 500 ``error_id``.
    ``tags`` replace the request's own (None: no such tag), as a batched call's do: it serves
    several requests; ``context`` adds named contexts."""
    job = current_job.get()
    found: dict[str, Any] = {"request_id": request_id.get(), "trace_id": trace_id.get(),
                             "job_id": job.job_id if job is not None else None}
    found.update(tags or {})
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("error_id", error_id)
        scope.set_tag("route", route)
        for key, value in found.items():
            if value is not None:
                scope.set_tag(key, str(value))
        for name, values in (context or {}).items():
            scope.set_context(name, values)
        scope.capture_exception(exc)
