"""Writeback jobs in MongoDB: job and run headers, the stored assignments (for
re-runs), one outcome per batch, and run summaries derived from the outcomes.

Exact counting rests on one primitive: inserting a document with a unique `_id`.
Every fact is written once, keyed by its natural id, and never updated:

- `writeback_jobs`      `_id = job_id`: the job header (first batch wins).
- `writeback_runs`      `_id = job_id|run`: a run exists from its first batch (or
                        from a re-trigger); `created_at` is its start.
- `writeback_batches`   `_id = job_id|seq`: the assignments, zlib-compressed JSON,
                        stored on first sight so a run can be replayed.
- `writeback_outcomes`  `_id = job_id|run|seq`: how one batch of one run ended
                        (counts by reason). A redelivered batch finds it and is not
                        written or counted again.
- `writeback_failures`  same `_id`: the failed users of that batch, with reasons.

A run's figures are *derived*: summing its outcome documents gives the same answer
whoever computes it, however often, after any crash. `writeback_run_stats` caches
the last summary for reads and is rewritten by whoever recounts; a stale write there
is harmless because unfinished runs are recounted on read.

Nothing relies on atomic updates: FerretDB (the local server) applies updates as
unisolated read-modify-write, so `$inc` counters would lose increments under
concurrency. Real MongoDB is correct with the same design.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bson import Binary
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from liftstack_shared.messages import Assignment, AssignmentBatch, WritebackProgress, utcnow
from liftstack_shared.messages.writeback import WritebackStatus

FINAL = {
    WritebackStatus.COMPLETED,
    WritebackStatus.COMPLETED_WITH_FAILURES,
    WritebackStatus.FAILED,
}
# Who made a run: the assignment engine's batches, or a re-trigger from the API.
ENGINE, RETRIGGER = "engine", "retrigger"


@dataclass(frozen=True)
class JobHeader:
    job_id: str
    workspace_id: str
    connection_id: str
    campaign_key: str
    batch_count: int
    total: int

    @classmethod
    def of(cls, batch: AssignmentBatch) -> JobHeader:
        return cls(
            batch.job_id,
            batch.workspace_id,
            batch.connection_id,
            batch.campaign_key,
            batch.batch_count,
            batch.total_recipients,
        )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> JobHeader:
        return cls(
            doc["_id"],
            doc["workspace_id"],
            doc["connection_id"],
            doc["campaign_key"],
            int(doc["batch_count"]),
            int(doc["total"]),
        )

    def doc(self) -> dict[str, Any]:
        return {
            "_id": self.job_id,
            "workspace_id": self.workspace_id,
            "connection_id": self.connection_id,
            "campaign_key": self.campaign_key,
            "batch_count": self.batch_count,
            "total": self.total,
        }


@dataclass
class BatchOutcome:
    """One batch of one run: every user succeeded or failed with one reason."""

    users: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (recipient, reason)
    # Failures Iterable counted (failCount) without naming the users: which users
    # they were is unknown, so they are counted apart, never dropped.
    unattributed_failures: int = 0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def succeeded(self) -> int:
        return self.users - self.failed

    def failed_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.failures:
            counts[reason] = counts.get(reason, 0) + 1
        return counts


@dataclass
class RunSummary:
    header: JobHeader
    run: int
    created_by: str
    status: WritebackStatus
    batches_done: int
    written: int
    succeeded: int
    failed: int
    failed_by_reason: dict[str, int]
    started_at: datetime | None
    finished_at: datetime | None
    unattributed_failures: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def total(self) -> int:
        return self.header.total

    @property
    def profiles_per_second(self) -> float:
        if self.started_at is None or self.written == 0:
            return 0.0
        end = self.finished_at or utcnow()
        elapsed = (end - self.started_at).total_seconds()
        return round(self.written / max(elapsed, 1e-3), 1)

    def progress(self) -> WritebackProgress:
        h = self.header
        return WritebackProgress(
            job_id=h.job_id,
            run=self.run,
            workspace_id=h.workspace_id,
            connection_id=h.connection_id,
            campaign_key=h.campaign_key,
            status=self.status,
            total=h.total,
            written=self.written,
            succeeded=self.succeeded,
            failed=self.failed,
            failed_by_reason=dict(self.failed_by_reason),
            started_at=self.started_at,
            finished_at=self.finished_at,
            profiles_per_second=self.profiles_per_second,
            unattributed_failures=self.unattributed_failures,
        )


def _status(
    header: JobHeader, batches_done: int, succeeded: int, failed: int, created_by: str, unattributed: int = 0
) -> WritebackStatus:
    if batches_done < header.batch_count:
        if batches_done == 0 and created_by == RETRIGGER:
            return WritebackStatus.PENDING
        return WritebackStatus.RUNNING
    if failed == 0 and unattributed == 0:
        return WritebackStatus.COMPLETED
    if succeeded == 0:
        return WritebackStatus.FAILED
    return WritebackStatus.COMPLETED_WITH_FAILURES


def _run_id(job_id: str, run: int) -> str:
    return f"{job_id}|{run}"


def _outcome_id(job_id: str, run: int, seq: int) -> str:
    # Injective: run and seq are integers, so a '|' inside job_id can't collide.
    return f"{job_id}|{run}|{seq}"


class JobStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.jobs = db["writeback_jobs"]
        self.runs = db["writeback_runs"]
        self.batches = db["writeback_batches"]
        self.outcomes = db["writeback_outcomes"]
        self.failures = db["writeback_failures"]
        self.stats = db["writeback_run_stats"]

    async def setup(self) -> None:
        await self.outcomes.create_index([("job_id", ASCENDING), ("run", ASCENDING)])
        await self.batches.create_index([("job_id", ASCENDING)])
        await self.runs.create_index([("job_id", ASCENDING)])

    # --- headers -------------------------------------------------------------------

    async def ensure_job(self, header: JobHeader) -> str | None:
        """Record the job on its first batch. Returns why a batch's header disagrees
        with the job's (a dead letter), or None."""
        try:
            await self.jobs.insert_one({**header.doc(), "created_at": utcnow()})
            return None
        except DuplicateKeyError:
            pass
        doc = await self.jobs.find_one({"_id": header.job_id})
        if doc is None:  # pragma: no cover - deleted in between
            return "job disappeared while being recorded"
        known = JobHeader.from_doc(doc)
        if known != header:
            diffs = [
                f"{name} {getattr(header, name)!r} != {getattr(known, name)!r}"
                for name in ("workspace_id", "connection_id", "campaign_key", "batch_count", "total")
                if getattr(header, name) != getattr(known, name)
            ]
            return "batch disagrees with its job: " + ", ".join(diffs)
        return None

    async def job(self, job_id: str) -> JobHeader | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return JobHeader.from_doc(doc) if doc else None

    async def ensure_run(self, job_id: str, run: int) -> None:
        """A run starts when its first batch is picked up (or when re-triggered)."""
        try:
            await self.runs.insert_one(
                {
                    "_id": _run_id(job_id, run),
                    "job_id": job_id,
                    "run": run,
                    "created_by": ENGINE,
                    "created_at": utcnow(),
                }
            )
        except DuplicateKeyError:
            pass

    async def create_retrigger_run(self, job_id: str, run: int, idempotency_key: str | None = None) -> bool:
        """Claim run `run` for a re-trigger; False if it exists (someone else won).
        The client's idempotency key is stored in the run document itself, so the
        claim and the key are one insert."""
        try:
            await self.runs.insert_one(
                {
                    "_id": _run_id(job_id, run),
                    "job_id": job_id,
                    "run": run,
                    "created_by": RETRIGGER,
                    "created_at": utcnow(),
                    "published_at": None,
                    "idempotency_key": idempotency_key,
                }
            )
            return True
        except DuplicateKeyError:
            return False

    async def run_doc(self, job_id: str, run: int) -> dict[str, Any] | None:
        return await self.runs.find_one({"_id": _run_id(job_id, run)})

    async def mark_published(self, job_id: str, run: int) -> None:
        # The only update ever made to a run document, by the one re-trigger that
        # created it, so there is no concurrent writer to lose it to.
        await self.runs.update_one({"_id": _run_id(job_id, run)}, {"$set": {"published_at": utcnow()}})

    async def run_docs(self, job_id: str) -> list[dict[str, Any]]:
        """Every run of a job, oldest first. Runs are numbered from 1 without gaps, so
        point reads until the first miss (cheap on any server, unlike a query)."""
        docs = []
        run = 1
        while (doc := await self.runs.find_one({"_id": _run_id(job_id, run)})) is not None:
            docs.append(doc)
            run += 1
        return docs

    # --- batches and outcomes ------------------------------------------------------

    async def store_batch(self, batch: AssignmentBatch) -> None:
        """Keep the assignments for re-runs (first copy wins)."""
        raw = json.dumps([a.model_dump(exclude_none=True) for a in batch.assignments], separators=(",", ":")).encode()
        try:
            await self.batches.insert_one(
                {
                    "_id": f"{batch.job_id}|{batch.batch_seq}",
                    "job_id": batch.job_id,
                    "seq": batch.batch_seq,
                    "assignments": Binary(zlib.compress(raw, 1)),
                }
            )
        except DuplicateKeyError:
            pass

    async def stored_batches(self, header: JobHeader) -> list[list[Assignment]] | None:
        """The job's assignments by batch, or None if any batch is missing."""
        found: dict[int, list[Assignment]] = {}
        async for doc in self.batches.find({"job_id": header.job_id}):
            items = json.loads(zlib.decompress(doc["assignments"]))
            found[int(doc["seq"])] = [Assignment.model_validate(a) for a in items]
        if len(found) != header.batch_count or set(found) != set(range(header.batch_count)):
            return None
        return [found[seq] for seq in range(header.batch_count)]

    async def outcome_recorded(self, job_id: str, run: int, seq: int) -> bool:
        return await self.outcomes.find_one({"_id": _outcome_id(job_id, run, seq)}, {"_id": 1}) is not None

    async def record_outcome(self, job_id: str, run: int, seq: int, outcome: BatchOutcome, instance: str = "") -> bool:
        """Record a batch's outcome once. False if it was already recorded (a
        redelivery or a concurrent owner): the first recorded outcome counts."""
        oid = _outcome_id(job_id, run, seq)
        if outcome.failures:
            # Before the outcome, so a recorded outcome always has its details.
            try:
                await self.failures.insert_one(
                    {
                        "_id": oid,
                        "job_id": job_id,
                        "run": run,
                        "seq": seq,
                        # Objects, not pairs: FerretDB does not store nested arrays.
                        "failures": [{"recipient": r, "reason": why} for r, why in outcome.failures],
                    }
                )
            except DuplicateKeyError:
                pass
        try:
            await self.outcomes.insert_one(
                {
                    "_id": oid,
                    "job_id": job_id,
                    "run": run,
                    "seq": seq,
                    "users": outcome.users,
                    "succeeded": outcome.succeeded,
                    "failed": outcome.failed,
                    "failed_by_reason": outcome.failed_by_reason(),
                    "unattributed_failures": outcome.unattributed_failures,
                    "recorded_at": utcnow(),
                    "recorded_by": instance,
                }
            )
            return True
        except DuplicateKeyError:
            return False

    async def failures_of(self, job_id: str, run: int, seq: int) -> list[tuple[str, str]]:
        doc = await self.failures.find_one({"_id": _outcome_id(job_id, run, seq)})
        return [(f["recipient"], f["reason"]) for f in doc["failures"]] if doc else []

    # --- summaries -----------------------------------------------------------------

    async def summarize(self, header: JobHeader, run_doc: dict[str, Any]) -> RunSummary:
        """The run's exact figures, summed from its outcome documents."""
        run = int(run_doc["run"])
        batches = written = succeeded = failed = unattributed = 0
        by_reason: dict[str, int] = {}
        last: datetime | None = None
        seen: set[int] = set()
        cursor = self.outcomes.find(
            {"job_id": header.job_id, "run": run},
            {
                "seq": 1,
                "users": 1,
                "succeeded": 1,
                "failed": 1,
                "failed_by_reason": 1,
                "unattributed_failures": 1,
                "recorded_at": 1,
            },
        )
        async for doc in cursor:
            if doc["seq"] in seen or doc["seq"] >= header.batch_count:
                continue  # impossible with unique ids; cheap to be sure
            seen.add(doc["seq"])
            batches += 1
            written += doc["users"]
            succeeded += doc["succeeded"]
            failed += doc["failed"]
            unattributed += int(doc.get("unattributed_failures") or 0)
            for reason, n in doc["failed_by_reason"].items():
                by_reason[reason] = by_reason.get(reason, 0) + n
            if last is None or doc["recorded_at"] > last:
                last = doc["recorded_at"]
        created_by = run_doc.get("created_by", ENGINE)
        status = _status(header, batches, succeeded, failed, created_by, unattributed)
        return RunSummary(
            header=header,
            run=run,
            created_by=created_by,
            status=status,
            batches_done=batches,
            written=written,
            succeeded=succeeded,
            failed=failed,
            failed_by_reason=by_reason,
            started_at=run_doc.get("created_at"),
            finished_at=last if status in FINAL else None,
            unattributed_failures=unattributed,
        )

    async def summarize_run(self, job_id: str, run: int) -> RunSummary | None:
        header = await self.job(job_id)
        run_doc = await self.runs.find_one({"_id": _run_id(job_id, run)})
        if header is None or run_doc is None:
            return None
        return await self.summarize(header, run_doc)

    async def save_summary(self, summary: RunSummary) -> None:
        """Cache the summary for reads (last writer wins; see the module doc)."""
        p = summary.progress()
        await self.stats.update_one(
            {"_id": _run_id(summary.header.job_id, summary.run)},
            {
                "$set": {
                    **p.model_dump(exclude={"schema_version", "at"}),
                    "status": str(p.status),
                    "batches_done": summary.batches_done,
                    "created_by": summary.created_by,
                    "updated_at": utcnow(),
                }
            },
            upsert=True,
        )

    async def summaries(self, header: JobHeader) -> list[tuple[dict[str, Any], RunSummary]]:
        """Every run's figures: finished runs from the cache, others recounted."""
        out = []
        for run_doc in await self.run_docs(header.job_id):
            cached = await self.stats.find_one({"_id": run_doc["_id"]})
            if cached and cached.get("status") in {str(s) for s in FINAL}:
                summary = RunSummary(
                    header=header,
                    run=int(run_doc["run"]),
                    created_by=run_doc.get("created_by", ENGINE),
                    status=WritebackStatus(cached["status"]),
                    batches_done=int(cached["batches_done"]),
                    written=int(cached["written"]),
                    succeeded=int(cached["succeeded"]),
                    failed=int(cached["failed"]),
                    failed_by_reason=dict(cached["failed_by_reason"]),
                    started_at=cached.get("started_at"),
                    finished_at=cached.get("finished_at"),
                    unattributed_failures=int(cached.get("unattributed_failures") or 0),
                )
            else:
                summary = await self.summarize(header, run_doc)
                if summary.finished:
                    await self.save_summary(summary)
            out.append((run_doc, summary))
        return out


__all__ = [
    "BatchOutcome",
    "ENGINE",
    "FINAL",
    "JobHeader",
    "JobStore",
    "RETRIGGER",
    "RunSummary",
]
