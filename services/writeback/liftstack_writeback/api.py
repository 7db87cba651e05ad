"""Writeback's HTTP API: a job's progress for the campaign wizard (with its previous
runs) and re-trigger. A job of another workspace answers exactly like no job: 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_shared.auth import workspace_caller
from liftstack_shared.errors import ApiError
from liftstack_shared.http import Endpoint, json_response
from liftstack_writeback.models import JobHeader, RunSummary, WritebackStatus
from liftstack_writeback.service import RetriggerRefused, RetriggerUnpublished, WritebackService
from liftstack_writeback.settings import WritebackSettings

JOB_PATH = "/v1/workspaces/{ws}/writeback/jobs/{job_id}"
NOT_FOUND = "No such writeback job in this workspace."


@dataclass(frozen=True)
class Deps:
    """What the handlers need; built by app.py."""

    settings: WritebackSettings
    service: WritebackService


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


# --- models --------------------------------------------------------------------------


class RetriggerRequest(BaseModel):
    """A re-trigger carries no body; only its optional `Idempotency-Key` header."""

    # What a client may send as Idempotency-Key (a UUID, a ULID, a random token...).
    idempotency_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")

    @classmethod
    def of(cls, request: Request) -> RetriggerRequest:
        try:
            return cls(idempotency_key=request.headers.get("idempotency-key"))
        except ValidationError:
            raise ApiError(
                400, "invalid_idempotency_key", "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 _ . : -."
            ) from None


class RunView(BaseModel):
    run: int
    triggered_by: str  # "engine" (the assignment engine's batches) or "retrigger"
    status: WritebackStatus
    total: int
    written: int  # users with a known outcome: succeeded + failed
    succeeded: int
    failed: int
    failed_by_reason: dict[str, int]
    # Iterable's failCount beyond the users it named: unknown users, not in `failed`.
    unattributed_failures: int = 0
    batches_done: int
    batch_count: int
    started_at: datetime | None
    finished_at: datetime | None
    profiles_per_second: float

    @classmethod
    def of(cls, s: RunSummary) -> RunView:
        return cls(
            run=s.run,
            triggered_by=s.created_by,
            status=s.status,
            total=s.header.total,
            written=s.written,
            succeeded=s.succeeded,
            failed=s.failed,
            failed_by_reason=s.failed_by_reason,
            batches_done=s.batches_done,
            unattributed_failures=s.unattributed_failures,
            batch_count=s.header.batch_count,
            started_at=s.started_at,
            finished_at=s.finished_at,
            profiles_per_second=s.profiles_per_second,
        )


class JobView(BaseModel):
    job_id: str
    workspace_id: str
    connection_id: str
    campaign_key: str
    total: int
    current: RunView
    # Earlier runs, newest first, kept for comparison after a re-trigger.
    previous_runs: list[RunView]


# --- handlers ------------------------------------------------------------------------


async def get_job(request: Request) -> Response:
    d = deps(request)
    header = await _job(request, d)
    return json_response(await _view(d.service, header))


async def retrigger(request: Request) -> Response:
    d = deps(request)
    header = await _job(request, d, manage=True)
    body = RetriggerRequest.of(request)
    try:
        result = await d.service.retrigger(header, body.idempotency_key)
    except RetriggerRefused as exc:
        raise ApiError(409, exc.code, exc.message) from None
    except RetriggerUnpublished:
        raise ApiError(503, "unavailable", "Could not publish the re-run; re-trigger again in a minute.") from None
    response = json_response(await _view(d.service, header), status=202)
    if not result.created:
        # Same answer as the first time; the header says nothing new started.
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def _job(request: Request, d: Deps, manage: bool = False) -> JobHeader:
    """The path's job, for a caller of its workspace (and an Owner or Admin when
    `manage`). "No such job" and "not your workspace" give the same 404: no probing."""
    ws = request.path_params["ws"]
    workspace_caller(request, d.settings, ws, manage=manage, message=NOT_FOUND)
    header = await d.service.job(ws, request.path_params["job_id"])
    if header is None:
        raise ApiError(404, "not_found", NOT_FOUND)
    return header


async def _view(service: WritebackService, header: JobHeader) -> JobView:
    runs = await service.runs(header)
    if not runs:
        raise ApiError(404, "not_found", NOT_FOUND)
    return JobView(
        job_id=header.job_id,
        workspace_id=header.workspace_id,
        connection_id=header.connection_id,
        campaign_key=header.campaign_key,
        total=header.total,
        current=RunView.of(runs[-1]),
        previous_runs=[RunView.of(s) for s in reversed(runs[:-1])],
    )


ROUTES: list[Route] = [
    Route(JOB_PATH, get_job, methods=["GET"]),
    Route(JOB_PATH + "/retrigger", retrigger, methods=["POST"]),
]

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET", JOB_PATH, "A writeback job's progress, with its previous runs.", response=JobView, tags=["writeback"]
    ),
    Endpoint(
        "POST",
        JOB_PATH + "/retrigger",
        "Re-run a finished job from the beginning (Owners and Admins). With an "
        "Idempotency-Key header, repeating the request answers the run it "
        "created (Idempotent-Replayed: true) instead of starting another.",
        response=JobView,
        status=202,
        tags=["writeback"],
    ),
]
