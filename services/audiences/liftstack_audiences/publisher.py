"""Publishing to `audience.members` and `audience.progress`, keyed by sync id (so one
sync's batches and its completion stay in order on one partition)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from liftstack_shared.messages import (
    AudienceMembersBatch,
    AudienceSyncCompleted,
    AudienceSyncProgress,
)
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import AUDIENCE_MEMBERS, AUDIENCE_PROGRESS


class AudiencePublisher:
    def __init__(self, broker: KafkaBroker, settings: CommonSettings) -> None:
        self._broker = broker
        self._members_topic = settings.topic(AUDIENCE_MEMBERS.name)
        self._progress_topic = settings.topic(AUDIENCE_PROGRESS.name)

    async def members(self, batch: AudienceMembersBatch) -> None:
        """Returns once every in-sync replica has the batch (acks=all)."""
        await self._publish(batch.to_bytes(), self._members_topic, batch.sync_id)

    async def completed(self, message: AudienceSyncCompleted) -> None:
        await self._publish(message.to_bytes(), self._members_topic, message.sync_id)

    async def progress(self, message: AudienceSyncProgress) -> None:
        await self._publish(message.to_bytes(), self._progress_topic, message.sync_id)

    async def _publish(self, body: bytes, topic: str, sync_id: str) -> None:
        # Pre-serialised bytes with an explicit content type: one pydantic dump per
        # message, and consumers still decode it as JSON into the contract model.
        await self._broker.publish(body, topic, key=sync_id.encode(), headers={"content-type": "application/json"})
