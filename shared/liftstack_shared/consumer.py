"""The one Kafka consumer runtime every liftstack consumer runs on.

Contract, per message: it is **processed**; or **retried** with backoff a bounded
number of times; or **dead-lettered** (reason, source topic/partition/offset, key,
payload, attempts, first/last failure) and committed past. Never a hot loop.

- An infrastructure outage (MongoDB, Kafka or a service we call unreachable or timing
  out) is not the message's fault: the work is paused with capped exponential backoff
  and tried again for as long as the outage lasts. It never dead-letters anything.
- Anything else (validation, integer overflow, encoding, a storage rejection, a bug)
  is the message's fault: after `RetryPolicy.attempts` tries it is dead-lettered.
- Decoding (bytes -> contract model) is pure, so a message that fails to decode is
  dead-lettered on its first try: the same bytes would fail the same way again.

Two pieces:

- `MessageGuard` runs one message's work under that contract (classification, bounded
  retries via tenacity, infra pauses, the dead-letter path, metrics). Writeback's
  windowed `OrderedConsumer` uses it per record.
- `ConsumerRuntime` is the consumption loop on aiokafka for everyone else: fetch a
  batch, decode each record, hand the batch to the handler, commit the offsets past
  it only after it was processed or dead-lettered. A batch whose handler fails for a
  message's fault is split: each message is retried on its own, so one poison message
  costs only itself. Handlers must be idempotent (redelivery after a crash, retries,
  and re-sent events all repeat work): dedupe with `liftstack_shared.mongo.insert_once`.

aiokafka directly, not FastStream: FastStream acknowledges message by message and
decides retries itself; here commits happen only after a batch is durably handled
or dead-lettered, and one loop serves group consumers (commit) and group-less ones
(every instance sees every message: `group_id=None`, no commits).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.structs import OffsetAndMetadata
from bson.errors import BSONError
from prometheus_client import Counter
from pydantic import ValidationError
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WaitQueueTimeoutError,
    WTimeoutError,
)
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_never
from tenacity.wait import wait_exponential_jitter

from liftstack_shared.messages import DeadLetter, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")

# ------------------------------------------------------------------------- metrics

DEAD_LETTERS = Counter(
    "liftstack_consumer_dead_letters_total",
    "Messages dead-lettered, by consumer group, source topic and reason class.",
    ["consumer_group", "topic", "reason_class"],
)
MESSAGES = Counter(
    "liftstack_consumer_messages_total",
    "Messages consumed, by consumer group, topic and outcome (processed, dead_lettered).",
    ["consumer_group", "topic", "outcome"],
)
INFRA_PAUSES = Counter(
    "liftstack_consumer_infrastructure_pauses_total",
    "Times a consumer paused for an infrastructure outage (MongoDB, Kafka, a service).",
    ["consumer_group"],
)

# ------------------------------------------------------------------ classification


class FailureKind(StrEnum):
    INFRASTRUCTURE = "infrastructure"  # wait it out; never the message's fault
    MESSAGE = "message"  # retried a bounded number of times, then dead-lettered


class RejectMessage(Exception):
    """Raised by a handler that knows a message can never be processed (an unknown
    connection, a batch contradicting its job): dead-lettered at once, no retries."""

    def __init__(self, reason: str, reason_class: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_class = reason_class


# PyMongo: the server is unreachable or slow. (ServerSelectionTimeoutError, AutoReconnect,
# NetworkTimeout, NotPrimaryError are ConnectionFailures.) Everything else a PyMongo call
# raises (a rejected document, BSON encoding) is about the data.
_MONGO_OUTAGE: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    ExecutionTimeout,
    WTimeoutError,
    WaitQueueTimeoutError,
)
_INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    *_MONGO_OUTAGE,
    KafkaError,
    OSError,
    TimeoutError,
    httpx.TransportError,
)
# Kafka errors about the record itself (too large to publish, corrupt) never clear by
# waiting: they are the message's fault, although they are KafkaErrors.
_KAFKA_MESSAGE_FAULTS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
)
# FerretDB on SQLite answers a write it could not lock in time with an OperationFailure
# naming SQLite's busy state: that is load, not the data.
_BUSY_MARKERS = ("SQLITE_BUSY", "database is locked")


@dataclass(frozen=True)
class Classifier:
    """Tells an infrastructure outage from the message's fault. A service adds the
    exceptions of its own dependencies that mean "unreachable" (e.g. writeback: the
    connections service being down)."""

    extra_infrastructure: tuple[type[BaseException], ...] = ()

    def kind(self, exc: BaseException) -> FailureKind:
        if isinstance(exc, (RejectMessage, *_KAFKA_MESSAGE_FAULTS)):
            return FailureKind.MESSAGE
        if isinstance(exc, _INFRASTRUCTURE + self.extra_infrastructure):
            return FailureKind.INFRASTRUCTURE
        if isinstance(exc, OperationFailure) and any(m in str(exc) for m in _BUSY_MARKERS):
            return FailureKind.INFRASTRUCTURE
        return FailureKind.MESSAGE


DEFAULT_CLASSIFIER = Classifier()


def reason_class(exc: BaseException) -> str:
    """A small, fixed vocabulary for metrics labels and the Events page."""
    if isinstance(exc, RejectMessage):
        return exc.reason_class
    if isinstance(exc, (ValidationError, json.JSONDecodeError)):
        return "validation"
    if isinstance(exc, OverflowError):
        return "overflow"
    if isinstance(exc, UnicodeError):
        return "encoding"
    if isinstance(exc, (BSONError, PyMongoError)):
        return "storage"
    return "error"


def describe(exc: BaseException) -> str:
    """The dead letter's reason: what failed, never the input values (they may carry
    personal data; the payload is kept separately)."""
    if isinstance(exc, RejectMessage):
        return exc.reason
    if isinstance(exc, ValidationError):
        return "invalid message: " + validation_summary(exc)
    text = str(exc).strip()
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def validation_summary(exc: ValidationError) -> str:
    # Locations and messages only: never the input values.
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


# ------------------------------------------------------------------- dead letters

# Kafka's default maximum message is 1 MB; a letter carries the payload (maybe as
# base64) plus its own fields. Beyond this the payload is cut so the letter itself
# can always be published (and says so).
MAX_PAYLOAD_CHARS = 600_000


@dataclass
class Failure:
    """What happened to one message across its attempts."""

    exc: BaseException
    attempts: int
    first_at: datetime
    last_at: datetime


def build_dead_letter(record: ConsumerRecord[Any, Any], consumer: str, failure: Failure) -> DeadLetter:
    """The one place a dead letter is made, for every consumer."""
    raw = record.value if isinstance(record.value, bytes) else b""
    key = record.key.decode("utf-8", "replace") if isinstance(record.key, bytes) else None
    truncated = False
    try:
        payload, payload_b64 = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        payload = raw.decode("utf-8", "replace")
        payload_b64 = base64.b64encode(raw).decode()
    if len(payload) > MAX_PAYLOAD_CHARS or (payload_b64 and len(payload_b64) > MAX_PAYLOAD_CHARS):
        payload, payload_b64, truncated = payload[:MAX_PAYLOAD_CHARS], None, True
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        consumer=consumer,
        reason=describe(failure.exc),
        payload=payload,
        reason_class=reason_class(failure.exc),
        error_type=type(failure.exc).__name__,
        attempts=failure.attempts,
        first_failed_at=failure.first_at,
        last_failed_at=failure.last_at,
        payload_base64=payload_b64,
        payload_truncated=truncated,
    )


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


def kafka_dead_letter_sink(producer: AIOKafkaProducer, topic: str) -> DeadLetterSink:
    """Publish letters to `topic`, keyed like the source message, acked by all replicas."""

    async def publish(letter: DeadLetter) -> None:
        await producer.send_and_wait(topic, letter.to_bytes(), key=letter.key.encode() if letter.key else None)

    return publish


# ------------------------------------------------------------------------ the guard


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries of a message-fault failure before it is dead-lettered
    retry_initial_s: float = 0.2  # backoff between those tries (exponential, jittered)
    retry_max_s: float = 2.0
    pause_initial_s: float = 0.5  # backoff while infrastructure is out (exponential, capped)
    pause_max_s: float = 30.0


class Outcome(StrEnum):
    PROCESSED = "processed"
    DEAD_LETTERED = "dead_lettered"


@dataclass
class _Tries:
    count: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    def note(self, state: RetryCallState) -> None:
        self.count += 1
        self.last_at = utcnow()
        self.first_at = self.first_at or self.last_at


class MessageGuard:
    """Runs one message's work under the runtime's contract (see the module doc)."""

    def __init__(
        self,
        *,
        consumer: str,
        dead_letters: DeadLetterSink,
        policy: RetryPolicy = RetryPolicy(),
        classifier: Classifier = DEFAULT_CLASSIFIER,
    ) -> None:
        self.consumer = consumer
        self.policy = policy
        self.classifier = classifier
        self._sink = dead_letters

    def is_infrastructure(self, exc: BaseException) -> bool:
        return isinstance(exc, Exception) and self.classifier.kind(exc) is FailureKind.INFRASTRUCTURE

    def is_message_fault(self, exc: BaseException) -> bool:
        return isinstance(exc, Exception) and self.classifier.kind(exc) is FailureKind.MESSAGE

    async def through_outages(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()`, retried after every infrastructure failure with capped exponential
        backoff, for as long as it takes. A message-fault failure is raised."""
        policy = self.policy
        retrying = AsyncRetrying(
            retry=retry_if_exception(self.is_infrastructure),
            wait=wait_exponential_jitter(
                multiplier=policy.pause_initial_s, max=policy.pause_max_s, jitter=policy.pause_initial_s
            ),
            stop=stop_never,
            before_sleep=self._log_pause,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await work()
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def run(self, record: ConsumerRecord[Any, Any], work: Callable[[], Awaitable[None]]) -> Outcome:
        """Process `record` with `work()`; returns once it is processed or its dead
        letter is acknowledged. Only cancellation propagates."""
        tries = _Tries()
        policy = self.policy

        def give_up(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            return tries.count >= policy.attempts or isinstance(exc, RejectMessage)

        async def with_retries() -> None:
            retrying = AsyncRetrying(
                retry=retry_if_exception(self.is_message_fault),
                wait=wait_exponential_jitter(
                    multiplier=policy.retry_initial_s, max=policy.retry_max_s, jitter=policy.retry_initial_s
                ),
                stop=give_up,
                after=tries.note,
                before_sleep=lambda state: self._log_retry(record, state, tries.count),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await work()

        try:
            await self.through_outages(with_retries)
        except Exception as exc:  # noqa: BLE001 - a message fault, retries exhausted
            now = utcnow()
            failure = Failure(exc, max(tries.count, 1), tries.first_at or now, tries.last_at or now)
            await self.dead_letter(record, failure)
            return Outcome.DEAD_LETTERED
        MESSAGES.labels(self.consumer, record.topic, Outcome.PROCESSED.value).inc()
        return Outcome.PROCESSED

    async def dead_letter(self, record: ConsumerRecord[Any, Any], failure: Failure) -> DeadLetter:
        """Publish the letter (waiting out a Kafka outage) and count it."""
        letter = build_dead_letter(record, self.consumer, failure)
        await self.through_outages(lambda: self._sink(letter))
        log.warning(
            "dead-lettered %s[%d]@%d for %s after %d attempt(s): %s",
            record.topic,
            record.partition,
            record.offset,
            self.consumer,
            failure.attempts,
            letter.reason,
        )
        DEAD_LETTERS.labels(self.consumer, record.topic, letter.reason_class or "error").inc()
        MESSAGES.labels(self.consumer, record.topic, Outcome.DEAD_LETTERED.value).inc()
        return letter

    def _log_pause(self, state: RetryCallState) -> None:
        INFRA_PAUSES.labels(self.consumer).inc()
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s: infrastructure unavailable (%s: %s); pausing %.1fs",
            self.consumer,
            type(exc).__name__,
            str(exc)[:200],
            delay,
        )

    def _log_retry(self, record: ConsumerRecord[Any, Any], state: RetryCallState, tries: int) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: %s[%d]@%d failed (%d/%d): %s; retrying",
            self.consumer,
            record.topic,
            record.partition,
            record.offset,
            tries,
            self.policy.attempts,
            describe(exc) if exc else "?",
        )


# ---------------------------------------------------------------------- the runtime


@dataclass(frozen=True)
class Delivery(Generic[T]):
    record: ConsumerRecord[Any, Any]
    message: T


Decode = Callable[[ConsumerRecord[Any, Any]], T]
BatchHandler = Callable[[list[Delivery[T]]], Awaitable[None]]
StartAt = Literal["earliest", "latest"] | datetime


@dataclass
class RuntimeStats:
    handler_calls: int = 0
    processed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    last_dead_letters: list[DeadLetter] = field(default_factory=list)  # the latest 10


class ConsumerRuntime(Generic[T]):
    """Consume `topics` until stopped (see the module doc).

    `group_id` set: one of a consumer group; offsets committed after each batch.
    `group_id=None`: every instance reads every partition from `start_at`
    (earliest, latest or a time), nothing is committed (e.g. cache invalidation).

    `revoke_grace_s` (group consumers): when the group rebalances, give partitions up
    only once the batch in hand is handled and committed, waiting at most this long,
    so the next owner starts where this one stopped instead of handling that batch
    again (the default, None, gives them up at once). Keep it below the session
    timeout (10 s), which bounds how long the group waits for a member to rejoin."""

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str | None,
        decode: Decode[T],
        handle: BatchHandler[T],
        dead_letter_topic: str,
        policy: RetryPolicy = RetryPolicy(),
        classifier: Classifier = DEFAULT_CLASSIFIER,
        max_batch: int = 100,
        fetch_timeout_ms: int = 500,
        start_at: StartAt = "earliest",
        consumer_options: dict[str, Any] | None = None,
        revoke_grace_s: float | None = None,
    ) -> None:
        self.name = name
        self.topics = list(topics)
        self.group_id = group_id
        self._bootstrap = bootstrap
        self._decode = decode
        self._handle = handle
        self._dead_letter_topic = dead_letter_topic
        self._max_batch = max_batch
        self._fetch_timeout_ms = fetch_timeout_ms
        self._start_at = start_at
        self._options = consumer_options or {}
        self._producer: AIOKafkaProducer | None = None
        self.guard = MessageGuard(
            consumer=name, dead_letters=self._publish_dead_letter, policy=policy, classifier=classifier
        )
        self.stats = RuntimeStats()
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}  # group-less: where to resume
        self._revoke_grace_s = revoke_grace_s
        self._between_batches = asyncio.Event()
        self._between_batches.set()

    # -- lifecycle

    def start(self) -> None:
        """Start consuming in the background (connecting waits out a Kafka outage)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"consumer-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def lag(self) -> int:
        """Messages not yet committed past (group) or not yet read (group-less)."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError(f"{self.name} is not connected")
        tps = list(consumer.assignment())
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        total = 0
        for tp in tps:
            if self.group_id is None:
                done = await consumer.position(tp)
            else:
                done = await consumer.committed(tp) or 0
            total += max(0, ends[tp] - done)
        return total

    # -- the loop

    async def _run(self) -> None:
        opened = 0
        while True:
            try:
                await self.guard.through_outages(self._open)
                opened += 1
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka went away mid-fetch, or a bug here
                if self.guard.is_infrastructure(exc):
                    INFRA_PAUSES.labels(self.name).inc()
                    log.warning("%s: Kafka unavailable (%s); reconnecting", self.name, exc)
                else:
                    log.exception("%s: consumer loop failed; reopening", self.name)
                await self._close()
                # Never a hot loop: reopening redelivers the uncommitted batch.
                await asyncio.sleep(min(self.guard.policy.pause_max_s, 2.0 * opened))

    async def _open(self) -> None:
        await self._close()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
            client_id=f"liftstack-{self.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._start_at == "earliest" else "latest",
            # An infrastructure pause holds the loop between fetches: allow it.
            max_poll_interval_ms=30 * 60 * 1000,
            **self._options,
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=f"liftstack-{self.name}-deadletters",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=15_000,
        )
        self._consumer, self._producer = consumer, producer
        await consumer.start()
        await producer.start()
        # Known partitions first (a topic missing is waited out like an outage): a group
        # joined before its topics' metadata arrived would sit with no partitions.
        tps: list[TopicPartition] = []
        for topic in self.topics:
            partitions = await _partitions_for(consumer, topic)
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        if self.group_id is not None:
            if self._revoke_grace_s is None:
                consumer.subscribe(self.topics)
            else:
                consumer.subscribe(self.topics, listener=_FinishBatchFirst(self, self._revoke_grace_s))
            return
        consumer.assign(tps)
        await self._seek(consumer, tps)

    async def _seek(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        fresh = [tp for tp in tps if tp not in self._positions]
        for tp in tps:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])  # reopened after an outage
        if not fresh:
            return
        if self._start_at == "earliest":
            await consumer.seek_to_beginning(*fresh)
        elif self._start_at == "latest":
            await consumer.seek_to_end(*fresh)
        else:
            ms = int(self._start_at.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: ms for tp in fresh})
            for tp in fresh:
                hit = found.get(tp)
                if hit is None:
                    await consumer.seek_to_end(tp)  # nothing that new there yet
                else:
                    consumer.seek(tp, hit.offset)

    async def _consume(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            fetched = await consumer.getmany(timeout_ms=self._fetch_timeout_ms, max_records=self._max_batch)
            if not fetched:
                continue
            self._between_batches.clear()
            try:
                records = [r for tp in sorted(fetched, key=_tp_order) for r in fetched[tp]]
                await self.process(records)
                await self._commit(consumer, fetched)
            finally:
                self._between_batches.set()

    async def batch_finished(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s`) until no fetched batch is being handled."""
        try:
            await asyncio.wait_for(self._between_batches.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def process(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        """Decode, handle, isolate and dead-letter one fetched batch."""
        self.stats.batches += 1
        deliveries: list[Delivery[T]] = []
        for record in records:
            try:
                deliveries.append(Delivery(record, self._decode(record)))
            except Exception as exc:  # noqa: BLE001 - decoding is pure: one try tells
                now = utcnow()
                await self._dead(record, Failure(exc, 1, now, now))
        if deliveries:
            await self._handle_part(deliveries)

    async def _handle_part(self, deliveries: list[Delivery[T]]) -> None:
        """Handle `deliveries` together; if that fails for a message's fault, halve and
        recurse (one poison message in a batch of n costs about 2·log2(n) extra handler
        calls), down to single messages, which get the guard's bounded retries."""
        if len(deliveries) == 1:
            [delivery] = deliveries
            outcome = await self.guard.run(delivery.record, lambda: self._call(deliveries))
            if outcome is Outcome.PROCESSED:
                self.stats.processed += 1
            else:
                self.stats.dead_lettered += 1
            return
        try:
            await self.guard.through_outages(lambda: self._call(deliveries))
        except Exception as exc:  # noqa: BLE001 - some message's fault: find which
            log.warning("%s: a batch of %d failed (%s); splitting it", self.name, len(deliveries), describe(exc))
            middle = len(deliveries) // 2
            await self._handle_part(deliveries[:middle])
            await self._handle_part(deliveries[middle:])
            return
        self._processed(deliveries)

    async def _call(self, deliveries: list[Delivery[T]]) -> None:
        self.stats.handler_calls += 1
        await self._handle(deliveries)

    def _processed(self, deliveries: list[Delivery[T]]) -> None:
        self.stats.processed += len(deliveries)
        for d in deliveries:
            MESSAGES.labels(self.name, d.record.topic, Outcome.PROCESSED.value).inc()

    async def _dead(self, record: ConsumerRecord[Any, Any], failure: Failure) -> None:
        await self.guard.dead_letter(record, failure)
        self.stats.dead_lettered += 1

    async def _publish_dead_letter(self, letter: DeadLetter) -> None:
        if self._producer is None:
            raise KafkaError("dead-letter producer is not connected")
        await self._producer.send_and_wait(
            self._dead_letter_topic,
            letter.to_bytes(),
            key=letter.key.encode() if letter.key else None,
        )
        self.stats.last_dead_letters = [*self.stats.last_dead_letters[-9:], letter]

    async def _commit(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
    ) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in fetched.items() if records}
        if self.group_id is None:
            self._positions.update(offsets)
            return
        try:
            await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except KafkaError as exc:
            # A rebalance or an outage: the batch is redelivered, and handlers are
            # idempotent, so this costs repeated work, not correctness.
            log.warning("%s: commit failed (%s); the batch may be redelivered", self.name, exc)

    async def _close(self) -> None:
        consumer, producer = self._consumer, self._producer
        self._consumer = self._producer = None
        for client in (consumer, producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:  # noqa: BLE001 - closing a half-open client
                    log.debug("%s: closing a client failed: %s", self.name, exc)


class _FinishBatchFirst(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """`revoke_grace_s`: aiokafka awaits this before the member rejoins the group
    (its heartbeats go on meanwhile), so the batch in hand is committed first."""

    def __init__(self, runtime: ConsumerRuntime[Any], grace_s: float) -> None:
        self._runtime = runtime
        self._grace_s = grace_s

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked and not await self._runtime.batch_finished(self._grace_s):
            log.warning(
                "%s: a batch was still in hand %.1fs into a rebalance; its partitions' next owner may redo it",
                self._runtime.name,
                self._grace_s,
            )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def _tp_order(tp: TopicPartition) -> tuple[str, int]:
    return (tp.topic, tp.partition)


async def _partitions_for(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    partitions: set[int] | None = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()  # aiokafka has no public call
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        # Treated as an outage: the topic is created by ensure_topics at start-up.
        raise KafkaError(f"topic {topic} has no partitions (yet)")
    return partitions
