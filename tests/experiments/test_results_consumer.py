"""The results consumer on the shared runtime, on real Kafka and the MongoDB-wire
server: poison messages are dead-lettered with their reason and the consumer goes on
(normal events after them are counted within 10 s, then it is idle); a re-sent event
(same event_id) and a re-delivered one (group rewound) leave every count unchanged."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from pymongo import AsyncMongoClient

from liftstack_experiments.campaigns import AssignmentSection, Campaign, CampaignCreate, SendSection, Variant
from liftstack_experiments.consumers import RESULTS_CONSUMER, results_consumer
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.consumer import RetryPolicy
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.messages import EngagementEvent, EventType
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS
from tests.experiments.parts import Parts, as_experiments, build_parts
from tests.fixtures.kafka_tools import assert_idle, dead_letters, produce, rewind_group, wait_for

FAST = RetryPolicy(attempts=3, retry_initial_s=0.05, retry_max_s=0.2)


@pytest.fixture
async def private(kafka_topics: CommonSettings) -> ExperimentsSettings:
    """This test's own topics (the session's engagement.events has other consumers,
    e.g. the live stack's experiments service, and other tests' messages), the
    session database."""
    settings = as_experiments(kafka_topics, topic_prefix=f"{kafka_topics.topic_prefix}rc{uuid.uuid4().hex[:6]}.")
    await ensure_topics(settings, (ENGAGEMENT_EVENTS, ENGAGEMENT_DEADLETTER))
    return settings


async def _campaign(parts: Parts, conn: str, iterable_id: int) -> Campaign:
    campaigns = parts.campaigns
    body = CampaignCreate(
        name="R",
        key=f"res_{uuid.uuid4().hex[:6]}",
        connection_id=conn,
        control="A",
        variants=[Variant(name="A", subject="a", html="a"), Variant(name="B", subject="b", html="b")],
    )
    created = await campaigns.create("ws", "u", body)
    await campaigns.set_sections(
        created.id,
        send=SendSection(iterable_campaign_id=iterable_id, status="sent", at=datetime.now(UTC)),
        assignment=AssignmentSection(status="completed", job_id="j", counts={"A": 0, "B": 0}, identity="email"),
    )
    found = await campaigns.get_by_id(created.id)
    assert found is not None
    return found


def _event(conn: str, email: str, event_id: str, campaign_id: int, kind: EventType = EventType.OPEN) -> EngagementEvent:
    return EngagementEvent(
        event_id=event_id,
        workspace_id="ws",
        connection_id=conn,
        event_type=kind,
        iterable_event_name="emailOpen",
        email=email,
        campaign_id=campaign_id,
        occurred_at=datetime.now(UTC),
    )


async def test_poison_events_are_dead_lettered_and_the_next_event_is_counted_within_10s(
    private: ExperimentsSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = private
    parts = await build_parts(settings, mongo_client)
    store = parts.results
    conn = f"conn-{uuid.uuid4().hex[:6]}"
    campaign = await _campaign(parts, conn, 4242)
    marker = uuid.uuid4().hex[:8]
    overflow = _event(conn, "big@example.com", f"ev-big-{marker}", 1).model_dump(mode="json")
    overflow["campaign_id"] = 10**40  # the webhook: a valid JSON number, not an int64
    topic = settings.topic(ENGAGEMENT_EVENTS.name)
    key = f"{conn}:poison".encode()
    landed = await produce(
        settings,
        topic,
        [
            (key, b"{not json " + marker.encode()),
            (key, json.dumps({"event_id": marker}).encode()),
            (key, json.dumps(overflow).encode()),
            (key, _event(conn, "ok@example.com", f"ev-ok-{marker}", 4242).to_bytes()),
        ],
        partition=0,
    )

    consumer = results_consumer(settings, parts.service, f"results-{uuid.uuid4().hex[:6]}", policy=FAST)
    consumer.start()
    try:

        async def counted():
            return await store.counts(campaign.id)

        counts, took = await wait_for(counted, 10.0, "the normal event after the poison ones")
        assert sum(counts.values()) == 1 and took < 10.0

        poison_offsets = {m.offset for m in landed[:3]}

        async def letters():
            found = await dead_letters(settings, settings.topic(ENGAGEMENT_DEADLETTER.name))
            return found if len(found) >= 3 else None

        found, _ = await wait_for(letters, 10.0, "three dead letters")
        assert len(found) == 3 and all(item.consumer == RESULTS_CONSUMER for item in found)
        assert {item.offset for item in found} == poison_offsets
        assert all(item.source_topic == topic and item.partition == 0 for item in found)
        by_offset = {item.offset: item for item in found}
        bad_json, bad_schema, too_big = (by_offset[m.offset] for m in landed[:3])
        assert bad_json.reason_class == "validation" and marker in bad_json.payload
        assert bad_schema.reason_class == "validation" and "invalid message" in bad_schema.reason
        # Either the contract refuses the out-of-range id, or storage does (after retries).
        assert too_big.reason_class in {"validation", "overflow"}, too_big.reason
        if too_big.reason_class == "overflow":
            assert too_big.attempts == FAST.attempts and "8-byte ints" in too_big.reason
        assert all(item.key == key.decode() for item in found)
        await assert_idle(consumer, settings, [topic])
        assert len(await dead_letters(settings, settings.topic(ENGAGEMENT_DEADLETTER.name))) == 3
    finally:
        await consumer.stop()


async def test_a_re_sent_and_a_re_delivered_event_are_counted_once(
    private: ExperimentsSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = private
    parts = await build_parts(settings, mongo_client)
    store = parts.results
    conn = f"conn-{uuid.uuid4().hex[:6]}"
    campaign = await _campaign(parts, conn, 5151)
    topic = settings.topic(ENGAGEMENT_EVENTS.name)
    marker = uuid.uuid4().hex[:8]
    sends = [_event(conn, f"p{i}@example.com", f"s{i}-{marker}", 5151, EventType.SEND) for i in range(6)]
    opened = _event(conn, "p0@example.com", f"o0-{marker}", 5151)
    # The "503 but stored" case: the same event (same event_id) published twice.
    items = [(f"{conn}:{e.email}".encode(), e.to_bytes()) for e in [*sends, opened, opened]]
    landed = await produce(settings, topic, items)

    group = f"results-{uuid.uuid4().hex[:6]}"
    consumer = results_consumer(settings, parts.service, group, policy=FAST)
    consumer.start()
    try:

        async def all_counted():
            counts = await store.counts(campaign.id)
            return counts if sum(counts.values()) >= 7 else None

        await wait_for(all_counted, 30.0, "7 unique (recipient, type) pairs")
        await assert_idle(consumer, settings, [topic])
    finally:
        await consumer.stop()
    counts_before = await store.counts(campaign.id)
    events_before = await store.event_total(campaign.id)
    assert sum(counts_before.values()) == 7 and events_before == 7  # 6 sends + 1 open, once

    # Re-delivery: rewind the group to before our events and consume them again.
    earliest: dict[TopicPartition, int] = {}
    for m in landed:
        tp = TopicPartition(topic, m.partition)
        earliest[tp] = min(earliest.get(tp, m.offset), m.offset)
    await rewind_group(settings, settings.topic(group), earliest)
    again = results_consumer(settings, parts.service, group, policy=FAST)
    again.start()
    try:

        async def redelivered():
            return again.stats.processed >= len(items) or None

        await wait_for(redelivered, 30.0, "the rewound events consumed again")
        await assert_idle(again, settings, [topic])
    finally:
        await again.stop()
    assert await store.counts(campaign.id) == counts_before
    assert await store.event_total(campaign.id) == events_before
