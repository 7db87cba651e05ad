"""Writeback's use cases: write one assignment batch into Iterable exactly once,
show a job's runs, re-trigger a finished job.

Writing a batch (`write`, then `refresh`; the consumer calls both per record):

1. Resolve its connection and check the batch agrees with its job. Either failing
   makes it a bad batch: `BatchRejected`, which the consumer dead-letters at once.
2. Store the assignments (for re-runs; first copy wins). If the batch was stored
   before and this (job, run, batch) already has an outcome, it was written before a
   crash or rebalance: nothing is sent and nothing is counted again.
3. Otherwise write them to Iterable and record the outcome (insert-once).
4. `refresh`: recount the run and save the summary; only then is the record done and
   its offset committable.

Every step is idempotent, so the whole of it can be retried after any failure (the
consumer's `MessageGuard` does; see `consumers.py`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiokafka.errors import KafkaError
from prometheus_client import Counter

from liftstack_shared.credentials import ConnectionInOtherWorkspace, ConnectionNotFound
from liftstack_shared.messages import Assignment, AssignmentBatch, utcnow
from liftstack_writeback.clients import IterableClients
from liftstack_writeback.models import RETRIGGER, JobHeader, RunRecord, RunSummary
from liftstack_writeback.progress import ProgressTracker
from liftstack_writeback.publisher import Publisher
from liftstack_writeback.store import JobStore
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

# A re-trigger whose publishing was interrupted may be resumed after this long
# (sooner, it is probably still publishing).
RESUME_AFTER_S = 60.0

K = TypeVar("K", bound=Hashable)


class BatchRejected(Exception):
    """A batch that can never be written (unknown connection, one of another
    workspace, a header contradicting its job's): dead-lettered with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetriggerRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RetriggerUnpublished(Exception):
    """The re-run exists but Kafka did not take all its batches: re-triggering again
    resumes it."""


@dataclass(frozen=True)
class RetriggerResult:
    summary: RunSummary
    # False: an earlier call with the same idempotency key created this run.
    created: bool


class WritebackService:
    def __init__(
        self,
        *,
        store: JobStore,
        clients: IterableClients,
        writer: BatchWriter,
        progress: ProgressTracker,
        publisher: Publisher,
        instance: str = "",
    ) -> None:
        self.store = store
        self._clients = clients
        self._writer = writer
        self._progress = progress
        self._publisher = publisher
        # Names this process in outcome documents (who wrote which batch).
        self.instance = instance
        # Headers and runs already recorded, to skip those writes (bounded: LRU).
        self._jobs_ok: _Seen[JobHeader] = _Seen()
        self._runs_ok: _Seen[tuple[str, int]] = _Seen()

    # --- writing a batch -----------------------------------------------------------

    async def write(self, batch: AssignmentBatch) -> None:
        """Steps 1-3 of the module doc: returns once the batch's outcome is recorded
        (Iterable is done with it). Raises `BatchRejected` for a bad batch."""
        try:
            creds = await self._clients.credentials.get(batch.workspace_id, batch.connection_id)
        except ConnectionInOtherWorkspace:
            # Dead letters are internal: they may say which of the two it was.
            raise BatchRejected(f"connection {batch.connection_id!r} belongs to another workspace") from None
        except ConnectionNotFound:
            raise BatchRejected(f"unknown connection {batch.connection_id!r}") from None

        header = JobHeader.of(batch)
        if header not in self._jobs_ok:
            mismatch = await self.store.ensure_job(header)
            if mismatch:
                raise BatchRejected(mismatch)
            self._jobs_ok.add(header)
        if (batch.job_id, batch.run) not in self._runs_ok:
            await self.store.ensure_run(batch.job_id, batch.run)
            self._runs_ok.add((batch.job_id, batch.run))

        # Outcomes are recorded only after their batch is stored, so a batch stored
        # here for the first time has no outcome in any run: only a batch seen
        # before needs the lookup (one MongoDB round trip less per batch).
        first_sight = await self.store.store_batch(batch)
        if not first_sight and await self.store.outcome_recorded(batch.job_id, batch.run, batch.batch_seq):
            BATCHES.labels("duplicate").inc()
            return
        client = await self._clients.client_for(creds)
        outcome = await self._writer.write(client, batch)
        if any(reason == UNAUTHORIZED for _, reason in outcome.failures):
            self._clients.credentials.invalidate(batch.connection_id)
        if await self.store.record_outcome(batch.job_id, batch.run, batch.batch_seq, outcome, self.instance):
            BATCHES.labels("written").inc()
            USERS.labels("ok").inc(outcome.succeeded)
            for reason, n in outcome.failed_by_reason().items():
                USERS.labels(reason).inc(n)
        else:
            BATCHES.labels("duplicate").inc()

    async def refresh(self, batch: AssignmentBatch) -> None:
        """Step 4: returns once a summary of the batch's run including it is saved."""
        await self._progress.refresh(batch.job_id, batch.run)

    # --- reading a job -------------------------------------------------------------

    async def job(self, workspace_id: str, job_id: str) -> JobHeader | None:
        """The job, if it exists in this workspace (None alike for "no such job" and
        "another workspace's job")."""
        header = await self.store.job(job_id)
        return header if header is not None and header.workspace_id == workspace_id else None

    async def runs(self, header: JobHeader) -> list[RunSummary]:
        """Every run's figures, oldest first."""
        return [summary for _, summary in await self.store.summaries(header)]

    # --- re-trigger ----------------------------------------------------------------

    async def retrigger(self, header: JobHeader, idempotency_key: str | None = None) -> RetriggerResult:
        """Re-run a finished job from the beginning: its stored assignments are
        published again as run N+1, through the same topic, partition, pacer and
        counting as the first run. Writing a value a profile already has is harmless.

        If publishing a re-trigger was interrupted, calling again resumes it
        (re-publishing is safe: batches already recorded for the run are skipped).

        With an `idempotency_key`, a repeated call (a client retrying after a lost
        response) answers the run that key created instead of starting another."""
        summaries = await self.store.summaries(header)
        if not summaries:
            raise RetriggerRefused("job_not_started", "The job has no run yet.")
        if idempotency_key is not None:
            for record, summary in summaries:
                if record.idempotency_key == idempotency_key:
                    return await self._replay(header, record, summary)
        last_record, last = summaries[-1]
        resume = False
        if last.finished:
            run = last.run + 1
        elif last.created_by == RETRIGGER and last_record.published_at is None and _interrupted(last_record):
            run, resume = last.run, True
        else:
            raise RetriggerRefused("job_running", f"Run {last.run} is still {last.status}; re-trigger it once it ends.")
        batches = await self.store.stored_batches(header)
        if batches is None:
            raise RetriggerRefused("assignments_unavailable", "The job's assignments are not all stored.")
        if not resume and not await self.store.create_retrigger_run(header.job_id, run, idempotency_key):
            winner = await self.store.run(header.job_id, run)
            if winner is not None and idempotency_key is not None and winner.idempotency_key == idempotency_key:
                # A concurrent retry of this very request created it.
                existing = await self.store.summarize_run(header.job_id, run)
                assert existing is not None
                return RetriggerResult(existing, created=False)
            raise RetriggerRefused("retrigger_in_progress", "The job is being re-triggered already.")
        return RetriggerResult(await self._publish_run(header, run, batches), created=True)

    async def _replay(self, header: JobHeader, record: RunRecord, summary: RunSummary) -> RetriggerResult:
        """The answer to a repeated re-trigger: the run it created, whose publishing
        is finished here if the first attempt was interrupted long enough ago."""
        if record.published_at is None and _interrupted(record):
            batches = await self.store.stored_batches(header)
            if batches is not None:
                summary = await self._publish_run(header, summary.run, batches)
        return RetriggerResult(summary, created=False)

    async def _publish_run(self, header: JobHeader, run: int, batches: list[list[Assignment]]) -> RunSummary:
        messages = [
            AssignmentBatch(
                job_id=header.job_id,
                workspace_id=header.workspace_id,
                connection_id=header.connection_id,
                campaign_key=header.campaign_key,
                batch_seq=seq,
                batch_count=header.batch_count,
                total_recipients=header.total,
                run=run,
                assignments=assignments,
            )
            for seq, assignments in enumerate(batches)
        ]
        try:
            await self._publisher.assignments(messages)
        except KafkaError as exc:
            raise RetriggerUnpublished(str(exc)) from exc
        await self.store.mark_published(header.job_id, run)
        log.info("writeback job %s re-triggered as run %d (%d batches)", header.job_id, run, len(batches))
        summary = await self.store.summarize_run(header.job_id, run)
        assert summary is not None
        return summary


def _interrupted(record: RunRecord) -> bool:
    """An unpublished re-trigger run old enough that its publisher has given up."""
    return record.age_s(utcnow()) > RESUME_AFTER_S


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
