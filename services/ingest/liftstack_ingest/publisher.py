"""The gateway's side of Kafka: connecting (in the background, so the gateway can
serve 503s while Kafka is away), publishing events with a bounded wait for the
acknowledgement, and best-effort observations for the Events page.

While connected, a monitor checks every `MONITOR_INTERVAL_S` that a broker accepts
TCP connections; a publish that failed or timed out also marks Kafka down until a
metadata round trip succeeds again. While Kafka is known to be down a webhook is
answered 503 at once instead of waiting `publish_timeout_s` for an ack that can't
come; the wait is kept only for sends in flight.

The producer is aiokafka's own (acks=all, idempotent), without FastStream's
publishing layer: this is the gateway's hot path, and that layer cost more CPU per
event than the rest of the send. Messages are the contract model's JSON, as
FastStream would send them; keys are hashed with Kafka's murmur2 (the Java
client's partitioner), memoised because one recipient's events share a key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import lru_cache

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from liftstack_ingest import metrics
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.messages import EngagementEvent, IngestObservation
from liftstack_shared.retry import backoff
from liftstack_shared.topics import ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 0.5


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time (or isn't connected): answer 503."""


@lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_for(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Kafka's default partitioner (murmur2 of the key), with the hash memoised."""
    if key is None:  # not sent by the gateway (every event has its recipient's key)
        return (available or all_partitions)[0]
    return all_partitions[_key_hash(key) % len(all_partitions)]


class EventPublisher:
    def __init__(self, settings: IngestSettings) -> None:
        self._producer: AIOKafkaProducer | None = None
        self._settings = settings
        self._events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
        self._observations_topic = settings.topic(INGEST_OBSERVATIONS.name)
        self._timeout = settings.publish_timeout_s
        self._connected = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        # Known down: the monitor couldn't reach a broker, or a publish failed and
        # no metadata round trip has succeeded since.
        self._down_reason: str | None = None
        self._publish_failed = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def available(self) -> bool:
        """Connected and not known to be down: worth waiting for an ack."""
        return self.connected and self._down_reason is None

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.connected

    def start(self) -> None:
        """Connect in the background (`_connect_forever`); `close` stops it."""
        if self._task is None:
            self._task = asyncio.create_task(self._connect_forever(), name="kafka-connect")

    async def _connect_forever(self) -> None:
        """Start the producer once Kafka answers, retrying with backoff until it
        does; then watch it (`_monitor`) until cancelled."""
        async for attempt in backoff(attempts=None, first_s=0.5, max_s=10.0):
            with attempt:
                await self._start_producer()
        self._connected.set()
        log.info("connected to Kafka")
        await self._monitor()

    async def _start_producer(self) -> None:
        # A TCP probe first: unlike a failed client start it leaves nothing half-open.
        if not await _reachable(self._settings.kafka_bootstrap):
            raise KafkaUnavailable("no broker accepts connections")
        # Kept before it starts, so `close` stops a start that its cancel cut short.
        self._producer = producer = self._new_producer()
        try:
            await producer.start()
        except Exception as exc:
            log.warning("Kafka start failed (%s); retrying", type(exc).__name__)
            self._producer = None
            with contextlib.suppress(Exception):
                await producer.stop()
            raise

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id="ingest",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=15_000,
            partitioner=partition_for,
        )

    async def _monitor(self) -> None:
        """Runs for as long as the broker is started: keeps `available` true to what
        the gateway can know without sending. A fixed-interval probe, not a retry:
        nothing here backs off."""
        while True:
            if not await _reachable(self._settings.kafka_bootstrap, PROBE_TIMEOUT_S):
                self._mark_down("no broker accepts connections")
            elif self._publish_failed:
                if await self._ping(PROBE_TIMEOUT_S * 2):
                    self._publish_failed = False
                    self._mark_up()
            else:
                self._mark_up()
            await asyncio.sleep(MONITOR_INTERVAL_S)

    async def _ping(self, timeout_s: float) -> bool:
        try:
            assert self._producer is not None
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout_s)
            return True
        except Exception:  # noqa: BLE001 - any failure means not answering
            return False

    def _mark_down(self, reason: str) -> None:
        if self._down_reason is None:
            log.warning("Kafka is down (%s): webhooks answer 503 at once", reason)
        self._down_reason = reason

    def _mark_up(self) -> None:
        if self._down_reason is not None:
            log.info("Kafka is reachable again")
        self._down_reason = None

    async def publish_event(self, event: EngagementEvent, key: bytes) -> None:
        """Return only once Kafka acknowledged the event (acks=all), else raise
        `KafkaUnavailable`: at once when Kafka is known to be down, else within
        `publish_timeout_s`."""
        if not self.connected:
            raise KafkaUnavailable("not connected")
        if self._down_reason is not None:
            metrics.PUBLISH_REFUSED.inc()
            raise KafkaUnavailable(self._down_reason)
        assert self._producer is not None
        started = time.perf_counter()
        try:
            # The whole send is bounded: waiting for metadata or buffer space too.
            value = event.__pydantic_serializer__.to_json(event)
            await asyncio.wait_for(self._producer.send_and_wait(self._events_topic, value, key=key), self._timeout)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the event isn't stored
            log.warning("publish to %s failed: %s", self._events_topic, type(exc).__name__)
            self._publish_failed = True
            self._mark_down(f"a publish failed ({type(exc).__name__})")
            raise KafkaUnavailable(type(exc).__name__) from None
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)

    def observe(self, observation: IngestObservation) -> None:
        """Best effort, off the request path: an observation only feeds counts."""
        if not self.available:
            metrics.OBSERVATIONS_DROPPED.inc()
            return
        task = asyncio.create_task(self._observe(observation))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _observe(self, observation: IngestObservation) -> None:
        try:
            assert self._producer is not None
            value = observation.__pydantic_serializer__.to_json(observation)
            key = observation.connection_id.encode()
            await asyncio.wait_for(
                self._producer.send_and_wait(self._observations_topic, value, key=key), self._timeout
            )
        except Exception as exc:  # noqa: BLE001 - best effort by design
            metrics.OBSERVATIONS_DROPPED.inc()
            log.debug("observation dropped: %s", type(exc).__name__)

    async def check(self) -> None:
        """Health check: connected, not known down, and the cluster answers."""
        if not self.available or not await self._ping(1.0):
            raise ConnectionError("Kafka is not reachable")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=self._timeout)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._connected.clear()


async def _reachable(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """Can we open a TCP connection to any bootstrap server? (Cheap, and unlike a
    failed client start it leaves no half-open client behind.)"""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), timeout_s)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False
