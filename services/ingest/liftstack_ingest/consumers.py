"""Ingest's Kafka entry: the Events page consumer and the `connection.changed`
listener, both on the shared consumer runtime (`liftstack_shared.consumer`).

The Events page consumer reads `engagement.events` (published events),
`ingest.observations` (filtered, unknown and rejected requests) and
`engagement.events.deadletter` (what any consumer of events could not process: shown
as "failed downstream" with the reason) in batches, in one consumer group, writes
the batch to MongoDB and only then commits the offsets. A message that breaks its
contract, or that storage refuses after the runtime's retries, goes to
`engagement.events.deadletter` with the reason; an outage of MongoDB or Kafka pauses
the consumer (backoff) and dead-letters nothing.
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from liftstack_ingest import metrics
from liftstack_ingest.events import Entry, to_entry
from liftstack_ingest.lookup import ConnectionLookup
from liftstack_ingest.settings import IngestSettings
from liftstack_ingest.store import EventsStore
from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy
from liftstack_shared.messages import ConnectionChanged
from liftstack_shared.topics import (
    CONNECTION_CHANGED,
    CONNECTION_CHANGED_DEADLETTER,
    ENGAGEMENT_DEADLETTER,
    ENGAGEMENT_EVENTS,
    INGEST_OBSERVATIONS,
)

CONSUMER_NAME = "ingest.events-page"
CONNECTION_LISTENER = "ingest.connection-changes"
# Every gateway instance runs the Events page consumer in one group: when one joins or
# leaves, the batch in hand is finished and committed before its partitions move, so
# the next owner does not count it again (see `ConsumerRuntime`'s `revoke_grace_s`).
REVOKE_GRACE_S = 8.0


def events_page_consumer(
    settings: IngestSettings,
    store: EventsStore,
    *,
    group_id: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> ConsumerRuntime[Entry | None]:
    events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
    deadletter_topic = settings.topic(ENGAGEMENT_DEADLETTER.name)

    def decode(record: ConsumerRecord[Any, Any]) -> Entry | None:
        return to_entry(record, events_topic, deadletter_topic)

    async def apply_batch(deliveries: list[Delivery[Entry | None]]) -> None:
        result = await store.apply([d.message for d in deliveries if d.message is not None])
        metrics.READ_MODEL_EVENTS.labels("counted").inc(result.counted)
        metrics.READ_MODEL_EVENTS.labels("duplicate").inc(result.duplicates)

    return ConsumerRuntime(
        name=CONSUMER_NAME,
        bootstrap=settings.kafka_bootstrap,
        topics=[events_topic, settings.topic(INGEST_OBSERVATIONS.name), deadletter_topic],
        group_id=group_id or settings.topic(CONSUMER_NAME),
        decode=decode,
        handle=apply_batch,
        dead_letter_topic=deadletter_topic,
        policy=policy,
        max_batch=settings.events_consumer_batch,
        fetch_timeout_ms=200,
        revoke_grace_s=REVOKE_GRACE_S,
    )


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
