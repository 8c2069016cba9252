"""nb2api's own endpoints: ``/healthz`` (alive), ``/readyz`` (ready for traffic), ``/metrics``."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse, Response

from .metrics import CONTENT_TYPE, Metrics
from .pools import WorkerPool

WEDGED_AFTER = 60.0  # seconds with every worker busy and no call returning: not ready


def mount(app: FastAPI, pools: Sequence[WorkerPool], metrics: Metrics | None,
          auth: DependsParam | None) -> None:
    """Mount ``/healthz`` and ``/readyz`` (open, for probes) and ``/metrics`` (behind ``auth``)."""
    _mount_health(app, pools)
    if metrics is not None:
        _mount_metrics(app, metrics, auth)


def not_ready_reason(pools: Sequence[WorkerPool]) -> str | None:
    """Why the app should get no traffic now, or None. Setup has run before an app exists."""
    for pool in pools:
        if getattr(pool, "broken", False):
            return f"the {pool.kind} pool lost a worker and is being replaced"
        wedged = pool.wedged_for()
        if wedged > WEDGED_AFTER:
            return (
                f"all {pool.max_workers} {pool.kind} workers busy and none returned "
                f"for {wedged:.0f} s"
            )
    return None


def _mount_health(app: FastAPI, pools: Sequence[WorkerPool]) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reason = not_ready_reason(pools)
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})


def _mount_metrics(app: FastAPI, metrics: Metrics, auth: DependsParam | None) -> None:
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        include_in_schema=False,
        dependencies=[auth] if auth is not None else None,
    )
