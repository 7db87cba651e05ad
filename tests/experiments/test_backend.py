"""The experiments service's backend against real Kafka and the MongoDB-wire server:
the assignment stand-in (audience.members -> campaign.assignments) and the results
counter (engagement.events -> unique recipients per campaign, variant and type)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.assigner import AssignmentPublisher, read_sync_members
from liftstack_experiments.campaigns import AssignmentSection, CampaignCreate, SendSection, Variant
from liftstack_experiments.consumers import RESULTS_CONSUMER, results_consumer
from liftstack_experiments.plan import plan_assignments
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.messages import (
    AssignmentBatch,
    AudienceMember,
    AudienceMembersBatch,
    AudienceSyncCompleted,
    EngagementEvent,
    EventType,
)
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import (
    AUDIENCE_MEMBERS,
    CAMPAIGN_ASSIGNMENTS,
    ENGAGEMENT_DEADLETTER,
    ENGAGEMENT_EVENTS,
)
from tests.experiments.parts import build_parts


async def _produce(settings: CommonSettings, topic: str, items: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(settings.topic(topic), value, key=key.encode())
    finally:
        await producer.stop()


async def test_assignment_reads_one_sync_and_publishes_batches(kafka_topics: CommonSettings) -> None:
    settings = kafka_topics
    started = datetime.now(UTC)
    ours, other = uuid.uuid4().hex, uuid.uuid4().hex
    members = [AudienceMember(email=f"m{i}@example.com") for i in range(2500)]
    members.append(AudienceMember(user_id="only-a-user-id"))
    members.append(AudienceMember(email="m1@example.com"))  # a duplicate: assigned once
    batches = [members[i : i + 1000] for i in range(0, len(members), 1000)]
    items: list[tuple[str, bytes]] = []
    for seq, chunk in enumerate(batches):
        items.append(
            (
                ours,
                AudienceMembersBatch(
                    sync_id=ours, workspace_id="ws", connection_id="c1", list_id=1, batch_seq=seq, members=chunk
                ).to_bytes(),
            )
        )
        # Another sync's batch in between must be ignored.
        items.append(
            (
                other,
                AudienceMembersBatch(
                    sync_id=other,
                    workspace_id="ws",
                    connection_id="c1",
                    list_id=2,
                    batch_seq=seq,
                    members=[AudienceMember(email="intruder@example.com")],
                ).to_bytes(),
            )
        )
    items.append(
        (
            ours,
            AudienceSyncCompleted(
                sync_id=ours,
                workspace_id="ws",
                connection_id="c1",
                list_id=1,
                batch_count=len(batches),
                member_count=len(members),
                invalid_skipped=0,
                duplicates_skipped=0,
            ).to_bytes(),
        )
    )
    await _produce(settings, AUDIENCE_MEMBERS.name, items)

    read = await read_sync_members(settings, ours, since=started, timeout_s=60)
    assert read.members == members
    plan = plan_assignments(
        job_id=f"job-{ours[:8]}",
        workspace_id="ws",
        connection_id="c1",
        campaign_key="spring",
        variants=["A", "B"],
        weights=[1, 3],
        members=read.members,
    )
    assert plan.total == 2501 and plan.identity == "mixed"
    assert [len(b.assignments) for b in plan.batches] == [1000, 1000, 501]
    publisher = AssignmentPublisher(settings)
    await publisher.start()
    try:
        await publisher.publish(plan)
    finally:
        await publisher.stop()

    consumer = AIOKafkaConsumer(
        settings.topic(CAMPAIGN_ASSIGNMENTS.name),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got: dict[int, AssignmentBatch] = {}
    try:
        async with asyncio.timeout(60):
            while len(got) < 3:
                records = await consumer.getmany(timeout_ms=500)
                for messages in records.values():
                    for m in messages:
                        batch = AssignmentBatch.model_validate_json(m.value)
                        if batch.job_id == plan.job_id:
                            assert m.key == b"c1"  # keyed by connection
                            got[batch.batch_seq] = batch
    finally:
        await consumer.stop()
    assert all(b.batch_count == 3 and b.total_recipients == 2501 for b in got.values())
    flat = [a for seq in sorted(got) for a in got[seq].assignments]
    assert len(flat) == 2501
    for a in flat:
        assert a.variant == assign_variant("spring", a.recipient, ["A", "B"], [1, 3])
    assert sum(plan.counts.values()) == 2501


async def test_results_dedupe_attribute_and_dead_letter(
    experiments_settings: ExperimentsSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = experiments_settings
    parts = await build_parts(settings, mongo_client)
    campaigns, store = parts.campaigns, parts.results
    conn = f"conn-{uuid.uuid4().hex[:6]}"
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
        send=SendSection(iterable_campaign_id=777, status="sent", at=datetime.now(UTC)),
        assignment=AssignmentSection(status="completed", job_id="j", counts={"A": 0, "B": 0}, identity="email"),
    )
    campaign = await campaigns.get_by_id(created.id)
    assert campaign is not None

    now = datetime.now(UTC)
    events: list[EngagementEvent] = []
    people = [f"p{i}@example.com" for i in range(40)]
    for i, email in enumerate(people):
        events.append(
            EngagementEvent(
                event_id=f"s-{email}-{body.key}",
                workspace_id="ws",
                connection_id=conn,
                event_type=EventType.SEND,
                iterable_event_name="emailSend",
                email=email,
                campaign_id=777,
                occurred_at=now,
            )
        )
        if i % 2 == 0:  # opened twice (two distinct events) and delivered twice (same id)
            for n in (1, 2):
                e = EngagementEvent(
                    event_id=f"o{n}-{email}-{body.key}",
                    workspace_id="ws",
                    connection_id=conn,
                    event_type=EventType.OPEN,
                    iterable_event_name="emailOpen",
                    email=email,
                    campaign_id=777,
                    occurred_at=now,
                )
                events += [e, e]
    # Another campaign's event is stored but not attributed.
    events.append(
        EngagementEvent(
            event_id=f"x-{body.key}",
            workspace_id="ws",
            connection_id=conn,
            event_type=EventType.OPEN,
            iterable_event_name="emailOpen",
            email="p0@example.com",
            campaign_id=999,
            occurred_at=now,
        )
    )
    items = [(f"{conn}:{e.email}", e.to_bytes()) for e in events]
    items.append((conn, json.dumps({"not": "an event"}).encode()))
    await _produce(settings, ENGAGEMENT_EVENTS.name, items)

    consumer = results_consumer(settings, parts.service, f"results-{uuid.uuid4().hex[:6]}")
    consumer.start()
    try:
        async with asyncio.timeout(60):
            while True:
                counts = await store.counts(campaign.id)
                if sum(counts.values()) >= 60:
                    break
                await asyncio.sleep(0.3)
    finally:
        await consumer.stop()

    expected: dict[tuple[str, str], int] = {}
    for i, email in enumerate(people):
        v = assign_variant(body.key, email, ["A", "B"], [1.0, 1.0])
        expected[(v, "send")] = expected.get((v, "send"), 0) + 1
        if i % 2 == 0:
            expected[(v, "open")] = expected.get((v, "open"), 0) + 1
    assert await store.counts(campaign.id) == expected
    table = await parts.service.results(campaign)
    rows = {r.name: r for r in table.variants}
    for v in ("A", "B"):
        assert rows[v].metrics[EventType.SEND].count == expected.get((v, "send"), 0)
        assert rows[v].metrics[EventType.OPEN].rate == expected.get((v, "open"), 0) / expected[(v, "send")]
    assert table.srm.basis == "sends"
    assert table.events == 40 + 40  # distinct event ids of this campaign

    dead = AIOKafkaConsumer(
        settings.topic(ENGAGEMENT_DEADLETTER.name),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
    )
    await dead.start()
    try:
        async with asyncio.timeout(30):
            found = False
            while not found:
                for messages in (await dead.getmany(timeout_ms=500)).values():
                    found = found or any(
                        b"an event" in m.value
                        and f'"consumer":"{RESULTS_CONSUMER}"'.encode() in m.value
                        and b'"reason_class":"validation"' in m.value
                        for m in messages
                    )
    finally:
        await dead.stop()
