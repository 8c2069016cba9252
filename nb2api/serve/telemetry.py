"""Whether tracing and error tracking are on, and what each request reports to them.

This module only decides: what is on is imported then (:mod:`.tracing` needs the OpenTelemetry
SDK, :mod:`.sentry` needs sentry-sdk), so a server with neither loads neither. Tracing is on
with ``--otel`` (``NB2API_OTEL``) or when ``OTEL_SERVICE_NAME`` or an OTLP endpoint variable is
set, unless ``OTEL_SDK_DISABLED=true``; error tracking is on when ``SENTRY_DSN`` is set.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ..settings import Settings

if TYPE_CHECKING:
    from .tracing import Tracing

logger = logging.getLogger("nb2api")

TRACING_VARIABLES = (
    "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
)

Reported = Callable[[BaseException, str], None]
_warned: set[str] = set()


def tracing_wanted(settings: Settings) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return settings.otel or any(os.environ.get(name) for name in TRACING_VARIABLES)


def tracing_for(settings: Settings, service_name: str) -> Tracing | None:
    """The app's tracing when it is on and the SDK is installed, else None (with a warning
    when it is on without the SDK)."""
    if not tracing_wanted(settings):
        return None
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        _warn_once("tracing is on (--otel or an OTEL_* variable) but the OpenTelemetry SDK is "
                   "not installed: pip install 'nb2api[otel]'; serving without traces")
        return None
    from .tracing import Tracing, process_pipeline

    return Tracing(process_pipeline(service_name))


def fastapi_options(tracing: Tracing | None) -> dict[str, Any]:
    """``FastAPI(...)`` keywords: with nb2api's tracing on, FastAPI's own telemetry (0.160 and
    later, on once a global provider is set) is off. nb2api makes the server span itself, on the
    fast path too, which FastAPI's would make fall back to FastAPI's handler, and has its own
    metrics and logs; with nothing on, FastAPI skips even its per-request provider checks."""
    if tracing is None or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def error_tracking() -> bool:
    """Whether errors go to Sentry: ``SENTRY_DSN`` set and sentry-sdk installed (set up now)."""
    if not os.environ.get("SENTRY_DSN"):
        return False
    if importlib.util.find_spec("sentry_sdk") is None:
        _warn_once("SENTRY_DSN is set but sentry-sdk is not installed: pip install "
                   "'nb2api[sentry]'; errors are only logged")
        return False
    from . import sentry

    sentry.start()
    return True


def reporter(route: str, tracing: Tracing | None, sentry: bool) -> Reported | None:
    """What hears of each 500 of ``route`` (its exception and error id), or None."""
    if sentry:
        from . import sentry as tracker

    def report(exc: BaseException, error_id: str) -> None:
        if tracing is not None:
            tracing.reported(exc, error_id)
        if sentry:
            tracker.report(route, exc, error_id)

    return report if tracing is not None or sentry else None


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
