"""Writeback's Kafka entry: `campaign.assignments`, with several batches in flight
and ordered, crash-safe commits. Each record is decoded as an `AssignmentBatch` and
handed to `WritebackService` (`write`, then `refresh`; see `service.py`).

aiokafka directly rather than FastStream: FastStream acknowledges message by message
(committing *that* message's offset), which is only safe when messages are handled
one at a time. Writeback must keep several bulkUpdate requests in flight to reach
Iterable's ceiling, and batches finish out of order; committing a later batch's
offset would skip an earlier one still in flight if the process died. So:

- up to `window` records are processed concurrently (fetching pauses when full);
- each partition remembers its in-flight offsets in order; when a record is done
  (its outcome durably recorded, or dead-lettered), the partition's commit point
  advances only to just past the highest *contiguous* done offset;
- on revocation, in-flight records get a grace period, then are cancelled; the commit
  point of what finished is committed; the new owner redoes the rest (outcome
  documents make that idempotent);
- a crash commits nothing more: everything after the commit point is redelivered;
- each record runs under the shared runtime's `MessageGuard`
  (`liftstack_shared.consumer`): outages are waited out (never dead-lettered, nothing
  committed past), a message's fault is retried a bounded number of times, then
  dead-lettered through the shared builder; a record is *done* only when processed or
  when its dead letter was acknowledged by Kafka. So nothing is ever skipped silently,
  and the commit point never passes a record that is neither.

This is the runtime's windowed mode: `ConsumerRuntime` handles a fetched batch at a
time; writeback needs several records in flight and ordered commits, so it keeps this
loop and shares the guard (classification, retries, dead letters, metrics). MongoDB,
Kafka or connections service outages are waited out and never dead-lettered
(`CLASSIFIER`); a record that fails to decode, or that the service rejects, is
dead-lettered at once; anything else is retried a bounded number of times
(`LIFTSTACK_WRITEBACK_RECORD_ATTEMPTS`), then dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from pydantic import ValidationError
from tenacity import RetryCallState

from liftstack_shared.consumer import Classifier, MessageGuard, RejectMessage, RetryPolicy, describe
from liftstack_shared.credentials import CredentialsUnavailable
from liftstack_shared.health import producer_check
from liftstack_shared.http import HealthCheck
from liftstack_shared.messages import AssignmentBatch, DeadLetter
from liftstack_shared.retry import backoff
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS
from liftstack_writeback.publisher import Publisher
from liftstack_writeback.service import BATCHES, BatchRejected, WritebackService
from liftstack_writeback.settings import WritebackSettings

log = logging.getLogger(__name__)

# Infrastructure we wait out, besides MongoDB and Kafka (the shared classifier's):
# the connections service unreachable or answering 5xx.
CLASSIFIER = Classifier(extra_infrastructure=(httpx.HTTPError, CredentialsUnavailable))

# handle(record, release): returns once the record's effects are durable. It may call
# release() earlier to free its window slot (e.g. once Iterable has answered) while it
# finishes bookkeeping; the record still counts as in flight for commits until it returns.
Handler = Callable[[ConsumerRecord, Callable[[], None]], Awaitable[None]]


@dataclass
class _Partition:
    """In-flight offsets of one assigned partition, in fetch order."""

    inflight: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    commit_point: int | None = None  # next offset to consume, once committed
    committed: int | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    revoked: bool = False

    def add(self, offset: int) -> None:
        self.inflight.append(offset)

    def complete(self, offset: int) -> bool:
        """Mark done; True if the commit point moved."""
        self.done.add(offset)
        moved = False
        while self.inflight and self.inflight[0] in self.done:
            first = self.inflight.popleft()
            self.done.discard(first)
            self.commit_point = first + 1
            moved = True
        return moved


class OrderedConsumer:
    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        handler: Handler,
        guard: MessageGuard,
        window: int = 16,
        revoke_grace_s: float = 10.0,
        session_timeout_ms: int = 10_000,
        client_id: str = "liftstack-writeback",
    ) -> None:
        self.topic = topic
        self._handler = handler
        self._guard = guard
        self._window = window
        self._slots = asyncio.Semaphore(window)
        self._revoke_grace = revoke_grace_s
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._commit_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._aborted = False
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._client_id = client_id
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None

    def _make_consumer(self) -> AIOKafkaConsumer:
        session_timeout_ms = self._session_timeout_ms
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(1000, session_timeout_ms // 3),
            # A full window may hold the fetch loop for a while (429 waits): allow it.
            max_poll_interval_ms=30 * 60 * 1000,
            # Assignment batches are tens of KB; a few per fetch is plenty.
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )

    @property
    def _kafka(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "start() first"
        return self._consumer

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._consumer = self._make_consumer()
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        await self._consumer.start()
        self._loop_task = asyncio.create_task(self._fetch_loop(), name="writeback-fetch")

    @property
    def started(self) -> bool:
        return self._loop_task is not None

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def in_flight(self) -> int:
        return sum(len(p.tasks) for p in self._partitions.values())

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: stop fetching, let in-flight records finish, commit, leave."""
        self._stopping = True
        await self._cancel_fetch_loop()
        tasks = [t for p in self._partitions.values() for t in p.tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for tp, part in list(self._partitions.items()):
            await self._commit(tp, part)
        if self._consumer is not None:
            await self._consumer.stop()

    async def abort(self) -> None:
        """Like a crash, for tests: cancel everything, commit nothing."""
        self._stopping = self._aborted = True
        await self._cancel_fetch_loop()
        tasks = [t for p in self._partitions.values() for t in p.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._partitions.clear()
        if self._consumer is not None:
            await self._consumer.stop()

    async def _cancel_fetch_loop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    # --- fetching and dispatch -----------------------------------------------------

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            fetched = await self._fetch()
            for tp, records in fetched.items():
                part = self._partitions.get(tp)
                for record in records:
                    await self._slots.acquire()
                    # Revoked (or revoked and re-assigned) while we waited: the new
                    # assignment starts again from the committed offset.
                    if self._stopping or part is None or part.revoked or self._partitions.get(tp) is not part:
                        self._slots.release()
                        break
                    part.add(record.offset)
                    task = asyncio.create_task(self._process(tp, part, record))
                    part.tasks.add(task)
                    task.add_done_callback(part.tasks.discard)

    async def _fetch(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One fetch, retried with backoff while it fails: keep consuming (only
        cancellation ends the loop); the log says why not."""
        retrying = backoff(attempts=None, first_s=1.0, max_s=5.0).copy(before_sleep=self._log_fetch_failure)
        async for attempt in retrying:
            with attempt:
                fetched: dict[TopicPartition, list[ConsumerRecord]] = await self._kafka.getmany(
                    timeout_ms=500, max_records=self._window
                )
                return fetched
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _log_fetch_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("fetching from %s failed; retrying", self.topic, exc_info=exc)

    async def _process(self, tp: TopicPartition, part: _Partition, record: ConsumerRecord) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        try:
            await self._handle(record, release)
        finally:
            release()
        if part.complete(record.offset) and self._partitions.get(tp) is part:
            await self._commit(tp, part)

    async def _handle(self, record: ConsumerRecord, release: Callable[[], None]) -> None:
        """Returns once the record is processed or dead-lettered (the shared guard's
        contract); only cancellation (revocation, stop, abort) interrupts it."""
        await self._guard.run(record, lambda: self._handler(record, release))

    async def _commit(self, tp: TopicPartition, part: _Partition) -> None:
        async with self._commit_lock:
            point = part.commit_point
            if point is None or (part.committed is not None and point <= part.committed):
                return
            try:
                await self._kafka.commit({tp: OffsetAndMetadata(point, "")})
                part.committed = point
            except KafkaError as exc:
                # Not fatal: a later commit covers it, or the records are redelivered.
                log.warning("commit of %s@%d failed: %s", tp, point, exc)

    # --- rebalancing ---------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._aborted:
            return
        parts = {tp: self._partitions[tp] for tp in revoked if tp in self._partitions}
        for part in parts.values():
            part.revoked = True
        tasks = [t for p in parts.values() for t in p.tasks]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._revoke_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for tp, part in parts.items():
            await self._commit(tp, part)
            self._partitions.pop(tp, None)
        if parts:
            log.info("partitions revoked: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in parts))

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._partitions[tp] = _Partition()
        if assigned:
            log.info("partitions assigned: %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, owner: OrderedConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._on_assigned(set(assigned))


# --- campaign.assignments ----------------------------------------------------------


def assignments_consumer(
    settings: WritebackSettings, service: WritebackService, publisher: Publisher
) -> OrderedConsumer:
    """The consumer of `campaign.assignments`: decode, write, refresh, under the guard."""

    async def handle(record: ConsumerRecord, release: Callable[[], None]) -> None:
        try:
            batch = AssignmentBatch.model_validate_json(record.value or b"")
        except ValidationError as exc:
            raise RejectMessage(describe(exc), "validation") from exc
        try:
            await service.write(batch)
        except BatchRejected as exc:
            raise RejectMessage(exc.reason) from None
        release()  # Iterable is done with it: let the next batch start
        await service.refresh(batch)

    async def dead_letter(letter: DeadLetter) -> None:
        await publisher.dead_letter(letter)
        BATCHES.labels("dead_letter").inc()

    guard = MessageGuard(
        consumer="writeback",
        dead_letters=dead_letter,
        classifier=CLASSIFIER,
        policy=RetryPolicy(attempts=settings.writeback_record_attempts),
    )
    return OrderedConsumer(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.topic(CAMPAIGN_ASSIGNMENTS.name),
        group_id=settings.group_id,
        handler=handle,
        guard=guard,
        window=settings.writeback_window,
        revoke_grace_s=settings.writeback_revoke_grace,
        session_timeout_ms=settings.writeback_session_timeout_ms,
    )


def kafka_check(consumer: OrderedConsumer, publisher: Publisher) -> HealthCheck:
    """Kafka for `/healthz`: the fetch loop is running (once started) and the
    cluster completes a metadata round trip."""
    cluster = producer_check(lambda: publisher.producer)

    async def check() -> None:
        if consumer.started and not consumer.alive:
            raise RuntimeError("the consumer loop has stopped")
        await cluster()

    return check
