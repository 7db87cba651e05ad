"""The gateway's side of Kafka: connecting (in the background, so the gateway can
serve 503s while Kafka is away), publishing events with a bounded wait for the
acknowledgement, and best-effort observations for the Events page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from faststream.kafka import KafkaBroker

from liftstack_ingest import metrics
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.messages import EngagementEvent, IngestObservation
from liftstack_shared.topics import ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS

log = logging.getLogger(__name__)


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time (or isn't connected): answer 503."""


class EventPublisher:
    def __init__(self, broker: KafkaBroker, settings: IngestSettings) -> None:
        self._broker = broker
        self._settings = settings
        self._events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
        self._observations_topic = settings.topic(INGEST_OBSERVATIONS.name)
        self._timeout = settings.publish_timeout_s
        self._connected = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.connected

    async def connect_forever(self) -> None:
        """Start the broker (producer and subscribers) once Kafka answers; retry with
        backoff until it does. Run as a task; cancel it to give up."""
        delay = 0.5
        while True:
            if await _reachable(self._settings.kafka_bootstrap):
                try:
                    await self._broker.start()
                    self._connected.set()
                    log.info("connected to Kafka")
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means retry
                    log.warning("Kafka start failed (%s); retrying", type(exc).__name__)
                    with contextlib.suppress(Exception):
                        await self._broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def publish_event(self, event: EngagementEvent, key: bytes) -> None:
        """Return only once Kafka acknowledged the event (acks=all), else raise
        `KafkaUnavailable` within `publish_timeout_s`."""
        if not self.connected:
            raise KafkaUnavailable("not connected")
        started = time.perf_counter()
        try:
            await asyncio.wait_for(
                self._broker.publish(event, self._events_topic, key=key), self._timeout
            )
        except Exception as exc:  # noqa: BLE001 - whatever failed, the event isn't stored
            log.warning("publish to %s failed: %s", self._events_topic, type(exc).__name__)
            raise KafkaUnavailable(type(exc).__name__) from None
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)

    def observe(self, observation: IngestObservation) -> None:
        """Best effort, off the request path: an observation only feeds counts."""
        if not self.connected:
            metrics.OBSERVATIONS_DROPPED.inc()
            return
        task = asyncio.create_task(self._observe(observation))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _observe(self, observation: IngestObservation) -> None:
        try:
            await asyncio.wait_for(
                self._broker.publish(
                    observation, self._observations_topic,
                    key=observation.connection_id.encode(),
                ),
                self._timeout,
            )
        except Exception as exc:  # noqa: BLE001 - best effort by design
            metrics.OBSERVATIONS_DROPPED.inc()
            log.debug("observation dropped: %s", type(exc).__name__)

    async def check(self) -> None:
        """Health check: connected and the cluster answers."""
        if not self.connected or not await self._broker.ping(timeout=3.0):
            raise ConnectionError("Kafka is not reachable")

    async def close(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self._timeout)
        if self.connected:
            await self._broker.stop()
            self._connected.clear()


async def _reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """Can we open a TCP connection to any bootstrap server? (Cheap, and unlike a
    failed client start it leaves no half-open client behind.)"""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host or "127.0.0.1", int(port)), timeout_s
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
