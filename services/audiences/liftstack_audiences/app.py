"""The audiences HTTP API.

Any workspace role may list audiences and sync them (Members build campaigns). A
path workspace other than the caller's answers 404, as does a connection or sync of
another workspace: nothing reveals what exists elsewhere.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_audiences.audiences import audience_size, audience_type, find_audience, list_audiences
from liftstack_audiences.failures import KNOWN_FAILURES, audience_not_found, to_api_error
from liftstack_audiences.identifiers import PROJECT_TYPE_NAMES, ProjectIdentity
from liftstack_audiences.models import (
    AudienceList,
    AudienceSize,
    SyncAccepted,
    SyncRecord,
    SyncRequest,
)
from liftstack_audiences.publisher import AudiencePublisher
from liftstack_audiences.runner import ClientFactory, SyncRunner
from liftstack_audiences.settings import AudiencesSettings
from liftstack_audiences.state import remove_expired
from liftstack_audiences.store import SizeCache, SyncStore, now
from liftstack_shared.auth import Principal, principal_from_request
from liftstack_shared.bounds import INT64_MAX
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import (
    ConnectionsServiceCredentials,
    CredentialsSource,
    IterableCredentials,
)
from liftstack_shared.errors import ApiError
from liftstack_shared.http import (
    EXCEPTION_HANDLERS,
    INT64_PARAM,
    Endpoint,
    json_response,
    parse_json,
    read_body,
    service_middleware,
    standard_routes,
)
from liftstack_shared.iterable import IterableAuthError, IterableClient
from liftstack_shared.kafka import make_broker
from liftstack_shared.mongo import database, make_mongo_client, mongo_ready

log = logging.getLogger(__name__)

WS = "/v1/workspaces/{workspace_id}"
AUDIENCES = WS + "/connections/{connection_id}/audiences"

ENDPOINTS = [
    Endpoint(
        "GET", AUDIENCES, "List a connection's Iterable lists and segments", response=AudienceList, tags=["audiences"]
    ),
    Endpoint(
        "GET",
        AUDIENCES + "/{list_id}/size",
        "One audience's size (lists/{id}/size, cached; 5 req/min per project)",
        response=AudienceSize,
        tags=["audiences"],
        params={"list_id": INT64_PARAM},
    ),
    Endpoint(
        "POST",
        AUDIENCES + "/{list_id}/sync",
        "Start syncing an audience's members to Kafka (runs in the background)",
        request=SyncRequest,
        response=SyncAccepted,
        status=202,
        tags=["audiences"],
        params={"list_id": INT64_PARAM},
    ),
    Endpoint(
        "GET", WS + "/audience-syncs/{sync_id}", "An audience sync's record", response=SyncRecord, tags=["audiences"]
    ),
    Endpoint(
        "POST",
        WS + "/audience-syncs/{sync_id}/retry",
        "Resume a failed (or dead) sync from its checkpoint, with the same sync id",
        response=SyncAccepted,
        status=202,
        tags=["audiences"],
    ),
]


@dataclass
class _Runtime:
    mongo: AsyncMongoClient
    store: SyncStore
    sizes: SizeCache
    runner: SyncRunner


def create_app(
    settings: AudiencesSettings,
    credentials: CredentialsSource | None = None,
    client_factory: ClientFactory | None = None,
) -> Starlette:
    """`credentials`: where connection keys come from (default: the connections
    service). `client_factory`: how to build an Iterable client for a key (default:
    from settings, i.e. Iterable or LIFTSTACK_ITERABLE_BASE_URL's sandbox)."""
    creds: CredentialsSource = credentials or ConnectionsServiceCredentials(ConnectionsClient(settings))

    def default_factory(c: IterableCredentials) -> IterableClient:
        return IterableClient.from_settings(settings, c.api_key, c.region)

    make_client: ClientFactory = client_factory or default_factory
    broker = make_broker(settings, "audiences")
    runtime: _Runtime | None = None

    def rt() -> _Runtime:
        assert runtime is not None, "the app's lifespan has not started"
        return runtime

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal runtime
        removed = remove_expired(settings.audience_state_dir, settings.audience_state_retention_s)
        if removed:
            log.info("removed %d expired audience sync state files", removed)
        mongo = make_mongo_client(settings)
        db = database(mongo, settings)
        store, sizes = SyncStore(db), SizeCache(db)
        await store.ensure_indexes()
        await broker.start()
        runner = SyncRunner(settings, store, sizes, creds, AudiencePublisher(broker, settings), make_client)
        runtime = _Runtime(mongo, store, sizes, runner)
        try:
            yield
        finally:
            await runner.close()
            await broker.stop()
            await creds.aclose()
            await mongo.close()
            runtime = None

    def caller(request: Request) -> Principal:
        principal = principal_from_request(request, settings)
        if principal.workspace_id != request.path_params["workspace_id"]:
            raise ApiError(404, "not_found", "No such workspace.")
        return principal

    def sync_links(request: Request, sync_id: str) -> dict[str, str]:
        ws = request.path_params["workspace_id"]
        return {"self": f"/v1/workspaces/{ws}/audience-syncs/{sync_id}"}

    async def own_sync(request: Request) -> SyncRecord:
        record = await rt().store.get(request.path_params["sync_id"])
        if record is None or record.workspace_id != request.path_params["workspace_id"]:
            raise ApiError(404, "sync_not_found", "No such audience sync in this workspace.")
        return record

    def list_id_of(request: Request) -> int:
        # Iterable ids are 64-bit; a bigger number names no list (and isn't storable).
        list_id: int = request.path_params["list_id"]
        if list_id > INT64_MAX:
            raise audience_not_found(list_id)
        return list_id

    def forget_rejected_key(exc: BaseException, connection_id: str) -> None:
        if isinstance(exc, IterableAuthError):
            creds.invalidate(connection_id)

    async def get_audiences(request: Request) -> Response:
        caller(request)
        ws, cid = request.path_params["workspace_id"], request.path_params["connection_id"]
        try:
            key = await creds.get(ws, cid)
            async with make_client(key) as client:
                audiences = await list_audiences(client, rt().sizes, cid)
        except KNOWN_FAILURES as exc:
            forget_rejected_key(exc, cid)
            raise to_api_error(exc) from None
        return json_response(AudienceList(audiences=audiences))

    async def get_size(request: Request) -> Response:
        caller(request)
        ws, cid = request.path_params["workspace_id"], request.path_params["connection_id"]
        list_id = list_id_of(request)
        try:
            key = await creds.get(ws, cid)
            async with make_client(key) as client:
                size = await audience_size(
                    client,
                    rt().sizes,
                    cid,
                    list_id,
                    settings.audience_size_ttl_s,
                    settings.audience_size_wait_s,
                )
        except KNOWN_FAILURES as exc:
            forget_rejected_key(exc, cid)
            raise to_api_error(exc, list_id) from None
        return json_response(size)

    def sync_identity(body: SyncRequest, key: IterableCredentials) -> ProjectIdentity:
        """The project's type rules: the connection's, which an explicit `identity`
        may repeat but not contradict (Iterable can't tell us which is right, and the
        wrong one misreads every member whose userId contains "@")."""
        if body.identity is not None and body.identity != key.project_type:
            raise ApiError(
                400,
                "identity_mismatch",
                f"identity: this connection's Iterable project is {key.project_type!r}"
                f" ({PROJECT_TYPE_NAMES[key.project_type]}), not {body.identity!r}. Leave"
                " identity out to use the connection's project type, or change the"
                " connection's project type in Settings > Integrations.",
                field="identity",
            )
        return key.project_type

    async def start_sync(request: Request) -> Response:
        principal = caller(request)
        ws, cid = request.path_params["workspace_id"], request.path_params["connection_id"]
        list_id = list_id_of(request)
        raw = await read_body(request, settings.max_body_bytes)
        body = parse_json(raw, SyncRequest) if raw.strip() else SyncRequest()
        store = rt().store
        alive_since = now() - timedelta(seconds=settings.audience_stale_after_s)
        try:
            # Fresh, not cached: the project type decides how every line is read,
            # and a type just corrected in Settings > Integrations must apply to this
            # sync (starting one is rare: getUsers allows 5 per minute).
            creds.invalidate(cid)
            key = await creds.get(ws, cid)
            identity = sync_identity(body, key)
            # A double-click (or a second tab) joins the running sync instead of
            # spending another getUsers call of the project's 5 per minute.
            active = await store.find_active(ws, cid, list_id, alive_since)
            if active is not None and (active.prefer_user_id, active.identity) == (body.prefer_user_id, identity):
                return json_response(
                    SyncAccepted(
                        sync_id=active.sync_id,
                        status=active.status,
                        existing=True,
                        links=sync_links(request, active.sync_id),
                    ),
                    status=202,
                )
            # Up-front checks give clear errors now: permission, unknown list, outage.
            async with make_client(key) as client:
                lst = await find_audience(client, list_id)
        except KNOWN_FAILURES as exc:
            forget_rejected_key(exc, cid)
            raise to_api_error(exc, list_id) from None
        created = now()
        record = SyncRecord(
            sync_id=uuid.uuid4().hex,
            workspace_id=ws,
            connection_id=cid,
            list_id=list_id,
            list_name=lst.name,
            list_type=audience_type(lst),
            prefer_user_id=body.prefer_user_id,
            identity=identity,
            status="pending",
            requested_by=principal.user_id,
            created_at=created,
            updated_at=created,
        )
        await store.create(record)
        await rt().runner.publish_progress(record)
        rt().runner.start(record.sync_id)
        accepted = SyncAccepted(sync_id=record.sync_id, status="pending", links=sync_links(request, record.sync_id))
        response = json_response(accepted, status=202)
        response.headers["Location"] = accepted.links["self"]
        return response

    async def get_sync(request: Request) -> Response:
        caller(request)
        return json_response(await own_sync(request))

    async def retry_sync(request: Request) -> Response:
        caller(request)
        record = await own_sync(request)
        if record.status == "completed":
            raise ApiError(409, "sync_completed", "This sync has completed; start a new sync to refresh the audience.")
        dead_before = now() - timedelta(seconds=settings.audience_stale_after_s)
        claimed = await rt().store.claim_retry(record.sync_id, dead_before)
        if claimed is None:
            raise ApiError(409, "sync_active", "This sync is still running.")
        await rt().runner.publish_progress(claimed)
        rt().runner.start(claimed.sync_id)
        return json_response(
            SyncAccepted(sync_id=claimed.sync_id, status="pending", links=sync_links(request, claimed.sync_id)),
            status=202,
        )

    async def kafka_check() -> None:
        if not await broker.ping(timeout=3.0):
            raise ConnectionError("Kafka did not answer")

    async def mongo_check() -> None:
        await mongo_ready(rt().mongo)

    routes = [
        Route(AUDIENCES, get_audiences, methods=["GET"]),
        Route(AUDIENCES + "/{list_id:int64}/size", get_size, methods=["GET"]),
        Route(AUDIENCES + "/{list_id:int64}/sync", start_sync, methods=["POST"]),
        Route(WS + "/audience-syncs/{sync_id}", get_sync, methods=["GET"]),
        Route(WS + "/audience-syncs/{sync_id}/retry", retry_sync, methods=["POST"]),
        *standard_routes("audiences", ENDPOINTS, {"kafka": kafka_check, "mongo": mongo_check}),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS, middleware=service_middleware(settings)
    )
