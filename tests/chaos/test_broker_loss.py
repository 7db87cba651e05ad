"""A Kafka node killed (SIGKILL) and restarted during a webhook burst and a writeback
job: nothing acknowledged is lost, nothing is counted twice, writeback's counts are
exact and Iterable sees no 429 storm. The figures are printed (pytest -s, or the
report section of a failure); bench/chaos_brokers.py runs longer versions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from liftstack_shared.settings import CommonSettings
from tests.chaos.cluster import KafkaCluster
from tests.chaos.scenario import broker_loss
from tests.fixtures.sandbox import SandboxHandle

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@pytest.fixture
async def cluster() -> AsyncIterator[KafkaCluster]:
    cluster = KafkaCluster()
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.timeout(420)
async def test_leader_loss_during_webhooks_and_writeback(
    cluster: KafkaCluster, settings: CommonSettings, sandbox: SandboxHandle, mongo_client
) -> None:
    report = await broker_loss(cluster, settings, sandbox, webhooks=2000, profiles=50_000)
    print("\n".join(["", "chaos: broker loss", *report.lines()]))

    # The node killed led partitions of the busy topics.
    assert report.leaders_before[report.killed_node] >= 1
    # Every webhook was eventually acknowledged, and every acknowledged event is stored.
    assert report.acked == report.webhooks
    assert report.lost == []
    assert report.stored_distinct == report.webhooks
    # A retried request may have stored its event twice; the read model counts it once.
    assert report.read_model_published == report.webhooks
    # The gateway answered 503 (never a 2xx for an unstored event) and recovered.
    assert {a.status for a in report.errors} <= {503, None}
    assert report.ingest_recovery_seconds < 60
    # Writeback: exact, and no 429 storm.
    assert (report.written, report.succeeded, report.failed) == (report.profiles, report.profiles, 0)
    assert report.sandbox_profiles == report.profiles
    assert report.bulk_update_statuses.get(429, 0) <= 3, report.bulk_update_statuses
