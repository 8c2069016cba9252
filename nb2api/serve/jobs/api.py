"""The job endpoints: ``GET /jobs``, ``GET /jobs/{id}``, ``/jobs/{id}/events``,
``/jobs/{id}/result`` and ``DELETE /jobs/{id}``, behind the routes' bearer token."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.routing import Route

from ..streaming import SSE, EventStream
from .runner import POLL, Jobs
from .store import TERMINAL

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobProgress(BaseModel):
    fraction: float | None = Field(description="From 0 to 1; null when unknown")
    message: str


class JobError(BaseModel):
    detail: str
    error_id: str = Field(description="The id the server log gives with the traceback")


class WebhookAttempt(BaseModel):
    attempt: int
    at: str
    status: int | None = Field(description="The receiver's HTTP status; null when none came")
    error: str | None


class JobWebhook(BaseModel):
    url: str
    deliveries: list[WebhookAttempt]


class Job(BaseModel):
    """A job: one call of a route, run apart from its request."""

    id: str
    status: Status
    route: str
    created: str
    started: str | None
    finished: str | None
    progress: JobProgress | None
    error: JobError | None
    attempts: int = Field(description="Times the job started (more after a restart with retries)")
    webhook: JobWebhook | None = None


class JobAccepted(BaseModel):
    """The 202 of a call run as a job; ``Location`` names the job."""

    id: str
    status: Status
    route: str
    created: str


class _Detail(BaseModel):
    detail: str


class JobList(BaseModel):
    jobs: list[Job]
    next: str | None = Field(description="Pass as 'after' for the next page; null at the end")


def accepted_response() -> dict[int | str, dict[str, Any]]:
    """The 202 every route may answer, for its OpenAPI document."""
    # Written out, not as a model: FastAPI would put a model under the route's media type,
    # which is not JSON for a route that answers an image or CSV.
    return {202: {
        "content": {"application/json": {"schema": JobAccepted.model_json_schema()}},
        "description": "Run as a job: sent 'Prefer: respond-async' (and an optional "
                       "'Webhook-URL'), or the function is marked '#| job'. Follow "
                       "GET /jobs/{id} (the Location header).",
        "headers": {"Location": {"schema": {"type": "string"},
                                 "description": "/jobs/{id}"}},
    }}


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(document).encode(), status, headers=headers,
                    media_type="application/json")


def _missing(job_id: str) -> HTTPException:
    return HTTPException(404, f"no job {job_id!r} (never made, or expired after --job-ttl)")


_OTHER_METHODS = ("POST", "PUT", "PATCH", "OPTIONS", "TRACE", "CONNECT", "QUERY")


def _not_allowed(allow: str) -> Any:
    async def not_allowed(request: Request) -> Response:
        return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": allow})

    return not_allowed


def mount(app: FastAPI, jobs: Jobs, auth: DependsParam | None) -> None:
    dependencies = [auth] if auth is not None else None
    tags = ["jobs"]
    not_found: dict[int | str, dict[str, Any]] = {
        404: {"model": _Detail, "description": "No such job"}}

    async def list_jobs(
        status: Annotated[Status | None, Query(description="Only jobs in this status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[str | None, Query(description="'next' of the previous page")] = None,
    ) -> Response:
        store = jobs.store()
        if store is None:
            return _json({"jobs": [], "next": None})
        page = store.documents(status, limit + 1, after)
        more = len(page) > limit
        page = page[:limit]
        return _json({"jobs": page, "next": page[-1]["id"] if more else None})

    async def get_job(job_id: str) -> Response:
        document = jobs.document(job_id)
        if document is None:
            raise _missing(job_id)
        return _json(document)

    async def job_result(job_id: str) -> Response:
        store = jobs.store()
        found = store.result(job_id) if store is not None else None
        if found is None:
            raise _missing(job_id)
        status, result = found
        if status == "cancelled":
            raise HTTPException(409, f"job {job_id} was cancelled: it has no result")
        if result is None:
            return _json(jobs.document(job_id), 202, headers={"Retry-After": "1"})
        return Response(result.body, result.status, media_type=result.media_type)

    async def job_events(job_id: str) -> Response:
        if jobs.document(job_id) is None:
            raise _missing(job_id)

        async def events() -> Any:
            last = None
            while True:
                document = jobs.document(job_id)
                if document is None:
                    return
                text = json.dumps(document).encode()
                if text != last:
                    last = text
                    yield b"event: status\ndata: " + text + b"\n\n"
                if document["status"] in TERMINAL:
                    yield b"event: end\ndata: {}\n\n"
                    return
                await jobs.changed(POLL)

        return EventStream(events(), SSE)

    async def cancel_job(job_id: str) -> Response:
        before, document = jobs.cancel(job_id)
        if before is None:
            raise _missing(job_id)
        if before in TERMINAL:
            raise HTTPException(409, f"job {job_id} has already {before}")
        return _json(document)

    common: dict[str, Any] = {"dependencies": dependencies, "tags": tags}
    app.add_api_route("/jobs", list_jobs, methods=["GET"], response_model=JobList,
                      summary="List jobs, newest first", operation_id="nb2api_list_jobs",
                      response_class=JSONResponse, **common)
    app.add_api_route("/jobs/{job_id}", get_job, methods=["GET"], response_model=Job,
                      summary="A job's status and progress", operation_id="nb2api_get_job",
                      responses=not_found, **common)
    app.add_api_route(
        "/jobs/{job_id}/result", job_result, methods=["GET"], operation_id="nb2api_job_result",
        summary="A finished job's answer: what the synchronous call would have answered",
        responses={**not_found,
                   202: {"model": Job, "description": "Not finished yet"},
                   409: {"model": _Detail, "description": "The job was cancelled"}},
        **common,
    )
    app.add_api_route(
        "/jobs/{job_id}/events", job_events, methods=["GET"], operation_id="nb2api_job_events",
        summary="Server-Sent Events of a job's status and progress, to its end",
        responses={**not_found, 200: {"description": "'event: status' with the job's "
                   "document at each change, then 'event: end'",
                   "content": {SSE: {"schema": {"$ref": "#/components/schemas/Job"}}}}},
        **common,
    )
    # Another method on /jobs/{id} gets the 405 with both methods it has in Allow (FastAPI's
    # router would name only those of the first of the two routes).
    app.router.routes.append(Route("/jobs/{job_id}", _not_allowed("GET, DELETE"),
                                   methods=list(_OTHER_METHODS), include_in_schema=False))
    app.add_api_route(
        "/jobs/{job_id}", cancel_job, methods=["DELETE"], response_model=Job,
        operation_id="nb2api_cancel_job",
        summary="Cancel a job: a queued one never starts, a running one is stopped",
        responses={**not_found, 409: {"model": _Detail, "description": "The job had ended"}},
        **common,
    )
