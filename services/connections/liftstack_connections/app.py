"""HTTP API of the connections service (Settings > Integrations).

User routes live under /v1/workspaces/{workspace_id}/connections and need a user JWT
whose workspace is the one in the path (otherwise 404, so ids don't leak across
workspaces). Internal routes under /internal need the service token and never accept a
user token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_connections.crypto import CredentialCipher
from liftstack_connections.events import EventPublisher
from liftstack_connections.iterable_probe import EventHooks, IterableProbe
from liftstack_connections.models import (
    Connection,
    ConnectionCreate,
    ConnectionList,
    ConnectionUpdate,
    TestResult,
)
from liftstack_connections.service import ConnectionService, not_found
from liftstack_connections.settings import ConnectionsSettings
from liftstack_connections.store import ConnectionStore
from liftstack_shared.auth import Principal, principal_from_request, require_manager, require_service
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.http import (
    EXCEPTION_HANDLERS,
    Endpoint,
    json_response,
    parse_body,
    service_middleware,
    standard_routes,
)
from liftstack_shared.kafka import ensure_topics, make_broker
from liftstack_shared.mongo import database, make_mongo_client, mongo_ready
from liftstack_shared.topics import CONNECTION_CHANGED

BASE = "/v1/workspaces/{workspace_id}/connections"
ONE = BASE + "/{connection_id}"
TAGS = ["connections"]

ENDPOINTS = [
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


@dataclass
class _State:
    service: ConnectionService | None = None
    mongo: AsyncMongoClient | None = None
    broker: KafkaBroker | None = None


def create_app(settings: ConnectionsSettings, probe_hooks: EventHooks | None = None) -> Starlette:
    """`probe_hooks`: httpx event hooks for the Iterable probe (tests observe requests)."""
    cipher = CredentialCipher(settings.master_keys.get_secret_value())  # fail fast if unset
    state = _State()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Clients are made here, on the server's event loop, not at import time.
        state.mongo = mongo = make_mongo_client(settings)
        state.broker = broker = make_broker(settings, "connections")
        try:
            store = ConnectionStore(database(mongo, settings))
            await store.ensure_indexes()
            await ensure_topics(settings, (CONNECTION_CHANGED,))
            await broker.start()
            state.service = ConnectionService(
                settings,
                store,
                cipher,
                EventPublisher(broker, settings),
                IterableProbe(settings.iterable_base_url, settings.test_timeout_s, probe_hooks),
            )
            yield
        finally:
            state.service = None
            await broker.stop()
            await mongo.close()

    def svc() -> ConnectionService:
        assert state.service is not None, "lifespan not started"
        return state.service

    def caller(request: Request, manage: bool) -> Principal:
        who = principal_from_request(request, settings)
        if who.workspace_id != request.path_params["workspace_id"]:
            raise not_found()  # not 403: don't confirm the workspace or id exists
        if manage:
            require_manager(who)
        return who

    async def list_connections(request: Request) -> Response:
        who = caller(request, manage=False)
        return json_response(ConnectionList(connections=await svc().list(who)))

    async def create_connection(request: Request) -> Response:
        who = caller(request, manage=True)
        body = await parse_body(request, ConnectionCreate, settings.max_body_bytes)
        return json_response(await svc().create(who, body), status=201)

    async def get_connection(request: Request) -> Response:
        who = caller(request, manage=True)
        return json_response(await svc().get(who, request.path_params["connection_id"]))

    async def update_connection(request: Request) -> Response:
        who = caller(request, manage=True)
        body = await parse_body(request, ConnectionUpdate, settings.max_body_bytes)
        return json_response(await svc().update(who, request.path_params["connection_id"], body))

    async def delete_connection(request: Request) -> Response:
        who = caller(request, manage=True)
        await svc().delete(who, request.path_params["connection_id"])
        return Response(status_code=204)

    async def test_connection(request: Request) -> Response:
        who = caller(request, manage=True)
        return json_response(await svc().test(who, request.path_params["connection_id"]))

    async def internal_connection(request: Request) -> Response:
        require_service(request, settings)
        return json_response(await svc().internal_by_id(request.path_params["connection_id"]))

    async def internal_webhook(request: Request) -> Response:
        require_service(request, settings)
        return json_response(await svc().internal_by_webhook_token(request.path_params["token"]))

    async def mongo_check() -> None:
        assert state.mongo is not None, "lifespan not started"
        await mongo_ready(state.mongo)

    async def kafka_check() -> None:
        if state.broker is None or not await state.broker.ping(timeout=3.0):
            raise ConnectionError("Kafka did not answer")

    checks: dict[str, Callable[[], Awaitable[None]]] = {"mongo": mongo_check, "kafka": kafka_check}
    routes = [
        Route(BASE, list_connections, methods=["GET"]),
        Route(BASE, create_connection, methods=["POST"]),
        Route(ONE, get_connection, methods=["GET"]),
        Route(ONE, update_connection, methods=["PATCH"]),
        Route(ONE, delete_connection, methods=["DELETE"]),
        Route(ONE + "/test", test_connection, methods=["POST"]),
        Route("/internal/connections/{connection_id}", internal_connection, methods=["GET"]),
        Route("/internal/webhooks/{token}", internal_webhook, methods=["GET"]),
        *standard_routes("connections", ENDPOINTS, checks),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, middleware=service_middleware(settings), exception_handlers=EXCEPTION_HANDLERS
    )
