"""HTTP entry of the connections service (Settings > Integrations).

User routes live under /v1/workspaces/{workspace_id}/connections and need a user JWT
whose workspace is the one in the path (otherwise 404, so ids don't leak across
workspaces). Internal routes under /internal need the service token and never accept a
user token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_connections.models import (
    Connection,
    ConnectionCreate,
    ConnectionList,
    ConnectionUpdate,
    TestResult,
)
from liftstack_connections.service import NOT_FOUND, ConnectionService
from liftstack_connections.settings import ConnectionsSettings
from liftstack_shared.auth import Principal, require_service, workspace_caller
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.http import Endpoint, json_response, parse_body

BASE = "/v1/workspaces/{workspace_id}/connections"
ONE = BASE + "/{connection_id}"
TAGS = ["connections"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need; built by app.py."""

    settings: ConnectionsSettings
    service: ConnectionService


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def _caller(request: Request, manage: bool) -> Principal:
    # A workspace mismatch is "Connection not found." too: no confirming what exists.
    return workspace_caller(
        request, deps(request).settings, request.path_params["workspace_id"], manage=manage, message=NOT_FOUND
    )


async def list_connections(request: Request) -> Response:
    who = _caller(request, manage=False)
    return json_response(ConnectionList(connections=await deps(request).service.list(who)))


async def create_connection(request: Request) -> Response:
    who = _caller(request, manage=True)
    d = deps(request)
    body = await parse_body(request, ConnectionCreate, d.settings.max_body_bytes)
    return json_response(await d.service.create(who, body), status=201)


async def get_connection(request: Request) -> Response:
    who = _caller(request, manage=True)
    return json_response(await deps(request).service.get(who, request.path_params["connection_id"]))


async def update_connection(request: Request) -> Response:
    who = _caller(request, manage=True)
    d = deps(request)
    body = await parse_body(request, ConnectionUpdate, d.settings.max_body_bytes)
    return json_response(await d.service.update(who, request.path_params["connection_id"], body))


async def delete_connection(request: Request) -> Response:
    who = _caller(request, manage=True)
    await deps(request).service.delete(who, request.path_params["connection_id"])
    return Response(status_code=204)


async def test_connection(request: Request) -> Response:
    who = _caller(request, manage=True)
    return json_response(await deps(request).service.test(who, request.path_params["connection_id"]))


async def internal_connection(request: Request) -> Response:
    d = deps(request)
    require_service(request, d.settings)
    return json_response(await d.service.internal_by_id(request.path_params["connection_id"]))


async def internal_webhook(request: Request) -> Response:
    d = deps(request)
    require_service(request, d.settings)
    return json_response(await d.service.internal_by_webhook_token(request.path_params["token"]))


ROUTES: list[Route] = [
    Route(BASE, list_connections, methods=["GET"]),
    Route(BASE, create_connection, methods=["POST"]),
    Route(ONE, get_connection, methods=["GET"]),
    Route(ONE, update_connection, methods=["PATCH"]),
    Route(ONE, delete_connection, methods=["DELETE"]),
    Route(ONE + "/test", test_connection, methods=["POST"]),
    Route("/internal/connections/{connection_id}", internal_connection, methods=["GET"]),
    Route("/internal/webhooks/{token}", internal_webhook, methods=["GET"]),
]

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET", BASE, "List the workspace's connections (Members get summaries)", response=ConnectionList, tags=TAGS
    ),
    Endpoint(
        "POST",
        BASE,
        "Create a connection (Owner/Admin)",
        request=ConnectionCreate,
        response=Connection,
        status=201,
        tags=TAGS,
    ),
    Endpoint("GET", ONE, "Get one connection (Owner/Admin)", response=Connection, tags=TAGS),
    Endpoint(
        "PATCH",
        ONE,
        "Rename, replace key/secret, change region or event types (Owner/Admin)",
        request=ConnectionUpdate,
        response=Connection,
        tags=TAGS,
    ),
    Endpoint("DELETE", ONE, "Delete a connection; its webhook URL stops working (Owner/Admin)", status=204, tags=TAGS),
    Endpoint(
        "POST",
        ONE + "/test",
        "Test the connection with read-only Iterable calls (Owner/Admin)",
        response=TestResult,
        tags=TAGS,
    ),
    Endpoint(
        "GET",
        "/internal/connections/{connection_id}",
        "Decrypted credentials and settings (services only)",
        response=InternalConnection,
        auth="service",
        tags=["internal"],
    ),
    Endpoint(
        "GET",
        "/internal/webhooks/{token}",
        "The connection a webhook URL token belongs to (services only)",
        response=InternalConnection,
        auth="service",
        tags=["internal"],
    ),
]
