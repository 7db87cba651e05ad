"""The writeback HTTP API (progress for the wizard, re-trigger) and its lifespan,
which runs the Kafka consumer."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import datetime

from aiokafka.errors import KafkaError
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_shared.auth import Principal, principal_from_request, require_manager
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import ConnectionsServiceCredentials, CredentialsSource
from liftstack_shared.errors import ApiError
from liftstack_shared.http import EXCEPTION_HANDLERS, Endpoint, json_response, service_middleware, standard_routes
from liftstack_shared.messages.writeback import WritebackStatus
from liftstack_writeback.jobs import JobHeader, RunSummary
from liftstack_writeback.service import RetriggerRefused, WritebackService
from liftstack_writeback.settings import WritebackSettings

JOB_PATH = "/v1/workspaces/{ws}/writeback/jobs/{job_id}"
# What a client may send as Idempotency-Key (a UUID, a ULID, a random token...).
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


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


def create_app(
    settings: WritebackSettings,
    credentials: CredentialsSource | None = None,
    *,
    consume: bool = True,
) -> Starlette:
    """`credentials`: where Iterable keys come from (default: the connections
    service). `consume=False` serves the API without consuming (tools, tests)."""

    def service_of(request: Request) -> WritebackService:
        return request.app.state.writeback

    async def job_for(request: Request) -> tuple[Principal, JobHeader]:
        principal = principal_from_request(request, settings)
        ws, job_id = request.path_params["ws"], request.path_params["job_id"]
        store = service_of(request).store
        header = await store.job(job_id) if principal.workspace_id == ws else None
        if header is None or header.workspace_id != ws:
            # Same answer for "no such job" and "not your workspace": no probing.
            raise ApiError(404, "not_found", "No such writeback job in this workspace.")
        return principal, header

    async def view(service: WritebackService, header: JobHeader) -> JobView:
        runs = [summary for _, summary in await service.store.summaries(header)]
        if not runs:
            raise ApiError(404, "not_found", "No such writeback job in this workspace.")
        return JobView(
            job_id=header.job_id,
            workspace_id=header.workspace_id,
            connection_id=header.connection_id,
            campaign_key=header.campaign_key,
            total=header.total,
            current=RunView.of(runs[-1]),
            previous_runs=[RunView.of(s) for s in reversed(runs[:-1])],
        )

    async def get_job(request: Request) -> Response:
        _, header = await job_for(request)
        return json_response(await view(service_of(request), header))

    async def retrigger(request: Request) -> Response:
        principal, header = await job_for(request)
        require_manager(principal)
        key = request.headers.get("idempotency-key")
        if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
            raise ApiError(
                400, "invalid_idempotency_key", "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 _ . : -."
            )
        service = service_of(request)
        try:
            result = await service.retrigger(header, key)
        except RetriggerRefused as exc:
            raise ApiError(409, exc.code, exc.message) from None
        except KafkaError:
            # The run exists but isn't fully published: re-triggering again resumes it.
            raise ApiError(503, "unavailable", "Could not publish the re-run; re-trigger again in a minute.") from None
        response = json_response(await view(service, header), status=202)
        if not result.created:
            # Same answer as the first time; the header says nothing new started.
            response.headers["Idempotent-Replayed"] = "true"
        return response

    endpoints = [
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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Built here, on the serving event loop: aiokafka binds to the loop it's
        # created on.
        creds = credentials or ConnectionsServiceCredentials(ConnectionsClient(settings))
        service = WritebackService(settings, creds)
        await service.start(consume=consume)
        app.state.writeback = service
        try:
            yield
        finally:
            await service.stop()

    async def check_kafka() -> None:
        await app.state.writeback.check_kafka()

    async def check_mongo() -> None:
        await app.state.writeback.check_mongo()

    app = Starlette(
        routes=[
            Route(JOB_PATH, get_job, methods=["GET"]),
            Route(JOB_PATH + "/retrigger", retrigger, methods=["POST"]),
            *standard_routes(
                "writeback",
                endpoints,
                {"kafka": check_kafka, "mongo": check_mongo},
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=service_middleware(settings),
        lifespan=lifespan,
    )
    return app
