"""The composition root: one writeback instance's parts, wired in order, and the
Starlette app whose lifespan starts and stops them."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from starlette.applications import Starlette

from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import ConnectionsServiceCredentials, CredentialsSource
from liftstack_shared.health import mongo_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.iterable import Endpoint, Limit
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.mongo import database, make_mongo_client
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER
from liftstack_writeback.api import ENDPOINTS, ROUTES, Deps
from liftstack_writeback.clients import IterableClients
from liftstack_writeback.consumers import OrderedConsumer, assignments_consumer, kafka_check
from liftstack_writeback.pacer import Pacer
from liftstack_writeback.progress import ProgressTracker
from liftstack_writeback.publisher import Publisher
from liftstack_writeback.service import WritebackService
from liftstack_writeback.settings import WritebackSettings
from liftstack_writeback.store import JobStore, PacerSlotStore
from liftstack_writeback.writer import BatchWriter, WriterPolicy


@dataclass
class WritebackInstance:
    """Everything one writeback instance runs. `create_app` serves it; tests and the
    benchmark run it without HTTP (`build`, then `start`)."""

    settings: WritebackSettings
    name: str  # names this process in outcome documents (who wrote which batch)
    credentials: CredentialsSource
    mongo: AsyncMongoClient[dict[str, Any]]
    store: JobStore
    publisher: Publisher
    clients: IterableClients
    progress: ProgressTracker
    service: WritebackService
    consumer: OrderedConsumer
    consuming: bool = False

    @classmethod
    def build(cls, settings: WritebackSettings, credentials: CredentialsSource | None = None) -> WritebackInstance:
        """`credentials`: where Iterable keys come from (default: the connections service)."""
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        credentials = credentials or ConnectionsServiceCredentials(ConnectionsClient(settings))
        mongo = make_mongo_client(settings)
        db = database(mongo, settings)
        store = JobStore(db)
        pacer = Pacer(
            PacerSlotStore(db["writeback_pacer"]),
            headroom=settings.iterable_rate_headroom,
            limits={Endpoint.BULK_UPDATE: Limit(settings.writeback_bulk_update_rate, 1)},
            retention_s=settings.writeback_pacer_retention_s,
        )
        publisher = Publisher(settings)
        clients = IterableClients(settings, credentials, pacer)
        progress = ProgressTracker(store, settings.writeback_progress_interval)
        writer = BatchWriter(
            WriterPolicy(settings.writeback_rate_limit_base_delay, settings.writeback_rate_limit_max_delay)
        )
        service = WritebackService(
            store=store, clients=clients, writer=writer, progress=progress, publisher=publisher, instance=name
        )
        consumer = assignments_consumer(settings, service, publisher)
        return cls(settings, name, credentials, mongo, store, publisher, clients, progress, service, consumer)

    async def start(self, consume: bool = True) -> None:
        """`consume=False`: everything but the consumer (the API alone, observers)."""
        await self.store.setup()
        await ensure_topics(self.settings, (CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER))
        await self.publisher.start()
        if consume:
            await self.consumer.start()
        self.consuming = consume

    async def stop(self) -> None:
        """Graceful: in-flight batches finish and are committed."""
        if self.consuming:
            await self.consumer.stop()
        await self._close()

    async def abort(self) -> None:
        """Crash-like (tests): in-flight work is dropped, nothing more is committed."""
        if self.consuming:
            await self.consumer.abort()
        await self._close()

    async def _close(self) -> None:
        await self.progress.aclose()
        await self.clients.aclose()
        await self.publisher.stop()
        await self.credentials.aclose()
        await self.mongo.close()


def create_app(
    settings: WritebackSettings,
    credentials: CredentialsSource | None = None,
    *,
    consume: bool = True,
) -> Starlette:
    """`credentials`: where Iterable keys come from (default: the connections
    service). `consume=False` serves the API without consuming (tools, tests)."""
    instance = WritebackInstance.build(settings, credentials)
    checks = {
        "kafka": kafka_check(instance.consumer, instance.publisher),
        "mongo": mongo_check(lambda: instance.mongo),
    }

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await instance.start(consume=consume)
        try:
            yield
        finally:
            await instance.stop()

    app = Starlette(
        routes=[*ROUTES, *standard_routes("writeback", ENDPOINTS, checks)],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=service_middleware(settings),
        lifespan=lifespan,
    )
    app.state.deps = Deps(settings=settings, service=instance.service)
    return app
