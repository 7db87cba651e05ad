"""The gateway's `connection.changed` listener on the shared runtime (real Kafka):
a poison message is dead-lettered with its reason, the change after it still drops
the cached connection within 10 s, and the listener is idle afterwards."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from liftstack_ingest.consumers import CONNECTION_LISTENER, connection_changes_consumer
from liftstack_ingest.lookup import InMemoryConnections
from liftstack_shared.consumer import RetryPolicy
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.messages import ConnectionChanged
from liftstack_shared.topics import CONNECTION_CHANGED, CONNECTION_CHANGED_DEADLETTER
from tests.fixtures.kafka_tools import dead_letters, produce, wait_for
from tests.ingest.conftest import ingest_settings_from

pytestmark = pytest.mark.integration


class RecordingConnections(InMemoryConnections):
    def __init__(self) -> None:
        super().__init__()
        self.invalidated: list[str] = []

    def invalidate(self, connection_id: str) -> None:
        self.invalidated.append(connection_id)


async def test_a_poison_change_is_dead_lettered_and_the_next_change_still_invalidates(kafka_topics) -> None:
    settings = ingest_settings_from(kafka_topics, topic_prefix=f"{kafka_topics.topic_prefix}cc{uuid.uuid4().hex[:6]}.")
    await ensure_topics(settings, (CONNECTION_CHANGED, CONNECTION_CHANGED_DEADLETTER))
    connections = RecordingConnections()
    runtime = connection_changes_consumer(settings, connections, RetryPolicy(attempts=3, retry_initial_s=0.05))
    runtime.start()
    try:

        async def listening():
            consumer = runtime._consumer  # "assigned and at the end" is what we wait for
            return consumer is not None and bool(consumer.assignment()) and await runtime.lag() == 0

        await wait_for(listening, 15.0, "the listener assigned to connection.changed")
        await asyncio.sleep(0.5)  # a group-less consumer reads from `latest`: let the seek land
        topic = settings.topic(CONNECTION_CHANGED.name)
        await produce(
            settings,
            topic,
            [
                (b"conn_poison", b"\x00\x01 not json"),
                (b"conn_poison", json.dumps({"connection_id": "conn_poison", "change": "exploded"}).encode()),
                (
                    b"conn_ok",
                    ConnectionChanged(connection_id="conn_ok", workspace_id="ws", change="deleted").to_bytes(),
                ),
            ],
            partition=0,
        )

        async def invalidated():
            return "conn_ok" in connections.invalidated or None

        _, took = await wait_for(invalidated, 10.0, "the valid change after the poison")
        assert took < 10.0 and connections.invalidated == ["conn_ok"]

        async def letters():
            found = await dead_letters(settings, settings.topic(CONNECTION_CHANGED_DEADLETTER.name))
            return found if len(found) >= 2 else None

        found, _ = await wait_for(letters, 10.0, "two dead letters")
        assert [(item.offset, item.reason_class, item.consumer) for item in found] == [
            (0, "validation", CONNECTION_LISTENER),
            (1, "validation", CONNECTION_LISTENER),
        ]
        assert "change" in found[1].reason and found[0].original_bytes() == b"\x00\x01 not json"
        calls = runtime.stats.handler_calls
        await asyncio.sleep(2.0)
        assert runtime.stats.handler_calls == calls and await runtime.lag() == 0
        assert len(await dead_letters(settings, settings.topic(CONNECTION_CHANGED_DEADLETTER.name))) == 2
    finally:
        await runtime.stop()
