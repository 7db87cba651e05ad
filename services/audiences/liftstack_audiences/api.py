"""HTTP entry of the audiences service.

Any workspace role may list audiences and sync them (Members build campaigns). A
path workspace other than the caller's answers 404, as does a connection or sync of
another workspace: nothing reveals what exists elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_audiences.failures import audience_not_found
from liftstack_audiences.models import AudienceList, AudienceSize, SyncAccepted, SyncRecord, SyncRequest
from liftstack_audiences.service import AudienceService
from liftstack_audiences.settings import AudiencesSettings
from liftstack_shared.auth import Principal, workspace_caller
from liftstack_shared.bounds import INT64_MAX
from liftstack_shared.http import INT64_PARAM, Endpoint, json_response, parse_json, read_body

WS = "/v1/workspaces/{workspace_id}"
AUDIENCES = WS + "/connections/{connection_id}/audiences"
SYNC = WS + "/audience-syncs/{sync_id}"
TAGS = ["audiences"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need; built by app.py."""

    settings: AudiencesSettings
    service: AudienceService


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def _caller(request: Request) -> Principal:
    return workspace_caller(
        request, deps(request).settings, request.path_params["workspace_id"], message="No such workspace."
    )


def _list_id(request: Request) -> int:
    # Iterable ids are 64-bit; a bigger number names no list (and isn't storable).
    list_id: int = request.path_params["list_id"]
    if list_id > INT64_MAX:
        raise audience_not_found(list_id)
    return list_id


def _accepted(record: SyncRecord, existing: bool = False) -> SyncAccepted:
    links = {"self": f"/v1/workspaces/{record.workspace_id}/audience-syncs/{record.sync_id}"}
    return SyncAccepted(sync_id=record.sync_id, status=record.status, existing=existing, links=links)


async def list_audiences(request: Request) -> Response:
    _caller(request)
    ws, cid = request.path_params["workspace_id"], request.path_params["connection_id"]
    return json_response(AudienceList(audiences=await deps(request).service.list_audiences(ws, cid)))


async def audience_size(request: Request) -> Response:
    _caller(request)
    ws, cid = request.path_params["workspace_id"], request.path_params["connection_id"]
    return json_response(await deps(request).service.size(ws, cid, _list_id(request)))


async def start_sync(request: Request) -> Response:
    who = _caller(request)
    ws, cid = request.path_params["workspace_id"], request.path_params["connection_id"]
    list_id = _list_id(request)
    d = deps(request)
    raw = await read_body(request, d.settings.max_body_bytes)
    body = parse_json(raw, SyncRequest) if raw.strip() else SyncRequest()  # the body is optional
    record, existing = await d.service.start_sync(ws, cid, list_id, body, who.user_id)
    accepted = _accepted(record, existing)
    response = json_response(accepted, status=202)
    if not existing:
        response.headers["Location"] = accepted.links["self"]
    return response


async def get_sync(request: Request) -> Response:
    _caller(request)
    ws, sync_id = request.path_params["workspace_id"], request.path_params["sync_id"]
    return json_response(await deps(request).service.get_sync(ws, sync_id))


async def retry_sync(request: Request) -> Response:
    _caller(request)
    ws, sync_id = request.path_params["workspace_id"], request.path_params["sync_id"]
    return json_response(_accepted(await deps(request).service.retry_sync(ws, sync_id)), status=202)


ROUTES: list[Route] = [
    Route(AUDIENCES, list_audiences, methods=["GET"]),
    Route(AUDIENCES + "/{list_id:int64}/size", audience_size, methods=["GET"]),
    Route(AUDIENCES + "/{list_id:int64}/sync", start_sync, methods=["POST"]),
    Route(SYNC, get_sync, methods=["GET"]),
    Route(SYNC + "/retry", retry_sync, methods=["POST"]),
]

ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", AUDIENCES, "List a connection's Iterable lists and segments", response=AudienceList, tags=TAGS),
    Endpoint(
        "GET",
        AUDIENCES + "/{list_id}/size",
        "One audience's size (lists/{id}/size, cached; 5 req/min per project)",
        response=AudienceSize,
        tags=TAGS,
        params={"list_id": INT64_PARAM},
    ),
    Endpoint(
        "POST",
        AUDIENCES + "/{list_id}/sync",
        "Start syncing an audience's members to Kafka (runs in the background)",
        request=SyncRequest,
        response=SyncAccepted,
        status=202,
        tags=TAGS,
        params={"list_id": INT64_PARAM},
    ),
    Endpoint("GET", SYNC, "An audience sync's record", response=SyncRecord, tags=TAGS),
    Endpoint(
        "POST",
        SYNC + "/retry",
        "Resume a failed (or dead) sync from its checkpoint, with the same sync id",
        response=SyncAccepted,
        status=202,
        tags=TAGS,
    ),
]
