"""Kafka entry: the results counter, a consumer of `engagement.events` on the shared
runtime (`liftstack_shared.consumer`). Offsets are committed only after a batch is
recorded or its poison message dead-lettered (to `engagement.events.deadletter`), so
a crash re-delivers, and recording is idempotent (insert-once, service.py)."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from liftstack_experiments.service import ExperimentsService
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy
from liftstack_shared.messages import EngagementEvent
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS

RESULTS_CONSUMER = "experiments.results"


def decode_event(record: ConsumerRecord[Any, Any]) -> EngagementEvent:
    return EngagementEvent.model_validate_json(record.value or b"")


def results_consumer(
    settings: ExperimentsSettings,
    service: ExperimentsService,
    group_id: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> ConsumerRuntime[EngagementEvent]:
    """`group_id`: default `LIFTSTACK_RESULTS_GROUP` (prefixed like every group)."""

    async def handle(deliveries: list[Delivery[EngagementEvent]]) -> None:
        await service.record_events([d.message for d in deliveries])

    return ConsumerRuntime(
        name=RESULTS_CONSUMER,
        bootstrap=settings.kafka_bootstrap,
        topics=[settings.topic(ENGAGEMENT_EVENTS.name)],
        group_id=settings.topic(group_id or settings.results_group),
        decode=decode_event,
        handle=handle,
        dead_letter_topic=settings.topic(ENGAGEMENT_DEADLETTER.name),
        policy=policy,
        # Small batches: FerretDB on SQLite has one writer per database, so short
        # writes keep the other services' writes from timing out (SQLITE_BUSY).
        max_batch=100,
        fetch_timeout_ms=1000,
    )
