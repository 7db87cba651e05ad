"""The shared consumer runtime (liftstack_shared.consumer) on real Kafka and the
MongoDB-wire server: poison messages are dead-lettered with their reason and
committed past, normal ones after them are processed, an outage is waited out and
never dead-lettered, and nothing loops afterwards."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

from liftstack_shared.consumer import (
    DEAD_LETTERS,
    INFRA_PAUSES,
    Classifier,
    ConsumerRuntime,
    Delivery,
    FailureKind,
    RejectMessage,
    RetryPolicy,
    reason_class,
)
from liftstack_shared.mongo import insert_once
from liftstack_shared.settings import CommonSettings
from tests.fixtures.kafka_tools import create_topics, dead_letters, group_lag, private_topic, produce

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, retry_initial_s=0.05, retry_max_s=0.2, pause_initial_s=0.1, pause_max_s=0.5)


def decode_json(record: Any) -> dict[str, Any]:
    value = json.loads(record.value)
    if not isinstance(value, dict) or "id" not in value:
        raise ValueError("not an item")
    return value


class Store:
    """A real handler: insert-once documents into MongoDB, counting its calls."""

    def __init__(self, client: AsyncMongoClient, db: str, name: str) -> None:
        self.collection = client[db][name]
        self.calls = 0

    async def handle(self, deliveries: list[Delivery[dict[str, Any]]]) -> None:
        self.calls += 1
        docs = [{"_id": d.message["id"], "n": d.message.get("n", 0)} for d in deliveries]
        if any(d.message.get("reject") for d in deliveries):
            raise RejectMessage("rejected on purpose")
        await insert_once(self.collection, docs)

    async def ids(self) -> set[str]:
        return {doc["_id"] async for doc in self.collection.find({}, {"_id": 1})}


async def _topics(settings: CommonSettings) -> tuple[str, str]:
    topic, dlt = private_topic(settings, "rt"), private_topic(settings, "rt.deadletter")
    await create_topics(settings, topic, partitions=2)
    await create_topics(settings, dlt, partitions=1)
    return topic, dlt


def _runtime(
    settings: CommonSettings, topic: str, dlt: str, handle: Any, group: str | None = None, **kw: Any
) -> ConsumerRuntime[dict[str, Any]]:
    return ConsumerRuntime(
        name="test.runtime",
        bootstrap=settings.kafka_bootstrap,
        topics=[topic],
        group_id=group if group is not None else f"g-{uuid.uuid4().hex[:6]}",
        decode=decode_json,
        handle=handle,
        dead_letter_topic=dlt,
        policy=FAST,
        **kw,
    )


async def _until(probe: Any, timeout_s: float) -> float:
    started = time.monotonic()
    while not await probe():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s}s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def _assert_idle(runtime: ConsumerRuntime[Any], store: Store, settings: CommonSettings, topic: str) -> None:
    calls = store.calls
    await asyncio.sleep(2.0)
    assert store.calls == calls, "the handler kept being called after everything was handled"
    assert runtime.group_id is not None
    assert await group_lag(settings, runtime.group_id, topic) == 0


async def test_poison_is_dead_lettered_after_n_tries_and_the_next_message_is_processed(
    kafka_topics: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = kafka_topics
    topic, dlt = await _topics(settings)
    store = Store(mongo_client, settings.mongo_db, f"rt_{uuid.uuid4().hex[:6]}")
    # The poison: a valid JSON number that BSON cannot store (int64 overflow).
    await produce(
        settings,
        topic,
        [
            (b"k", json.dumps({"id": "poison", "n": 10**40}).encode()),
            (b"k", b"{not json"),
            (b"k", json.dumps({"id": "normal"}).encode()),
        ],
        partition=0,
    )
    runtime = _runtime(settings, topic, dlt, store.handle)
    runtime.start()
    try:

        async def normal_there() -> bool:
            return "normal" in await store.ids()

        assert await _until(normal_there, 10.0) < 10.0
        letters = []
        for _ in range(50):
            letters = await dead_letters(settings, dlt)
            if len(letters) >= 2:
                break
            await asyncio.sleep(0.2)
        by_class = {letter.reason_class: letter for letter in letters}
        assert set(by_class) == {"overflow", "validation"}, [item.reason for item in letters]
        overflow = by_class["overflow"]
        assert overflow.attempts == FAST.attempts and overflow.error_type == "OverflowError"
        assert "8-byte ints" in overflow.reason
        assert overflow.source_topic == topic and overflow.partition == 0 and overflow.offset == 0
        assert overflow.key == "k" and json.loads(overflow.payload)["n"] == 10**40
        assert overflow.first_failed_at and overflow.last_failed_at
        assert overflow.first_failed_at < overflow.last_failed_at
        bad_json = by_class["validation"]
        assert bad_json.attempts == 1 and bad_json.offset == 1 and bad_json.payload == "{not json"
        assert await store.ids() == {"normal"}
        await _assert_idle(runtime, store, settings, topic)
        assert runtime.stats.dead_lettered == 2
        for cls in ("overflow", "validation"):
            assert DEAD_LETTERS.labels("test.runtime", topic, cls)._value.get() == 1
    finally:
        await runtime.stop()


async def test_one_poison_in_a_batch_costs_only_itself(
    kafka_topics: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = kafka_topics
    topic, dlt = await _topics(settings)
    store = Store(mongo_client, settings.mongo_db, f"rt_{uuid.uuid4().hex[:6]}")
    items = [(b"k", json.dumps({"id": f"ok{i}"}).encode()) for i in range(20)]
    items.insert(7, (b"k", json.dumps({"id": "rejected", "reject": True}).encode()))
    await produce(settings, topic, items, partition=1)
    runtime = _runtime(settings, topic, dlt, store.handle)
    runtime.start()
    try:

        async def all_there() -> bool:
            return len(await store.ids()) == 20

        await _until(all_there, 10.0)
        await _until(lambda: _count_letters(settings, dlt, 1), 10.0)
        [letter] = await dead_letters(settings, dlt)
        # RejectMessage: known-bad, dead-lettered at once (no pointless retries).
        assert letter.reason == "rejected on purpose" and letter.attempts == 1
        assert letter.reason_class == "rejected" and letter.offset == 7
        # Halving finds the poison in ~2·log2(21) calls; message by message would take 22.
        assert runtime.stats.batches == 1 and runtime.stats.handler_calls <= 12, runtime.stats
        await _assert_idle(runtime, store, settings, topic)
    finally:
        await runtime.stop()


async def _count_letters(settings: CommonSettings, dlt: str, n: int) -> bool:
    return len(await dead_letters(settings, dlt)) >= n


async def test_a_mongo_outage_is_waited_out_never_dead_lettered(
    kafka_topics: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = kafka_topics
    topic, dlt = await _topics(settings)
    name = f"rt_{uuid.uuid4().hex[:6]}"
    good = Store(mongo_client, settings.mongo_db, name)
    # MongoDB "unreachable": a client on a port nothing listens on.
    down = AsyncMongoClient("mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=200)
    broken = Store(down, settings.mongo_db, name)
    failures: list[BaseException] = []

    async def handle(deliveries: list[Delivery[dict[str, Any]]]) -> None:
        # More failures than RetryPolicy.attempts: an outage must not count as tries.
        if len(failures) < FAST.attempts + 3:
            try:
                await broken.handle(deliveries)
            except ServerSelectionTimeoutError as exc:
                failures.append(exc)
                raise
        await good.handle(deliveries)

    pauses_before = INFRA_PAUSES.labels("test.runtime")._value.get()
    await produce(settings, topic, [(b"k", json.dumps({"id": "during-outage"}).encode())])
    runtime = _runtime(settings, topic, dlt, handle)
    runtime.start()
    try:

        async def stored() -> bool:
            return "during-outage" in await good.ids()

        await _until(stored, 30.0)
        assert len(failures) == FAST.attempts + 3
        assert all(isinstance(f, ServerSelectionTimeoutError) for f in failures)
        assert INFRA_PAUSES.labels("test.runtime")._value.get() - pauses_before >= len(failures)
        assert runtime.stats.dead_lettered == 0
        assert await dead_letters(settings, dlt) == []
        await _assert_idle(runtime, good, settings, topic)
    finally:
        await runtime.stop()
        await down.close()


async def test_a_group_less_runtime_reads_from_latest_and_commits_nothing(
    kafka_topics: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = kafka_topics
    topic, dlt = await _topics(settings)
    store = Store(mongo_client, settings.mongo_db, f"rt_{uuid.uuid4().hex[:6]}")
    await produce(settings, topic, [(b"k", json.dumps({"id": "before"}).encode())])
    runtime = ConsumerRuntime(
        name="test.runtime",
        bootstrap=settings.kafka_bootstrap,
        topics=[topic],
        group_id=None,
        decode=decode_json,
        handle=store.handle,
        dead_letter_topic=dlt,
        policy=FAST,
        start_at="latest",
    )
    runtime.start()
    try:

        async def assigned() -> bool:
            return runtime._consumer is not None and bool(runtime._consumer.assignment())

        await _until(assigned, 10.0)
        await asyncio.sleep(1.0)  # let the seek to the end land before producing
        await produce(settings, topic, [(b"k", b"\xff\xfe not utf-8"), (b"k", json.dumps({"id": "after"}).encode())])

        async def after_there() -> bool:
            return "after" in await store.ids()

        await _until(after_there, 10.0)
        assert await store.ids() == {"after"}
        [letter] = await dead_letters(settings, dlt)
        # Bytes that aren't UTF-8 survive exactly, for replay.
        assert letter.original_bytes() == b"\xff\xfe not utf-8" and letter.payload_base64
        assert await runtime.lag() == 0
    finally:
        await runtime.stop()


def test_classification() -> None:
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RecordTooLargeError
    from bson.errors import InvalidDocument
    from pydantic import BaseModel, ValidationError
    from pymongo.errors import AutoReconnect, NetworkTimeout, OperationFailure

    class M(BaseModel):
        x: int

    try:
        M.model_validate({"x": "no"})
    except ValidationError as exc:
        invalid = exc
    c = Classifier()
    for exc in (
        AutoReconnect("x"),
        NetworkTimeout("x"),
        ServerSelectionTimeoutError("x"),
        KafkaConnectionError(),
        ConnectionRefusedError(),
        TimeoutError(),
        OperationFailure("(SQLITE_BUSY) database is locked"),
    ):
        assert c.kind(exc) is FailureKind.INFRASTRUCTURE, exc
    for exc, cls in (
        (invalid, "validation"),
        (OverflowError("8-byte ints"), "overflow"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), "encoding"),
        (InvalidDocument("key"), "storage"),
        (OperationFailure("bad value", 2), "storage"),
        (KeyError("bug"), "error"),
        # Kafka errors about the record never clear by waiting.
        (MessageSizeTooLargeError(), "error"),
        (RecordTooLargeError(), "error"),
    ):
        assert c.kind(exc) is FailureKind.MESSAGE, exc
        assert reason_class(exc) == cls
    assert Classifier(extra_infrastructure=(KeyError,)).kind(KeyError("x")) is FailureKind.INFRASTRUCTURE


async def test_kafka_unreachable_pauses_with_backoff_not_a_hot_loop(kafka_topics: CommonSettings) -> None:
    calls = 0

    async def handle(deliveries: list[Delivery[dict[str, Any]]]) -> None:
        nonlocal calls
        calls += 1

    runtime = ConsumerRuntime(
        name="test.kafka-down",
        bootstrap="127.0.0.1:9",
        topics=["nowhere"],
        group_id="g-down",
        decode=decode_json,
        handle=handle,
        dead_letter_topic="nowhere.deadletter",
        policy=RetryPolicy(pause_initial_s=0.2, pause_max_s=1.0),
    )
    before = INFRA_PAUSES.labels("test.kafka-down")._value.get()
    runtime.start()
    try:
        await asyncio.sleep(4.0)
        pauses = INFRA_PAUSES.labels("test.kafka-down")._value.get() - before
        # Backoff 0.2, 0.4, 0.8, 1.0, ... (+ jitter, + connect attempts): a handful, not thousands.
        assert 1 <= pauses <= 10, pauses
        assert runtime.alive and calls == 0 and runtime.stats.dead_lettered == 0
    finally:
        await asyncio.wait_for(runtime.stop(), 10)
    assert not runtime.alive
