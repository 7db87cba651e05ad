"""The assignment stand-in: once an audience sync completes, read that sync's members
from `audience.members`, split them with the deterministic hash (assign.py) and publish
the writeback job to `campaign.assignments` in batches of 1,000.

Reading a sync: `audience.members` is keyed by sync id, so a sync's batches and its
`AudienceSyncCompleted` sit in order on one partition. We don't rely on knowing which
partition (that's the producer's partitioner): we read every partition from shortly
before the sync started (`offsets_for_times`), keep what carries our sync id, and stop
once the completion message has arrived and every batch it counts has been seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from liftstack_shared.messages import (
    Assignment,
    AssignmentBatch,
    AudienceMember,
    AudienceMembersBatch,
    AudienceSyncCompleted,
)
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import AUDIENCE_MEMBERS, CAMPAIGN_ASSIGNMENTS
from liftstack_console.assign import assign_variant

log = logging.getLogger(__name__)
BATCH_SIZE = 1000


class SyncNotFound(Exception):
    """The sync's members did not (all) show up on `audience.members` in time."""


@dataclass
class SyncMembers:
    completed: AudienceSyncCompleted
    members: list[AudienceMember] = field(default_factory=list)


async def read_sync_members(
    settings: CommonSettings, sync_id: str, since: datetime | None = None,
    timeout_s: float = 120.0,
) -> SyncMembers:
    topic = settings.topic(AUDIENCE_MEMBERS.name)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await _partitions(settings, topic)
        if not partitions:
            raise SyncNotFound(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await _seek(consumer, tps, since)
        batches: dict[int, AudienceMembersBatch] = {}
        completed: AudienceSyncCompleted | None = None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while completed is None or len(batches) < completed.batch_count:
            if asyncio.get_running_loop().time() > deadline:
                raise SyncNotFound(
                    f"sync {sync_id}: {len(batches)} member batches"
                    f"{'' if completed is None else f' of {completed.batch_count}'} "
                    f"found in {timeout_s:.0f}s"
                )
            records = await consumer.getmany(timeout_ms=500, max_records=1000)
            for messages in records.values():
                for message in messages:
                    data = json.loads(message.value)
                    if data.get("sync_id") != sync_id:
                        continue
                    if data.get("kind") == "completed":
                        completed = AudienceSyncCompleted.model_validate(data)
                    else:
                        batch = AudienceMembersBatch.model_validate(data)
                        batches[batch.batch_seq] = batch
        result = SyncMembers(completed)
        for seq in sorted(batches):
            result.members.extend(batches[seq].members)
        return result
    finally:
        await consumer.stop()


async def _partitions(settings: CommonSettings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0].get("error_code"):
        return []
    return sorted(p["partition"] for p in described[0]["partitions"])


async def _seek(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since: datetime | None) -> None:
    if since is None:
        await consumer.seek_to_beginning(*tps)
        return
    # A minute of slack for clock differences between the audiences service and us.
    ms = int((since - timedelta(minutes=1)).timestamp() * 1000)
    offsets = await consumer.offsets_for_times({tp: ms for tp in tps})
    for tp in tps:
        found = offsets.get(tp)
        if found is None:
            await consumer.seek_to_end(tp)  # nothing newer than `since` there yet
        else:
            consumer.seek(tp, found.offset)


def recipient_of(member: AudienceMember) -> Assignment | None:
    """Email when the member has one, else userId (Iterable's bulkUpdate wants one)."""
    if member.email:
        return Assignment(email=member.email, variant="_")
    if member.user_id:
        return Assignment(user_id=member.user_id, variant="_")
    return None


@dataclass
class AssignmentPlan:
    job_id: str
    batches: list[AssignmentBatch]
    counts: dict[str, int]
    total: int
    identity: str  # "email", "user_id" or "mixed": how results recompute the variant


def plan_assignments(
    *, job_id: str, workspace_id: str, connection_id: str, campaign_key: str,
    variants: list[str], weights: list[float], members: list[AudienceMember],
) -> AssignmentPlan:
    assignments: list[Assignment] = []
    seen: set[str] = set()
    for member in members:
        base = recipient_of(member)
        if base is None or base.recipient in seen:
            continue
        seen.add(base.recipient)
        variant = assign_variant(campaign_key, base.recipient, variants, weights)
        assignments.append(base.model_copy(update={"variant": variant}))
    counts = Counter(a.variant for a in assignments)
    kinds = {"email" if a.email else "user_id" for a in assignments}
    identity = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "email")
    chunks = [assignments[i : i + BATCH_SIZE] for i in range(0, len(assignments), BATCH_SIZE)]
    chunks = chunks or [[]]  # an empty audience is still a (complete) job
    batches = [
        AssignmentBatch(
            job_id=job_id, workspace_id=workspace_id, connection_id=connection_id,
            campaign_key=campaign_key, batch_seq=seq, batch_count=len(chunks),
            total_recipients=len(assignments), assignments=chunk,
        )
        for seq, chunk in enumerate(chunks)
    ]
    return AssignmentPlan(
        job_id, batches, {v: counts.get(v, 0) for v in variants}, len(assignments), identity
    )


async def publish_plan(settings: CommonSettings, plan: AssignmentPlan) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        topic = settings.topic(CAMPAIGN_ASSIGNMENTS.name)
        sends = [
            await producer.send(topic, batch.to_bytes(), key=batch.connection_id.encode())
            for batch in plan.batches
        ]
        await asyncio.gather(*sends)  # every batch acknowledged by all replicas
    finally:
        await producer.stop()
