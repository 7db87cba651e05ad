"""What happens to one `campaign.assignments` record.

1. Validate it as an `AssignmentBatch`; resolve its connection; check it agrees with
   its job. Any of these failing is a bad message: the handler raises `RejectMessage`
   and the shared runtime's guard dead-letters it at once, with the reason.
2. If this (job, run, batch) already has an outcome, it was written before a crash or
   rebalance: nothing is sent and nothing is counted again.
3. Otherwise store the assignments (for re-runs), write them to Iterable, and record
   the outcome (insert-once).
4. Recount the run and publish progress; only then is the record done and its offset
   committable.

Every step is idempotent, so the whole handler can be retried after any failure. The
retrying is the shared runtime's (`liftstack_shared.consumer.MessageGuard`, run by the
`OrderedConsumer` per record): MongoDB, Kafka or connections service outages are waited
out and never dead-lettered (`CLASSIFIER`); anything else is retried a bounded number
of times, then dead-lettered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import httpx
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter
from pydantic import ValidationError

from liftstack_shared.consumer import Classifier, RejectMessage, describe
from liftstack_shared.credentials import (
    ConnectionInOtherWorkspace,
    ConnectionNotFound,
    CredentialsUnavailable,
)
from liftstack_shared.messages import AssignmentBatch
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

# Infrastructure we wait out, besides MongoDB and Kafka (the shared classifier's):
# the connections service unreachable or answering 5xx.
CLASSIFIER = Classifier(extra_infrastructure=(httpx.HTTPError, CredentialsUnavailable))

K = TypeVar("K", bound=Hashable)


class BatchProcessor:
    def __init__(
        self,
        *,
        store: JobStore,
        clients: IterableClients,
        writer: BatchWriter,
        progress: ProgressTracker,
        instance: str = "",
    ) -> None:
        self._store = store
        self._clients = clients
        self._writer = writer
        self._progress = progress
        self._instance = instance
        # Headers and runs already recorded, to skip those writes (bounded: LRU).
        self._jobs_ok: _Seen[JobHeader] = _Seen()
        self._runs_ok: _Seen[tuple[str, int]] = _Seen()

    async def handle(self, record: ConsumerRecord, release: Callable[[], None]) -> None:
        """One attempt at a record; raises `RejectMessage` for a bad one."""
        try:
            batch = AssignmentBatch.model_validate_json(record.value or b"")
        except ValidationError as exc:
            raise RejectMessage(describe(exc), "validation") from exc

        try:
            creds = await self._clients.credentials.get(batch.workspace_id, batch.connection_id)
        except ConnectionInOtherWorkspace:
            # Dead letters are internal: they may say which of the two it was.
            raise RejectMessage(f"connection {batch.connection_id!r} belongs to another workspace") from None
        except ConnectionNotFound:
            raise RejectMessage(f"unknown connection {batch.connection_id!r}") from None

        header = JobHeader.of(batch)
        if header not in self._jobs_ok:
            mismatch = await self._store.ensure_job(header)
            if mismatch:
                raise RejectMessage(mismatch)
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
            if await self._store.record_outcome(batch.job_id, batch.run, batch.batch_seq, outcome, self._instance):
                BATCHES.labels("written").inc()
                USERS.labels("ok").inc(outcome.succeeded)
                for reason, n in outcome.failed_by_reason().items():
                    USERS.labels(reason).inc(n)
            else:
                BATCHES.labels("duplicate").inc()
        release()  # Iterable is done with it: let the next batch start
        await self._progress.refresh(batch.job_id, batch.run)


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
