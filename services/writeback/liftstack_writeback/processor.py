"""What happens to one `campaign.assignments` record.

1. Validate it as an `AssignmentBatch`; resolve its connection; check it agrees with
   its job. Any of these failing is a bad message: it goes to the dead-letter topic
   with the reason, and consumption goes on.
2. If this (job, run, batch) already has an outcome, it was written before a crash or
   rebalance: nothing is sent and nothing is counted again.
3. Otherwise store the assignments (for re-runs), write them to Iterable, and record
   the outcome (insert-once).
4. Recount the run and publish progress; only then is the record done and its offset
   committable.

Every step is idempotent, so the whole handler can be retried after any failure of
MongoDB, Kafka or the connections service (they are waited out, never dead-lettered).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, Hashable, TypeVar

import httpx
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from liftstack_shared.credentials import (
    ConnectionInOtherWorkspace,
    ConnectionNotFound,
    CredentialsUnavailable,
)
from liftstack_shared.messages import AssignmentBatch, DeadLetter

from liftstack_writeback.clients import IterableClients
from liftstack_writeback.jobs import JobHeader, JobStore
from liftstack_writeback.progress import ProgressTracker
from liftstack_writeback.writer import UNAUTHORIZED, BatchWriter

log = logging.getLogger(__name__)

BATCHES = Counter(
    "liftstack_writeback_batches_total",
    "Assignment batches handled, by result (written, duplicate, dead_letter).",
    ["result"],
)
USERS = Counter(
    "liftstack_writeback_users_total",
    "Users written to Iterable, by outcome (ok or a failure reason).",
    ["outcome"],
)

# Infrastructure we wait out; anything else retried this often becomes a dead letter.
_TRANSIENT = (
    PyMongoError, KafkaError, httpx.HTTPError, CredentialsUnavailable, OSError,
    asyncio.TimeoutError,
)
_MAX_UNEXPECTED = 5

DeadLetters = Callable[[DeadLetter], Awaitable[None]]
K = TypeVar("K", bound=Hashable)


class BatchProcessor:
    def __init__(
        self,
        *,
        store: JobStore,
        clients: IterableClients,
        writer: BatchWriter,
        progress: ProgressTracker,
        dead_letter: DeadLetters,
        consumer_name: str = "writeback",
        instance: str = "",
    ) -> None:
        self._store = store
        self._clients = clients
        self._writer = writer
        self._progress = progress
        self._dead_letter = dead_letter
        self._name = consumer_name
        self._instance = instance
        # Headers and runs already recorded, to skip those writes (bounded: LRU).
        self._jobs_ok: _Seen[JobHeader] = _Seen()
        self._runs_ok: _Seen[tuple[str, int]] = _Seen()

    async def handle(self, record: ConsumerRecord, release: Callable[[], None]) -> None:
        unexpected = 0
        delay = 0.5
        while True:
            try:
                await self._handle_once(record, release)
                return
            except asyncio.CancelledError:
                raise
            except _TRANSIENT as exc:
                log.warning("batch at %s[%d]@%d: %s: %s; retrying in %.1fs",
                            record.topic, record.partition, record.offset,
                            type(exc).__name__, exc, delay)
            except Exception as exc:  # noqa: BLE001 - a bug or a poison message
                unexpected += 1
                log.exception("batch at %s[%d]@%d failed (%d/%d)", record.topic,
                              record.partition, record.offset, unexpected, _MAX_UNEXPECTED)
                if unexpected >= _MAX_UNEXPECTED:
                    await self._dead(record, f"processing failed: {type(exc).__name__}")
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _handle_once(self, record: ConsumerRecord, release: Callable[[], None]) -> None:
        try:
            batch = AssignmentBatch.model_validate_json(record.value or b"")
        except ValidationError as exc:
            await self._dead(record, "invalid message: " + _validation_summary(exc))
            return

        try:
            creds = await self._clients.credentials.get(batch.workspace_id, batch.connection_id)
        except ConnectionInOtherWorkspace:
            # Dead letters are internal: they may say which of the two it was.
            await self._dead(record, f"connection {batch.connection_id!r} belongs to another workspace")
            return
        except ConnectionNotFound:
            await self._dead(record, f"unknown connection {batch.connection_id!r}")
            return

        header = JobHeader.of(batch)
        if header not in self._jobs_ok:
            mismatch = await self._store.ensure_job(header)
            if mismatch:
                await self._dead(record, mismatch)
                return
            self._jobs_ok.add(header)
        if (batch.job_id, batch.run) not in self._runs_ok:
            await self._store.ensure_run(batch.job_id, batch.run)
            self._runs_ok.add((batch.job_id, batch.run))

        if await self._store.outcome_recorded(batch.job_id, batch.run, batch.batch_seq):
            BATCHES.labels("duplicate").inc()
        else:
            await self._store.store_batch(batch)
            client = await self._clients.client_for(creds)
            outcome = await self._writer.write(client, batch)
            if any(reason == UNAUTHORIZED for _, reason in outcome.failures):
                self._clients.credentials.invalidate(batch.connection_id)
            if await self._store.record_outcome(
                batch.job_id, batch.run, batch.batch_seq, outcome, self._instance
            ):
                BATCHES.labels("written").inc()
                USERS.labels("ok").inc(outcome.succeeded)
                for reason, n in outcome.failed_by_reason().items():
                    USERS.labels(reason).inc(n)
            else:
                BATCHES.labels("duplicate").inc()
        release()  # Iterable is done with it: let the next batch start
        await self._progress.refresh(batch.job_id, batch.run)

    async def _dead(self, record: ConsumerRecord, reason: str) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else None
        log.warning("dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        await self._dead_letter(DeadLetter(
            source_topic=record.topic, partition=record.partition, offset=record.offset,
            key=key, consumer=self._name, reason=reason,
            payload=(record.value or b"").decode("utf-8", "replace"),
        ))
        BATCHES.labels("dead_letter").inc()


class _Seen(Generic[K]):
    def __init__(self, size: int = 10_000) -> None:
        self._items: OrderedDict[K, None] = OrderedDict()
        self._size = size

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def add(self, item: K) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


def _validation_summary(exc: ValidationError) -> str:
    # Locations and messages only: never the input values.
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
