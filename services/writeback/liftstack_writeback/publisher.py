"""Writeback's Kafka producer: a re-trigger's assignment batches onto
`campaign.assignments`, and the consumer's dead letters onto its dead-letter topic."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from liftstack_shared.consumer import kafka_dead_letter_sink
from liftstack_shared.messages import AssignmentBatch, DeadLetter
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER
from liftstack_writeback.settings import WritebackSettings


class Publisher:
    def __init__(self, settings: WritebackSettings) -> None:
        self._settings = settings
        self._assignments = settings.topic(CAMPAIGN_ASSIGNMENTS.name)
        self._dead_letters = settings.topic(WRITEBACK_DEADLETTER.name)
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Made here, not in __init__: an aiokafka client binds to the event loop it is
        # created on, and the app is built before the serving loop runs.
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id="liftstack-writeback",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=15_000,
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def _started(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise RuntimeError("the publisher is not started")
        return self.producer

    async def assignments(self, batches: list[AssignmentBatch]) -> None:
        """Publish the batches (keyed by connection, like the engine's) and wait until
        every one is acknowledged by all replicas."""
        producer = self._started()
        sends = [
            await producer.send(self._assignments, batch.to_bytes(), key=batch.connection_id.encode())
            for batch in batches
        ]
        await asyncio.gather(*sends)

    async def dead_letter(self, letter: DeadLetter) -> None:
        await kafka_dead_letter_sink(self._started(), self._dead_letters)(letter)
