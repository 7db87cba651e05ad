"""The composition root of the audiences service: builds the adapters, the sync
runner, the service and the routes, and starts/stops them in the lifespan (nothing
else lives here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from liftstack_audiences.api import ENDPOINTS, ROUTES, Deps
from liftstack_audiences.publisher import AudiencePublisher
from liftstack_audiences.runner import ClientFactory, SyncRunner
from liftstack_audiences.service import AudienceService
from liftstack_audiences.settings import AudiencesSettings
from liftstack_audiences.state import remove_expired
from liftstack_audiences.store import SizeCache, SyncStore
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import ConnectionsServiceCredentials, CredentialsSource, IterableCredentials
from liftstack_shared.health import broker_check, mongo_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.iterable import IterableClient
from liftstack_shared.kafka import make_broker
from liftstack_shared.mongo import database, make_mongo_client


def create_app(
    settings: AudiencesSettings,
    credentials: CredentialsSource | None = None,
    client_factory: ClientFactory | None = None,
) -> Starlette:
    """`credentials`: where connection keys come from (default: the connections
    service). `client_factory`: how to build an Iterable client for a key (default:
    from settings, i.e. Iterable or LIFTSTACK_ITERABLE_BASE_URL's sandbox)."""
    creds = credentials or ConnectionsServiceCredentials(ConnectionsClient(settings))

    def clients_from_settings(c: IterableCredentials) -> IterableClient:
        return IterableClient.from_settings(settings, c.api_key, c.region)

    clients = client_factory or clients_from_settings
    mongo = make_mongo_client(settings)
    store, sizes = SyncStore(database(mongo, settings)), SizeCache(database(mongo, settings))
    broker = make_broker(settings, "audiences")
    runner = SyncRunner(settings, store, sizes, creds, AudiencePublisher(broker, settings), clients)
    service = AudienceService(settings, store, sizes, creds, clients, runner)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        remove_expired(settings.audience_state_dir, settings.audience_state_retention_s)
        try:
            await store.ensure_indexes()
            await broker.start()
            yield
        finally:
            await runner.close()
            await broker.stop()
            await creds.aclose()
            await mongo.close()

    checks = {"kafka": broker_check(lambda: broker), "mongo": mongo_check(lambda: mongo)}
    app = Starlette(
        routes=[*ROUTES, *standard_routes("audiences", ENDPOINTS, checks)],
        lifespan=lifespan,
        middleware=service_middleware(settings),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.deps = Deps(settings=settings, service=service)
    return app
