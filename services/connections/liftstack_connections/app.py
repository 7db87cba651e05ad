"""The composition root of the connections service: builds the adapters, the service
and the routes, and starts/stops them in the lifespan (nothing else lives here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from liftstack_connections.api import ENDPOINTS, ROUTES, Deps
from liftstack_connections.crypto import CredentialCipher
from liftstack_connections.iterable_probe import EventHooks, IterableProbe
from liftstack_connections.publisher import EventPublisher
from liftstack_connections.service import ConnectionService
from liftstack_connections.settings import ConnectionsSettings
from liftstack_connections.store import ConnectionStore
from liftstack_shared.health import broker_check, mongo_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.kafka import ensure_topics, make_broker
from liftstack_shared.mongo import database, make_mongo_client
from liftstack_shared.topics import CONNECTION_CHANGED


def create_app(settings: ConnectionsSettings, probe_hooks: EventHooks | None = None) -> Starlette:
    """`probe_hooks`: httpx event hooks for the Iterable probe (tests observe requests)."""
    cipher = CredentialCipher(settings.master_keys.get_secret_value())  # fails fast if unset
    mongo = make_mongo_client(settings)
    store = ConnectionStore(database(mongo, settings))
    broker = make_broker(settings, "connections")
    probe = IterableProbe(settings.iterable_base_url, settings.test_timeout_s, probe_hooks)
    service = ConnectionService(settings, store, cipher, EventPublisher(broker, settings), probe)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await store.ensure_indexes()
            await ensure_topics(settings, (CONNECTION_CHANGED,))
            await broker.start()
            yield
        finally:
            await broker.stop()
            await mongo.close()

    checks = {"mongo": mongo_check(lambda: mongo), "kafka": broker_check(lambda: broker)}
    app = Starlette(
        routes=[*ROUTES, *standard_routes("connections", ENDPOINTS, checks)],
        lifespan=lifespan,
        middleware=service_middleware(settings),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.deps = Deps(settings=settings, service=service)
    return app
