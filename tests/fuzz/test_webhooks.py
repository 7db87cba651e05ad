"""Seeded webhook fuzz against a real gateway (uvicorn, real Kafka, real MongoDB),
with both consumers of `engagement.events` running: the gateway's Events page
consumer and the experiments service's results consumer. Pass criteria: tests/fuzz/webhook_run.py.
The long run is bench/fuzz_webhooks.py (>= 50,000 bodies)."""

from __future__ import annotations

import secrets

import pytest

from liftstack_experiments.app import create_app as create_experiments
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_ingest.app import create_app as create_gateway
from liftstack_ingest.consumers import CONSUMER_NAME
from liftstack_ingest.lookup import InMemoryConnections
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS
from tests.fixtures.asgi import serve_asgi
from tests.fuzz.webhook_run import (
    consumer_lag,
    dead_lettered_event_ids,
    fuzz_connection,
    generate_bodies,
    missing_from,
    post_bodies,
    wait_until_processed,
)

pytestmark = pytest.mark.integration

CASES = 400
SEED = 20261201


async def test_fuzzed_webhooks_never_5xx_match_the_schema_and_are_all_processed(kafka_topics, mongo_client):
    token, secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    connection = fuzz_connection("conn_fuzz", "ws_fuzz", "Fuzz", secret)
    common = kafka_topics.model_dump(exclude={"port"})
    gateway_settings = IngestSettings(**common, events_prune_interval_s=3600)
    experiments_settings = ExperimentsSettings(**common)
    bodies = generate_bodies(CASES, SEED)

    with (
        serve_asgi(create_gateway(gateway_settings, InMemoryConnections({token: connection}))) as gateway,
        serve_asgi(create_experiments(experiments_settings)),
    ):
        report = await post_bodies(
            gateway,
            f"/webhooks/iterable/{token}",
            {"Authorization": f"Bearer {secret}"},
            bodies,
            concurrency=8,
        )
        print(f"\nwebhook fuzz: {report.summary()}")
        assert report.cases == CASES
        assert report.server_errors == []
        assert report.transport_errors == []
        assert report.schema_violations == []
        assert report.statuses.keys() <= {200, 400}, report.statuses  # Kafka is up: no 503
        assert len(report.published) >= 20, report.summary()

        consumers = {
            gateway_settings.topic(CONSUMER_NAME): "ingest_events",
            experiments_settings.topic(experiments_settings.results_group): "result_events",
        }
        databases = {
            "ingest_events": mongo_client[gateway_settings.mongo_db],
            "result_events": mongo_client[experiments_settings.experiments_db],
        }

        async def unprocessed() -> dict[str, set[str]]:
            letters = await dead_lettered_event_ids(
                kafka_topics.kafka_bootstrap, kafka_topics.topic(ENGAGEMENT_DEADLETTER.name)
            )
            gaps = {}
            for group, collection in consumers.items():
                missing = await missing_from(databases[collection], collection, report.published)
                missing -= letters.get(group, set())
                if missing:
                    gaps[group] = missing
            return gaps

        assert await wait_until_processed(unprocessed, timeout_s=90) == {}

        async def lagging() -> dict[str, int]:
            topics = {
                gateway_settings.topic(CONSUMER_NAME): [
                    kafka_topics.topic(ENGAGEMENT_EVENTS.name),
                    kafka_topics.topic(INGEST_OBSERVATIONS.name),
                ],
                experiments_settings.topic(experiments_settings.results_group): [
                    kafka_topics.topic(ENGAGEMENT_EVENTS.name)
                ],
            }
            lags = {g: await consumer_lag(kafka_topics.kafka_bootstrap, g, t) for g, t in topics.items()}
            return {g: lag for g, lag in lags.items() if lag}

        assert await wait_until_processed(lagging, timeout_s=60) == {}
