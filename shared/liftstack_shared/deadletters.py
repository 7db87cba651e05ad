"""Reading and replaying dead letters (`liftstack deadletters list|replay`).

Every consumer dead-letters through `liftstack_shared.consumer` into the dead-letter
topic of what it consumes (`topics.DEADLETTER_TOPICS`). After a fix, a dead letter is
replayed by publishing its original bytes, with its key, to its source topic: every
consumer of that topic sees it again, and they dedupe (on `event_id`, outcome ids), so
a consumer that had processed it fine is not affected.

A replay is recorded in MongoDB (`deadletter_replays`, `_id` = the source message's
coordinates) by an insert-once *before* publishing, so replaying twice, or replaying
the letters two consumers wrote about one message, publishes it once. If publishing
fails the record is removed again, so the letter stays replayable.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase

from liftstack_shared.messages import DeadLetter, utcnow
from liftstack_shared.mongo import insert_once
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import DEADLETTER_TOPICS

REPLAYS = "deadletter_replays"


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter and where it sits on its dead-letter topic."""

    topic: str  # the dead-letter topic (prefixed)
    partition: int
    offset: int
    letter: DeadLetter

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class ReplayReport:
    replayed: list[StoredLetter]
    already_replayed: list[StoredLetter]


def deadletter_topics(settings: CommonSettings, names: list[str] | None = None) -> list[str]:
    """The prefixed dead-letter topics, all or those named (without the prefix)."""
    known = {t.name for t in DEADLETTER_TOPICS}
    chosen = names or sorted(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ValueError(f"not a dead-letter topic: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return [settings.topic(n) for n in chosen]


async def read_letters(settings: CommonSettings, topics: list[str], timeout_s: float = 60.0) -> list[StoredLetter]:
    """Every dead letter on `topics`, oldest first per partition. A record that isn't
    a `DeadLetter` is skipped (nothing of ours wrote it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[StoredLetter] = []
    try:
        await consumer._client.force_metadata_update()  # fresh topic list
        tps = [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        deadline = asyncio.get_running_loop().time() + timeout_s
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"reading dead letters took over {timeout_s:.0f}s")
            fetched = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, records in fetched.items():
                for record in records:
                    try:
                        letter = DeadLetter.model_validate_json(record.value or b"")
                    except ValidationError:
                        continue
                    out.append(StoredLetter(tp.topic, tp.partition, record.offset, letter))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


async def replay_records(db: AsyncDatabase[Any]) -> dict[str, dict[str, Any]]:
    """Source coordinates -> replay record."""
    return {doc["_id"]: doc async for doc in db[REPLAYS].find({})}


async def replay(
    settings: CommonSettings, db: AsyncDatabase[Any], letters: list[StoredLetter], by: str = "cli"
) -> ReplayReport:
    """Publish each letter's original message to its source topic, once per source
    message (see the module doc)."""
    report = ReplayReport([], [])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for stored in letters:
            letter = stored.letter
            if letter.payload_truncated:
                raise ValueError(f"{stored.id}: the payload was truncated; it can't be replayed")
            record = {
                "_id": letter.source_id,
                "letter": stored.id,
                "consumer": letter.consumer,
                "replayed_at": utcnow(),
                "by": by,
            }
            if await insert_once(db[REPLAYS], [record]):
                report.already_replayed.append(stored)
                continue
            try:
                await producer.send_and_wait(
                    letter.source_topic,
                    letter.original_bytes(),
                    key=letter.key.encode() if letter.key is not None else None,
                )
            except BaseException:
                await db[REPLAYS].delete_one({"_id": letter.source_id})
                raise
            report.replayed.append(stored)
    finally:
        await producer.stop()
    return report


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "-"
