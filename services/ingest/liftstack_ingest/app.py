"""The ingest service: webhook gateway + Events page, as one Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from faststream.kafka import KafkaBroker
from starlette.applications import Starlette
from starlette.routing import Route

from liftstack_ingest.events_page import ENDPOINTS as EVENTS_ENDPOINTS
from liftstack_ingest.events_page import EventsPageApi, maintain, register_consumer
from liftstack_ingest.gateway import WEBHOOK_PATH, IterableWebhook, WebhookAccepted, WebhookGateway
from liftstack_ingest.lookup import ConnectionLookup
from liftstack_ingest.publisher import EventPublisher
from liftstack_ingest.read_model import ReadModel
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.http import EXCEPTION_HANDLERS, Endpoint, service_middleware, standard_routes
from liftstack_shared.kafka import make_broker
from liftstack_shared.messages import ConnectionChanged
from liftstack_shared.mongo import database, make_mongo_client, mongo_ready
from liftstack_shared.topics import CONNECTION_CHANGED

log = logging.getLogger(__name__)

ENDPOINTS = [
    Endpoint(
        "POST", WEBHOOK_PATH,
        "Receive one Iterable system/journey webhook (secret in Authorization: "
        "Basic|OAuth2|Bearer <secret>, or X-Liftstack-Webhook-Secret).",
        request=IterableWebhook, response=WebhookAccepted, auth="webhook", tags=["webhooks"],
    ),
    *EVENTS_ENDPOINTS,
]


def create_app(
    settings: IngestSettings, connections: ConnectionLookup | None = None
) -> Starlette:
    owned_client = None
    if connections is None:
        owned_client = ConnectionsClient(settings, ttl_s=settings.connections_cache_ttl_s)
        connections = owned_client
    broker = make_broker(settings, "ingest")
    publisher = EventPublisher(broker, settings)
    mongo = make_mongo_client(settings)
    store = ReadModel(database(mongo, settings), timedelta(hours=settings.events_retention_hours))

    _register_connection_changes(broker, settings, connections)
    if settings.events_consumer_enabled:
        register_consumer(broker, settings, store)

    gateway = WebhookGateway(settings, connections, publisher)
    page = EventsPageApi(settings, connections, store)

    async def mongo_check() -> None:
        await mongo_ready(mongo)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(publisher.connect_forever(), name="kafka-connect")]
        if settings.events_consumer_enabled:
            tasks.append(asyncio.create_task(
                maintain(store, settings.events_prune_interval_s), name="events-maintenance"
            ))
        if not await publisher.wait_connected(settings.kafka_connect_wait_s):
            log.warning("Kafka not reachable yet; webhooks answer 503 until it is")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await publisher.close()
            await mongo.close()
            if owned_client is not None:
                await owned_client.aclose()

    routes = [
        Route(WEBHOOK_PATH, gateway.handle, methods=["POST"]),
        *page.routes(),
        *standard_routes(
            "ingest", ENDPOINTS, checks={"kafka": publisher.check, "mongo": mongo_check}
        ),
    ]
    # The webhook route applies its own (smaller) cap after the secret check, so
    # the app-wide cap must not be below it.
    body_cap = max(settings.max_body_bytes, settings.webhook_max_body_bytes)
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS,
        middleware=service_middleware(settings, body_cap),
    )


def _register_connection_changes(
    broker: KafkaBroker, settings: IngestSettings, connections: ConnectionLookup
) -> None:
    # No consumer group: every gateway instance must see every change to drop its
    # own cache entry. Only new changes matter (the cache TTL covers the rest).
    @broker.subscriber(settings.topic(CONNECTION_CHANGED.name), auto_offset_reset="latest")
    async def on_connection_changed(change: ConnectionChanged) -> None:
        connections.invalidate(change.connection_id)
