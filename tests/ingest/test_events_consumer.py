"""The Events page consumer on the shared runtime (real Kafka, real MongoDB-wire
server): poison messages are dead-lettered with their reason and shown as "failed
downstream"; a normal event after them is counted within 10 s; the consumer is idle
afterwards; re-sent and re-delivered events (same event_id) are counted once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from liftstack_ingest.consumers import CONSUMER_NAME, events_page_consumer
from liftstack_ingest.settings import IngestSettings
from liftstack_ingest.store import EventsStore
from liftstack_shared.consumer import RetryPolicy
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.messages import EngagementEvent, EventType, IngestObservation, IngestOutcome
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS
from tests.fixtures.kafka_tools import assert_idle, dead_letters, produce, rewind_group, wait_for
from tests.ingest.conftest import eventually, ingest_settings_from, summary_of, window

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, retry_initial_s=0.05, retry_max_s=0.2)


@pytest.fixture
async def private(kafka_topics, mongo_client) -> AsyncIterator[IngestSettings]:
    """Topics and a database of this test alone, so counts and offsets are exact."""
    run = uuid.uuid4().hex[:6]
    settings = ingest_settings_from(
        kafka_topics, topic_prefix=f"{kafka_topics.topic_prefix}ev{run}.", mongo_db=f"{kafka_topics.mongo_db}_ev{run}"
    )
    await ensure_topics(settings, (ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS, ENGAGEMENT_DEADLETTER))
    yield settings
    await mongo_client.drop_database(settings.mongo_db)


def _event(conn: str, event_id: str, email: str = "a@example.com") -> EngagementEvent:
    return EngagementEvent(
        event_id=event_id,
        workspace_id="ws1",
        connection_id=conn,
        event_type=EventType.OPEN,
        iterable_event_name="emailOpen",
        email=email,
        campaign_id=1,
        occurred_at=datetime.now(UTC),
    )


def _topics(settings: IngestSettings) -> list[str]:
    return [settings.topic(t.name) for t in (ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS, ENGAGEMENT_DEADLETTER)]


async def test_poison_messages_are_dead_lettered_shown_and_the_next_event_counted_within_10s(
    private: IngestSettings, mongo_client
) -> None:
    settings = private
    store = EventsStore(mongo_client[settings.mongo_db], retention=timedelta(days=7))
    await store.ensure_indexes()
    conn = f"conn_{uuid.uuid4().hex[:8]}"
    events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
    too_big = _event(conn, "ev_big").model_dump(mode="json")
    too_big["campaign_id"] = 10**40  # valid JSON, not an int64: the webhook
    await produce(
        settings,
        events_topic,
        [
            (f"{conn}:a".encode(), b"{not json"),
            (f"{conn}:a".encode(), json.dumps(too_big).encode()),
            (f"{conn}:a".encode(), _event(conn, "ev_ok").to_bytes()),
        ],
        partition=0,
    )
    await produce(
        settings,
        settings.topic(INGEST_OBSERVATIONS.name),
        [
            (conn.encode(), json.dumps({"connection_id": conn, "outcome": "exploded"}).encode()),
        ],
    )

    runtime = events_page_consumer(settings, store, policy=FAST)
    runtime.start()
    try:

        async def counted():
            windows = await store.window_counts(conn)
            return sum(d["count"] for d in windows["1h"] if d["outcome"] == "published") or None

        published, took = await wait_for(counted, 10.0, "the normal event after the poison")
        assert published == 1 and took < 10.0

        async def three_letters():
            found = await dead_letters(settings, settings.topic(ENGAGEMENT_DEADLETTER.name), CONSUMER_NAME)
            return found if len(found) >= 3 else None

        letters, _ = await wait_for(three_letters, 10.0, "three dead letters")
        assert len(letters) == 3
        by_offset = {(item.source_topic, item.offset): item for item in letters}
        assert by_offset[(events_topic, 0)].reason_class == "validation"
        big = by_offset[(events_topic, 1)]
        assert big.reason_class in {"validation", "overflow"}, big.reason
        if big.reason_class == "overflow":  # storage refused it, after the runtime's tries
            assert big.attempts == FAST.attempts and "8-byte ints" in big.reason
        observation = by_offset[(settings.topic(INGEST_OBSERVATIONS.name), 0)]
        assert observation.reason_class == "validation" and "outcome" in observation.reason

        # The Events page shows what failed downstream, with the reason.
        async def failed_shown():
            docs, _ = await store.recent(conn, 50, outcome="failed_downstream")
            return docs if len(docs) >= 2 else None

        docs, _ = await wait_for(failed_shown, 10.0, "failed-downstream entries")
        reasons = sorted(d["reason"] for d in docs)
        assert all(r.startswith(f"{CONSUMER_NAME}: ") for r in reasons)
        assert {d.get("event_id") for d in docs} == {"ev_big", None}  # the observation has none
        await assert_idle(runtime, settings, _topics(settings))
        assert len(await dead_letters(settings, settings.topic(ENGAGEMENT_DEADLETTER.name))) == 3
    finally:
        await runtime.stop()


async def test_a_re_sent_and_a_re_delivered_event_are_counted_once(private: IngestSettings, mongo_client) -> None:
    settings = private
    store = EventsStore(mongo_client[settings.mongo_db], retention=timedelta(days=7))
    await store.ensure_indexes()
    conn = f"conn_{uuid.uuid4().hex[:8]}"
    once, twice = _event(conn, "ev_once", "o@example.com"), _event(conn, "ev_twice", "t@example.com")
    filtered = IngestObservation(
        workspace_id="ws1",
        connection_id=conn,
        outcome=IngestOutcome.FILTERED,
        event_id="ev_filtered",
        event_name="emailClick",
    )
    landed = await produce(
        settings,
        settings.topic(ENGAGEMENT_EVENTS.name),
        [
            (f"{conn}:o".encode(), once.to_bytes()),
            (f"{conn}:t".encode(), twice.to_bytes()),
            (f"{conn}:t".encode(), twice.to_bytes()),  # a 503 that was stored anyway, sent again
        ],
    )
    landed += await produce(
        settings, settings.topic(INGEST_OBSERVATIONS.name), [(conn.encode(), filtered.to_bytes())] * 2
    )

    group = settings.topic(f"events-page-{uuid.uuid4().hex[:6]}")

    async def totals() -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in (await store.window_counts(conn))["1h"]:
            out[doc["outcome"]] = out.get(doc["outcome"], 0) + doc["count"]
        return out

    runtime = events_page_consumer(settings, store, group_id=group, policy=FAST)
    runtime.start()
    try:

        async def all_in():
            t = await totals()
            return t if t.get("published") == 2 and t.get("filtered") == 1 else None

        await wait_for(all_in, 15.0, "2 published + 1 filtered")
        await assert_idle(runtime, settings, _topics(settings))
    finally:
        await runtime.stop()
    before = await totals()
    assert before == {"published": 2, "filtered": 1}
    listed, _ = await store.recent(conn, 50)
    assert sorted(d["_id"] for d in listed) == ["ev_filtered", "ev_once", "ev_twice"]

    # Re-delivery: rewind the group over our messages and consume them again.
    earliest: dict[TopicPartition, int] = {}
    for m in landed:
        tp = TopicPartition(m.topic, m.partition)
        earliest[tp] = min(earliest.get(tp, m.offset), m.offset)
    await rewind_group(settings, group, earliest)
    again = events_page_consumer(settings, store, group_id=group, policy=FAST)
    again.start()
    try:

        async def reconsumed():
            return again.stats.processed >= len(landed) or None

        await wait_for(reconsumed, 15.0, "the rewound messages consumed again")
        await assert_idle(again, settings, _topics(settings))
    finally:
        await again.stop()
    assert await totals() == before
    listed, _ = await store.recent(conn, 50)
    assert len(listed) == 3


class StallsOnce(EventsStore):
    """The real store, except that the first batch stalls after its counters were
    incremented and before it is recorded as counted (storage slow under load)."""

    def __init__(self, db, stall_s: float) -> None:
        super().__init__(db, retention=timedelta(days=7))
        self.stall_s = stall_s
        self.stalled = asyncio.Event()

    async def _note_received(self, entries) -> None:
        if not self.stalled.is_set():
            self.stalled.set()
            await asyncio.sleep(self.stall_s)
        await super()._note_received(entries)


async def test_a_gateway_joining_while_a_batch_is_in_hand_does_not_count_it_again(
    private: IngestSettings, mongo_client
) -> None:
    """Another gateway instance joins the Events page group while the first is in the
    middle of a batch: the first finishes and commits it before its partitions move
    (`revoke_grace_s`); otherwise the new owner counts it again together with what
    came after it."""
    settings = private
    db = mongo_client[settings.mongo_db]
    first_store = StallsOnce(db, stall_s=7.0)
    await first_store.ensure_indexes()
    conn = f"conn_{uuid.uuid4().hex[:8]}"
    events_topic = settings.topic(ENGAGEMENT_EVENTS.name)

    async def two_on_every_partition(tag: str) -> None:
        for p in range(ENGAGEMENT_EVENTS.partitions):
            items = [_event(conn, f"ev_{tag}{p}{i}", f"{tag}{p}{i}@example.com") for i in range(2)]
            await produce(settings, events_topic, [(f"{conn}:{e.email}".encode(), e.to_bytes()) for e in items], p)

    async def published() -> int:
        windows = await first_store.window_counts(conn)
        return sum(d["count"] for d in windows["1h"] if d["outcome"] == "published")

    group = settings.topic(f"events-page-{uuid.uuid4().hex[:6]}")
    first = events_page_consumer(settings, first_store, group_id=group, policy=FAST)
    second = events_page_consumer(settings, EventsStore(db, timedelta(days=7)), group_id=group, policy=FAST)
    await two_on_every_partition("a")
    first.start()
    try:

        async def in_hand() -> bool:
            return first_store.stalled.is_set()

        await wait_for(in_hand, 15.0, "the first batch in hand")
        await two_on_every_partition("b")  # beyond the batch in hand
        second.start()

        # Both consumers have committed past every message and gone quiet: whatever
        # was counted twice, or not at all, shows in the total now.
        await assert_idle(first, settings, _topics(settings), catch_up_s=45.0)
        await assert_idle(second, settings, _topics(settings))
        assert second.stats.processed > 0  # it did take partitions over
    finally:
        await first.stop()
        await second.stop()
    assert await published() == 24


async def test_the_events_page_api_shows_failed_downstream_with_the_reason(
    kafka_topics, http, make_connection, user_token
) -> None:
    """Through the running ingest app: an event storage refuses, next to a good one."""
    settings = kafka_topics
    conn = make_connection()
    headers = user_token(conn.workspace_id)
    bad = _event(conn.id, f"ev_{uuid.uuid4().hex[:8]}").model_copy(update={"workspace_id": conn.workspace_id})
    body = bad.model_dump(mode="json")
    body["campaign_id"] = 10**40
    await produce(
        settings, settings.topic(ENGAGEMENT_EVENTS.name), [(f"{conn.id}:x".encode(), json.dumps(body).encode())]
    )

    async def shown():
        s = await summary_of(http, conn, headers)
        # Wait for this consumer's own letter: another consumer of the session's topic
        # (the console's results counter) may dead-letter the same event first.
        reasons = window(s, "1h")["failed_downstream_by_reason"]
        return s if any(r.startswith(f"{CONSUMER_NAME}: ") for r in reasons) else None

    summary = await eventually(shown, timeout_s=30)
    assert summary, "the failed event never showed on the Events page"
    one_hour = window(summary, "1h")
    assert one_hour["totals"]["received"] == 0  # it failed; it was not counted as received
    assert any(r.startswith(f"{CONSUMER_NAME}: ") for r in one_hour["failed_downstream_by_reason"])
    listing = await http.get(
        f"/v1/connections/{conn.id}/events", params={"outcome": "failed_downstream"}, headers=headers
    )
    items = listing.json()["items"]
    assert items and items[0]["outcome"] == "failed_downstream" and items[0]["event_id"] == bad.event_id
    assert items[0]["reason"]
