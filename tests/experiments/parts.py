"""The experiments service's objects built on the test session's settings."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo import AsyncMongoClient

from liftstack_experiments.assigner import AssignmentPublisher
from liftstack_experiments.downstream import Downstream
from liftstack_experiments.loop import CampaignLoop
from liftstack_experiments.service import ExperimentsService
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_experiments.store import CampaignStore, ResultsStore
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.settings import CommonSettings


def as_experiments(settings: CommonSettings, **overrides: object) -> ExperimentsSettings:
    return ExperimentsSettings(**{**settings.model_dump(exclude={"port"}), **overrides})


@dataclass
class Parts:
    settings: ExperimentsSettings
    campaigns: CampaignStore
    results: ResultsStore
    service: ExperimentsService


async def build_parts(settings: ExperimentsSettings, mongo_client: AsyncMongoClient) -> Parts:
    """The stores and the service as app.py wires them (the loop's HTTP and Kafka
    clients are built but not started: these tests don't drive the loop)."""
    db = mongo_client[settings.experiments_db]
    campaigns, results = CampaignStore(db), ResultsStore(db)
    await campaigns.ensure_indexes()
    await results.ensure_indexes()
    downstream = Downstream(settings, ConnectionsClient(settings))
    loop = CampaignLoop(settings, campaigns, downstream, AssignmentPublisher(settings))
    return Parts(
        settings,
        campaigns,
        results,
        ExperimentsService(campaigns, results, loop, settings.writeback_profiles_per_second),
    )
