"""The Events page: read model (real MongoDB), its consumer (real Kafka) and HTTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pymongo.errors import OperationFailure

from liftstack_ingest.events import Entry, to_entry
from liftstack_ingest.store import EventsStore
from liftstack_shared.auth import Role
from liftstack_shared.kafka import make_broker
from liftstack_shared.messages import DeadLetter, IngestObservation, IngestOutcome
from liftstack_shared.mongo import make_mongo_client
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS
from tests.ingest.conftest import eventually, summary_of, window
from tests.ingest.payloads import example

pytestmark = pytest.mark.integration


async def test_events_page_requires_an_owner_or_admin_of_the_workspace(http, make_connection, user_token):
    conn = make_connection()
    path = f"/v1/connections/{conn.id}/events"
    assert (await http.get(path)).status_code == 401
    assert (await http.get(path, headers={"Authorization": "Bearer not-a-jwt"})).status_code == 401
    member = await http.get(path, headers=user_token(conn.workspace_id, Role.MEMBER))
    assert member.status_code == 403
    assert (await http.get(path, headers=user_token(conn.workspace_id, Role.ADMIN))).status_code == 200
    other = await http.get(path, headers=user_token("ws_other"))
    assert other.status_code == 404
    other_summary = await http.get(f"{path}/summary", headers=user_token("ws_other"))
    assert other_summary.status_code == 404
    missing = await http.get("/v1/connections/conn_nope/events", headers=user_token(conn.workspace_id))
    assert missing.status_code == 404


async def test_a_connection_with_no_events(http, make_connection, user_token):
    conn = make_connection()
    summary = await summary_of(http, conn, user_token(conn.workspace_id))
    assert summary["status"] == "no_events" and summary["last_received_at"] is None
    assert [w["window"] for w in summary["windows"]] == ["1h", "24h", "7d"]
    assert all(w["totals"]["received"] == 0 for w in summary["windows"])
    listing = await http.get(f"/v1/connections/{conn.id}/events", headers=user_token(conn.workspace_id))
    assert listing.json() == {"connection_id": conn.id, "items": [], "next_cursor": None}


async def test_recent_events_are_newest_first_and_paged(http, make_connection, user_token):
    conn = make_connection(event_types=["open"])
    headers = user_token(conn.workspace_id)
    sent = []
    for i in range(5):
        body = example("emailOpen", email=f"p{i}@example.com")
        response = await http.post(conn.path, json=body, headers=conn.auth())
        sent.append(response.json()["event_id"])
    filtered = await http.post(conn.path, json=example("emailClick"), headers=conn.auth())
    assert filtered.json()["status"] == "filtered"

    last: dict = {}

    async def all_there():
        last.update(await summary_of(http, conn, headers))
        return last if window(last, "1h")["totals"]["received"] == 6 else None

    # Exactly 6, whichever instances of the consumer group count them (other gateways
    # of this test session join the group): fewer means lost counts, more double ones.
    summary = await eventually(all_there)
    assert summary, f"not 6 received within 30 s: {window(last, '1h')['totals']}"
    assert summary["status"] == "receiving" and summary["last_received_at"]

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/v1/connections/{conn.id}/events", params=params, headers=headers)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 6 and len({item["event_id"] for item in seen}) == 6
    times = [item["received_at"] for item in seen]
    assert times == sorted(times, reverse=True)
    published = [item["event_id"] for item in seen if item["outcome"] == "published"]
    assert set(published) == set(sent)

    only = await http.get(f"/v1/connections/{conn.id}/events", params={"outcome": "filtered"}, headers=headers)
    assert [item["event_name"] for item in only.json()["items"]] == ["emailClick"]
    bad = await http.get(f"/v1/connections/{conn.id}/events", params={"cursor": "%%%"}, headers=headers)
    assert bad.status_code == 400
    bad = await http.get(f"/v1/connections/{conn.id}/events", params={"limit": 0}, headers=headers)
    assert bad.status_code == 400


async def test_bad_messages_are_dead_lettered_and_the_consumer_carries_on(
    kafka_topics, http, make_connection, user_token
):
    settings = kafka_topics
    conn = make_connection()
    marker = f"garbage-{uuid.uuid4().hex[:8]}"
    broker = make_broker(settings, "test-deadletter")
    async with broker:
        await broker.start()
        await broker.publish(
            b"{not json " + marker.encode(), settings.topic(ENGAGEMENT_EVENTS.name), key=marker.encode()
        )
        await broker.publish(
            b'{"connection_id": "' + marker.encode() + b'"}',
            settings.topic(INGEST_OBSERVATIONS.name),
            key=marker.encode(),
        )
    # A valid event after the bad ones is still counted.
    await http.post(conn.path, json=example("emailOpen"), headers=conn.auth())

    async def counted():
        s = await summary_of(http, conn, user_token(conn.workspace_id))
        return s if window(s, "1h")["totals"]["published"] == 1 else None

    assert await eventually(counted)

    letters = await _dead_letters(settings, marker, expected=2)
    assert {letter.source_topic for letter in letters} == {
        settings.topic(ENGAGEMENT_EVENTS.name),
        settings.topic(INGEST_OBSERVATIONS.name),
    }
    assert all(letter.consumer == "ingest.events-page" and letter.reason for letter in letters)
    assert all(letter.reason_class == "validation" and "invalid message" in letter.reason for letter in letters)


async def _dead_letters(settings, marker: str, expected: int) -> list[DeadLetter]:
    topic = settings.topic(ENGAGEMENT_DEADLETTER.name)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    letter = DeadLetter.model_validate_json(record.value)
                    # Other consumers of engagement.events in this test session (the
                    # console's results counter) dead-letter the same garbage: only
                    # ingest's own letters are this test's business.
                    if letter.key == marker and letter.consumer == "ingest.events-page":
                        found.append(letter)
            if len(found) >= expected:
                break
    finally:
        await consumer.stop()
    return found


def _entry(doc_id: str, claim: str, at: datetime, outcome: str = "published", cid: str = "c1") -> Entry:
    return Entry(
        doc_id=doc_id, claim=claim, connection_id=cid, workspace_id="w1", outcome=outcome, at=at, event_name="emailOpen"
    )


async def test_read_model_counts_retries_once_and_recounts_its_own_redelivery(mongo_client, settings):
    model = EventsStore(mongo_client[settings.mongo_db], retention=timedelta(days=7))
    await model.ensure_indexes()
    cid = f"c_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    first = await model.apply([_entry("ev_a", "t:0:1", now, cid=cid), _entry("ev_a", "t:0:2", now, cid=cid)])
    assert (first.counted, first.duplicates) == (1, 1)
    # An interrupted earlier attempt at the same message: inserted, never counted.
    await model.events.insert_one({**_entry("ev_b", "t:0:3", now, cid=cid).document()})
    again = await model.apply([_entry("ev_b", "t:0:3", now, cid=cid), _entry("ev_a", "t:0:1", now, cid=cid)])
    assert (again.counted, again.duplicates) == (1, 1)
    windows = await model.window_counts(cid)
    assert sum(doc["count"] for doc in windows["1h"]) == 2
    assert sum(doc["count"] for doc in windows["7d"]) == 2


async def test_read_model_windows_and_pruning(mongo_client, settings):
    model = EventsStore(mongo_client[settings.mongo_db], retention=timedelta(days=7))
    cid = f"c_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    await model.apply(
        [
            _entry("ev_now", "t:1:1", now, cid=cid),
            _entry("ev_3h", "t:1:2", now - timedelta(hours=3), cid=cid, outcome="filtered"),
            _entry("ev_2d", "t:1:3", now - timedelta(days=2), cid=cid),
            _entry("ev_9d", "t:1:4", now - timedelta(days=9), cid=cid),
        ]
    )
    windows = await model.window_counts(cid, now)
    assert [sum(d["count"] for d in windows[w]) for w in ("1h", "24h", "7d")] == [1, 2, 3]
    assert await model.last_received(cid) is not None
    await model.prune(now)
    remaining = {doc["_id"] async for doc in model.events.find({"connection_id": cid})}
    assert remaining == {"ev_now", "ev_3h", "ev_2d"}
    minute_buckets = await model.counts.count_documents({"connection_id": cid, "granularity": "m"})
    assert minute_buckets == 1  # only the current minute survives (2 h retention)
    windows = await model.window_counts(cid, now)
    assert [sum(d["count"] for d in windows[w]) for w in ("1h", "24h", "7d")] == [1, 2, 3]


def test_rejections_are_counted_per_request_not_per_event_id():
    obs = IngestObservation(
        workspace_id="w", connection_id="c", outcome=IngestOutcome.REJECTED, reason="bad_secret", event_id="ev_x"
    )
    record = ConsumerRecord("t.obs", 2, 17, 0, 0, b"c", obs.to_bytes(), None, 1, 1, [])
    entry = to_entry(record, "t.events")
    assert entry is not None and entry.doc_id == "obs:t.obs:2:17" and entry.reason == "bad_secret"


async def test_two_consumers_counting_one_connection_at_once_lose_nothing(mongo_client, settings):
    """Two gateway instances share the Events page consumer group, so both count one
    connection's events (its recipients spread over partitions) at the same moment.
    FerretDB does not apply concurrent updates of one document atomically (see
    liftstack_shared.mongo): counters both of them `$inc`ed lost counts, for good."""
    second_client = make_mongo_client(settings)
    try:
        members = [
            EventsStore(client[settings.mongo_db], retention=timedelta(days=7))
            for client in (mongo_client, second_client)
        ]
        now = datetime.now(UTC)
        for round_ in range(10):
            cid = f"c_{uuid.uuid4().hex[:8]}"

            async def consume(k: int, cid: str = cid, round_: int = round_) -> list[int]:
                # Member k owns partition k and applies its batches one after another.
                return [
                    (await members[k].apply([_entry(f"ev_{round_}_{i}_{k}", f"t:{k}:{i}", now, cid=cid)])).counted
                    for i in range(3)
                ]

            assert await asyncio.gather(consume(0), consume(1)) == [[1, 1, 1], [1, 1, 1]]
            windows = await members[0].window_counts(cid)
            assert [sum(d["count"] for d in windows[w]) for w in ("1h", "24h", "7d")] == [6, 6, 6], f"round {round_}"
    finally:
        await second_client.close()


class FailsOnce:
    """A real collection whose `nth` update_one fails the way FerretDB does when
    SQLite stays locked past its busy timeout (the runtime retries the batch)."""

    def __init__(self, collection, nth: int) -> None:
        self._collection, self._nth, self.calls = collection, nth, 0

    def __getattr__(self, name):
        return getattr(self._collection, name)

    async def update_one(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self._nth:
            raise OperationFailure("database is locked (5) (SQLITE_BUSY)")
        return await self._collection.update_one(*args, **kwargs)


async def test_a_batch_retried_after_failing_halfway_through_its_counters_counts_once(mongo_client, settings):
    model = EventsStore(mongo_client[settings.mongo_db], retention=timedelta(days=7))
    cid = f"c_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    batch = [_entry(f"ev_{cid}_{i}", f"t:3:{i}", now, cid=cid) for i in range(3)]
    # The minute counter is written, the hour counter's write fails: an infrastructure
    # failure, so the consumer runtime applies the whole batch again.
    model.counts = FailsOnce(model.counts, nth=2)
    with pytest.raises(OperationFailure):
        await model.apply(batch)
    retried = await model.apply(batch)
    assert retried.counted == 3
    windows = await model.window_counts(cid)
    assert [sum(d["count"] for d in windows[w]) for w in ("1h", "24h", "7d")] == [3, 3, 3]
