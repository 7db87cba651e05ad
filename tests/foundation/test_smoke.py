"""Round trips through the real servers: the foundation every service stands on."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream import AckPolicy
from pymongo.errors import DuplicateKeyError

from liftstack_shared.kafka import make_broker
from liftstack_shared.messages import Assignment, AssignmentBatch
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS


async def test_pydantic_message_round_trips_through_kafka_with_group_commit(kafka_topics):
    settings = kafka_topics
    topic = settings.topic(CAMPAIGN_ASSIGNMENTS.name)
    group = f"smoke-{uuid.uuid4().hex[:8]}"
    sent = AssignmentBatch(
        job_id="job-1",
        workspace_id="ws-1",
        connection_id="conn-1",
        campaign_key="spring",
        batch_seq=0,
        batch_count=1,
        total_recipients=2,
        assignments=[
            Assignment(email="a@example.com", variant="A"),
            Assignment(user_id="u-2", variant="B"),
        ],
    )
    received: asyncio.Future[AssignmentBatch] = asyncio.get_running_loop().create_future()

    broker = make_broker(settings, "smoke")

    @broker.subscriber(topic, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK)
    async def handle(batch: AssignmentBatch) -> None:
        if batch.job_id == sent.job_id and not received.done():
            received.set_result(batch)

    async with broker:
        await broker.start()
        await broker.publish(sent, topic, key=sent.connection_id.encode())
        got = await asyncio.wait_for(received, timeout=60)
        assert got == sent
        assert isinstance(got.assignments[1], Assignment) and got.assignments[1].user_id == "u-2"
        # give the ack (offset commit) a moment to reach the group coordinator
        await asyncio.sleep(1)

    # The group's committed offsets must cover the message we consumed.
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        committed = {p: await probe.committed(TopicPartition(topic, p)) for p in range(CAMPAIGN_ASSIGNMENTS.partitions)}
    finally:
        await probe.stop()
    assert sum(v or 0 for v in committed.values()) >= 1, committed


async def test_document_with_unique_index_round_trips_through_mongo_wire_server(mongo_client, settings):
    db = mongo_client[settings.mongo_db]
    collection = db["smoke_connections"]
    await collection.create_index([("workspace_id", 1), ("name", 1)], unique=True)

    await collection.insert_one({"workspace_id": "ws-1", "name": "Production", "region": "US"})
    with pytest.raises(DuplicateKeyError):
        await collection.insert_one({"workspace_id": "ws-1", "name": "Production"})
    # Same name in another workspace is fine: the index is per workspace.
    await collection.insert_one({"workspace_id": "ws-2", "name": "Production"})

    doc = await collection.find_one({"workspace_id": "ws-1", "name": "Production"})
    assert doc is not None and doc["region"] == "US"
    assert await collection.count_documents({"name": "Production"}) == 2
