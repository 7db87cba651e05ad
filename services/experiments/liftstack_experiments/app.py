"""The composition root: builds the experiments service's objects and wires them
into a Starlette app. No handlers or rules here (api.py, service.py, loop.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette

from liftstack_experiments.api import ENDPOINTS, ROUTES, Deps
from liftstack_experiments.assigner import AssignmentPublisher
from liftstack_experiments.consumers import results_consumer
from liftstack_experiments.downstream import Downstream
from liftstack_experiments.iterable_probe import ReadBackProbe
from liftstack_experiments.loop import CampaignLoop
from liftstack_experiments.service import ExperimentsService
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_experiments.store import CampaignStore, ResultsStore
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.health import mongo_check, producer_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.mongo import make_mongo_client
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS


def create_app(
    settings: ExperimentsSettings,
    run_consumer: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """`run_consumer`: run the results consumer (tests of the API alone turn it off).
    `transport`: the HTTP transport to the other services (tests)."""
    mongo = make_mongo_client(settings)
    db = mongo[settings.experiments_db]
    campaigns, results = CampaignStore(db), ResultsStore(db)
    publisher = AssignmentPublisher(settings)
    connections = ConnectionsClient(settings)
    downstream = Downstream(settings, connections, transport)
    loop = CampaignLoop(settings, campaigns, downstream, publisher)
    probe = ReadBackProbe(settings, connections)
    service = ExperimentsService(
        campaigns, results, loop, settings.writeback_profiles_per_second, probe, settings.readiness_settle_s
    )
    consumer = results_consumer(settings, service)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await campaigns.ensure_indexes()
        await results.ensure_indexes()
        await ensure_topics(settings, (CAMPAIGN_ASSIGNMENTS, ENGAGEMENT_EVENTS, ENGAGEMENT_DEADLETTER))
        await publisher.start()
        if run_consumer:
            consumer.start()
        try:
            yield
        finally:
            await consumer.stop()
            await loop.background.cancel_all()
            await publisher.stop()
            await downstream.aclose()
            await mongo.close()

    checks = {"mongo": mongo_check(lambda: mongo), "kafka": producer_check(lambda: publisher.producer)}
    app = Starlette(
        routes=[*ROUTES, *standard_routes("experiments", ENDPOINTS, checks)],
        lifespan=lifespan,
        middleware=service_middleware(settings),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.deps = Deps(settings, service, loop)
    app.state.results_consumer = consumer
    return app
