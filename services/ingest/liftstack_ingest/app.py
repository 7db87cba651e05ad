"""The ingest service: webhook gateway + Events page, as one Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRecord
from starlette.applications import Starlette
from starlette.routing import Route

from liftstack_ingest.events_page import ENDPOINTS as EVENTS_ENDPOINTS
from liftstack_ingest.events_page import EventsPageApi, events_page_consumer, maintain
from liftstack_ingest.gateway import WEBHOOK_PATH, IterableWebhook, WebhookAccepted, WebhookGateway
from liftstack_ingest.lookup import ConnectionLookup
from liftstack_ingest.publisher import EventPublisher
from liftstack_ingest.read_model import ReadModel
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy
from liftstack_shared.http import EXCEPTION_HANDLERS, Endpoint, service_middleware, standard_routes
from liftstack_shared.messages import ConnectionChanged
from liftstack_shared.mongo import database, make_mongo_client, mongo_ready
from liftstack_shared.topics import CONNECTION_CHANGED, CONNECTION_CHANGED_DEADLETTER

log = logging.getLogger(__name__)

ENDPOINTS = [
    Endpoint(
        "POST",
        WEBHOOK_PATH,
        "Receive one Iterable system/journey webhook (secret in Authorization: "
        "Basic|OAuth2|Bearer <secret>, or X-Liftstack-Webhook-Secret).",
        request=IterableWebhook,
        response=WebhookAccepted,
        auth="webhook",
        tags=["webhooks"],
    ),
    *EVENTS_ENDPOINTS,
]


def create_app(settings: IngestSettings, connections: ConnectionLookup | None = None) -> Starlette:
    owned_client = None
    if connections is None:
        owned_client = ConnectionsClient(settings, ttl_s=settings.connections_cache_ttl_s)
        connections = owned_client
    publisher = EventPublisher(settings)
    mongo = make_mongo_client(settings)
    store = ReadModel(database(mongo, settings), timedelta(hours=settings.events_retention_hours))

    consumers: list[ConsumerRuntime[Any]] = [connection_changes_consumer(settings, connections)]
    if settings.events_consumer_enabled:
        consumers.append(events_page_consumer(settings, store))

    gateway = WebhookGateway(settings, connections, publisher)
    page = EventsPageApi(settings, connections, store)

    async def mongo_check() -> None:
        await mongo_ready(mongo)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(publisher.connect_forever(), name="kafka-connect")]
        for consumer in consumers:
            consumer.start()  # each waits out a Kafka outage itself
        if settings.events_consumer_enabled:
            tasks.append(
                asyncio.create_task(maintain(store, settings.events_prune_interval_s), name="events-maintenance")
            )
        if not await publisher.wait_connected(settings.kafka_connect_wait_s):
            log.warning("Kafka not reachable yet; webhooks answer 503 until it is")
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for consumer in consumers:
                await consumer.stop()
            await publisher.close()
            await mongo.close()
            if owned_client is not None:
                await owned_client.aclose()

    routes = [
        Route(WEBHOOK_PATH, gateway.handle, methods=["POST"]),
        *page.routes(),
        *standard_routes("ingest", ENDPOINTS, checks={"kafka": publisher.check, "mongo": mongo_check}),
    ]
    # The webhook route applies its own (smaller) cap after the secret check, so
    # the app-wide cap must not be below it.
    body_cap = max(settings.max_body_bytes, settings.webhook_max_body_bytes)
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=service_middleware(settings, body_cap),
    )


CONNECTION_LISTENER = "ingest.connection-changes"


def connection_changes_consumer(
    settings: IngestSettings, connections: ConnectionLookup, policy: RetryPolicy = RetryPolicy()
) -> ConsumerRuntime[ConnectionChanged]:
    """Drops cached connection settings when `connection.changed` says so.

    No consumer group: every gateway instance must see every change to drop its own
    cache entry. Only new changes matter (the cache TTL covers the rest)."""

    def decode(record: ConsumerRecord[Any, Any]) -> ConnectionChanged:
        return ConnectionChanged.model_validate_json(record.value or b"")

    async def invalidate(deliveries: list[Delivery[ConnectionChanged]]) -> None:
        for delivery in deliveries:
            connections.invalidate(delivery.message.connection_id)

    return ConsumerRuntime(
        name=CONNECTION_LISTENER,
        bootstrap=settings.kafka_bootstrap,
        topics=[settings.topic(CONNECTION_CHANGED.name)],
        group_id=None,
        start_at="latest",
        decode=decode,
        handle=invalidate,
        dead_letter_topic=settings.topic(CONNECTION_CHANGED_DEADLETTER.name),
        policy=policy,
    )
