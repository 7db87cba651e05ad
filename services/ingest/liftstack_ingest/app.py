"""The composition root: builds the ingest service (webhook gateway + Events page)
as one Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient
from starlette.applications import Starlette

from liftstack_ingest.api import ENDPOINTS, ROUTES, Deps
from liftstack_ingest.consumers import connection_changes_consumer, events_page_consumer
from liftstack_ingest.lookup import ConnectionLookup
from liftstack_ingest.publisher import EventPublisher
from liftstack_ingest.service import EventsPage, WebhookService
from liftstack_ingest.settings import IngestSettings
from liftstack_ingest.store import EventsStore
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.consumer import ConsumerRuntime
from liftstack_shared.health import mongo_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.mongo import database, make_mongo_client

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings, connections: ConnectionLookup | None = None) -> Starlette:
    """`connections`: a connections to use instead of the connections service (tests)."""
    owned_client: ConnectionsClient | None = None
    if connections is None:
        connections = owned_client = ConnectionsClient(settings, ttl_s=settings.connections_cache_ttl_s)
    publisher = EventPublisher(settings)
    mongo = make_mongo_client(settings)
    store = EventsStore(database(mongo, settings), timedelta(hours=settings.events_retention_hours))

    webhooks = WebhookService(settings, connections, publisher)
    page = EventsPage(connections, store)

    consumers: list[ConsumerRuntime[Any]] = [connection_changes_consumer(settings, connections)]
    if settings.events_consumer_enabled:
        consumers.append(events_page_consumer(settings, store))

    checks = {"kafka": publisher.check, "mongo": mongo_check(lambda: mongo)}
    app = Starlette(
        routes=[*ROUTES, *standard_routes("ingest", ENDPOINTS, checks)],
        lifespan=lambda app: _running(settings, publisher, consumers, page, mongo, owned_client),
        exception_handlers=EXCEPTION_HANDLERS,
        # The webhook route applies its own (smaller) cap after the secret check, so
        # the app-wide cap must not be below it.
        middleware=service_middleware(settings, max(settings.max_body_bytes, settings.webhook_max_body_bytes)),
    )
    app.state.deps = Deps(settings=settings, webhooks=webhooks, page=page)
    return app


@contextlib.asynccontextmanager
async def _running(
    settings: IngestSettings,
    publisher: EventPublisher,
    consumers: list[ConsumerRuntime[Any]],
    page: EventsPage,
    mongo: AsyncMongoClient[Any],
    owned_client: ConnectionsClient | None,
) -> AsyncIterator[None]:
    """Start in order, stop in reverse. Kafka and MongoDB may be away: everything
    waits them out in the background, and webhooks answer 503 until Kafka is there."""
    publisher.start()
    for consumer in consumers:
        consumer.start()
    maintenance = None
    if settings.events_consumer_enabled:
        maintenance = asyncio.create_task(page.maintain(settings.events_prune_interval_s), name="events-maintenance")
    if not await publisher.wait_connected(settings.kafka_connect_wait_s):
        log.warning("Kafka not reachable yet; webhooks answer 503 until it is")
    try:
        yield
    finally:
        if maintenance is not None:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        for consumer in reversed(consumers):
            await consumer.stop()
        await publisher.close()
        await mongo.close()
        if owned_client is not None:
            await owned_client.aclose()
