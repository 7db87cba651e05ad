"""The assignment step's Kafka side: read one audience sync's members from
`audience.members`, and publish the planned writeback job (plan.py) to
`campaign.assignments`.

Reading a sync: `audience.members` is keyed by sync id, so a sync's batches and its
`AudienceSyncCompleted` sit in order on one partition. We don't rely on knowing which
partition (that's the producer's partitioner): a group-less reader on the shared
consumer runtime reads every partition from shortly before the sync started
(`offsets_for_times`), keeps what is keyed by our sync id, and stops once the
completion message has arrived and every batch it counts has been seen.

A message keyed by our sync id that breaks its contract is dead-lettered (to
`audience.members.deadletter`, with the reason) and the read fails at once, naming it:
without that batch the sync can't be complete. Other syncs' messages are not ours to
judge (every read would dead-letter them again), so they are skipped undecoded.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from liftstack_experiments.plan import AssignmentPlan
from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy, StartAt
from liftstack_shared.messages import AudienceMember, AudienceMembersBatch, AudienceSyncCompleted
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import AUDIENCE_MEMBERS, AUDIENCE_MEMBERS_DEADLETTER, CAMPAIGN_ASSIGNMENTS


class SyncNotFound(Exception):
    """The sync's members did not (all) show up on `audience.members` in time."""


@dataclass
class SyncMembers:
    completed: AudienceSyncCompleted
    members: list[AudienceMember] = field(default_factory=list)


SYNC_READER = "experiments.assigner"
SyncMessage = AudienceMembersBatch | AudienceSyncCompleted


def decode_sync_message(record: ConsumerRecord[Any, Any], sync_id: str) -> SyncMessage | None:
    """Our sync's message, or None for another sync's (skipped undecoded)."""
    if record.key != sync_id.encode():
        return None
    data = json.loads(record.value or b"")
    if not isinstance(data, dict):
        raise ValueError("an audience.members message must be a JSON object")
    message: SyncMessage = (
        AudienceSyncCompleted.model_validate(data)
        if data.get("kind") == "completed"
        else AudienceMembersBatch.model_validate(data)
    )
    if message.sync_id != sync_id:
        raise ValueError("sync_id does not match the message key")
    return message


async def read_sync_members(
    settings: CommonSettings,
    sync_id: str,
    since: datetime | None = None,
    timeout_s: float = 120.0,
    policy: RetryPolicy = RetryPolicy(),
) -> SyncMembers:
    batches: dict[int, AudienceMembersBatch] = {}
    completed: AudienceSyncCompleted | None = None

    def complete() -> bool:
        return completed is not None and len(batches) >= completed.batch_count

    async def collect(deliveries: list[Delivery[SyncMessage | None]]) -> None:
        nonlocal completed
        for delivery in deliveries:
            message = delivery.message
            if isinstance(message, AudienceSyncCompleted):
                completed = message
            elif isinstance(message, AudienceMembersBatch):
                batches[message.batch_seq] = message

    # A minute of slack for clock differences between the audiences service and us.
    start: StartAt = "earliest" if since is None else since - timedelta(minutes=1)
    reader: ConsumerRuntime[SyncMessage | None] = ConsumerRuntime(
        name=SYNC_READER,
        bootstrap=settings.kafka_bootstrap,
        topics=[settings.topic(AUDIENCE_MEMBERS.name)],
        group_id=None,
        start_at=start,
        decode=lambda record: decode_sync_message(record, sync_id),
        handle=collect,
        dead_letter_topic=settings.topic(AUDIENCE_MEMBERS_DEADLETTER.name),
        policy=policy,
        max_batch=1000,
        consumer_options={"max_partition_fetch_bytes": 8 * 1024 * 1024},
    )
    reader.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not complete():
            if reader.stats.dead_lettered:
                letter = reader.stats.last_dead_letters[-1]
                raise SyncNotFound(
                    f"sync {sync_id}: a message of this sync could not be read and was "
                    f"dead-lettered ({letter.reason}); sync the audience again"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise SyncNotFound(
                    f"sync {sync_id}: {len(batches)} member batches"
                    f"{'' if completed is None else f' of {completed.batch_count}'} "
                    f"found in {timeout_s:.0f}s"
                )
            await asyncio.sleep(0.1)
    finally:
        await reader.stop()
    assert completed is not None
    result = SyncMembers(completed)
    for seq in sorted(batches):
        result.members.extend(batches[seq].members)
    return result


class AssignmentPublisher:
    """Publishes a plan's batches to `campaign.assignments`, keyed by connection, each
    acknowledged by all replicas before `publish` returns. One producer per process,
    created and started by `start` (the app's lifespan), stopped by `stop`."""

    def __init__(self, settings: CommonSettings) -> None:
        self._bootstrap = settings.kafka_bootstrap
        self._topic = settings.topic(CAMPAIGN_ASSIGNMENTS.name)
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=8 * 1024 * 1024,
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def publish(self, plan: AssignmentPlan) -> None:
        if self.producer is None:
            raise RuntimeError("the assignment publisher is not started")
        producer = self.producer
        sends = [
            await producer.send(self._topic, batch.to_bytes(), key=batch.connection_id.encode())
            for batch in plan.batches
        ]
        await asyncio.gather(*sends)  # every batch acknowledged by all replicas
