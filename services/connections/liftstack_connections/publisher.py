"""The Kafka adapter: publishing `connection.changed` so other services can refresh or drop caches."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from liftstack_shared.messages.connections import ConnectionChanged
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import CONNECTION_CHANGED

log = logging.getLogger("liftstack.connections.events")


class Broker(Protocol):
    async def publish(self, message: ConnectionChanged, topic: str, *, key: bytes) -> object: ...


class EventPublisher:
    def __init__(self, broker: Broker, settings: CommonSettings, timeout_s: float = 10.0) -> None:
        self._broker = broker
        self._topic = settings.topic(CONNECTION_CHANGED.name)
        # Bounds how long a user's save waits on an unavailable Kafka.
        self._timeout_s = timeout_s

    async def publish(self, event: ConnectionChanged) -> None:
        """Best effort after the write succeeded: the database is the source of truth
        and readers' caches expire on their own (ConnectionsClient TTL), so a Kafka
        outage must not turn a saved change into an error the user would retry."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._broker.publish(event, self._topic, key=event.connection_id.encode())
        except Exception as exc:  # noqa: BLE001 - any publish failure is handled alike
            log.error(
                "could not publish connection.changed %s for %s: %s",
                event.change,
                event.connection_id,
                type(exc).__name__,
            )
