"""All of writeback's MongoDB access: jobs (job and run headers, the stored
assignments for re-runs, one outcome per batch, run summaries derived from the
outcomes) and the pacer's slots.

Exact counting rests on one primitive: inserting a document with a unique `_id`
(`liftstack_shared.mongo.insert_once`). Every fact is written once, keyed by its
natural id, and never updated:

- `writeback_jobs`      `_id = job_id`: the job header (first batch wins).
- `writeback_runs`      `_id = job_id|run`: a run exists from its first batch (or
                        from a re-trigger); `created_at` is its start.
- `writeback_batches`   `_id = job_id|seq`: the assignments, zlib-compressed JSON,
                        stored on first sight so a run can be replayed.
- `writeback_outcomes`  `_id = job_id|run|seq`: how one batch of one run ended
                        (counts by reason). A redelivered batch finds it and is not
                        written or counted again.
- `writeback_failures`  same `_id`: the failed users of that batch, with reasons.
- `writeback_pacer`     `_id = bucket|slot`: one claimed request slot (`pacer.py`),
                        plus one `bucket|next` hint per bucket.

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
from datetime import datetime
from typing import Any

from bson import Binary
from pydantic import TypeAdapter
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from liftstack_shared.messages import Assignment, AssignmentBatch, utcnow
from liftstack_shared.mongo import insert_once, is_duplicate_key
from liftstack_writeback.models import (
    ENGINE,
    FINAL,
    RETRIGGER,
    BatchOutcome,
    JobHeader,
    RunRecord,
    RunSummary,
    WritebackStatus,
    run_status,
)

_FINAL_NAMES = {str(s) for s in FINAL}
# A stored batch's assignments: JSON, as `stored_batches` reads them back.
_ASSIGNMENTS = TypeAdapter(list[Assignment])


def _run_id(job_id: str, run: int) -> str:
    return f"{job_id}|{run}"


def _outcome_id(job_id: str, run: int, seq: int) -> str:
    # Injective: run and seq are integers, so a '|' inside job_id can't collide.
    return f"{job_id}|{run}|{seq}"


def _header_doc(header: JobHeader) -> dict[str, Any]:
    return {
        "_id": header.job_id,
        "workspace_id": header.workspace_id,
        "connection_id": header.connection_id,
        "campaign_key": header.campaign_key,
        "batch_count": header.batch_count,
        "total": header.total,
    }


def _header_of(doc: dict[str, Any]) -> JobHeader:
    return JobHeader(
        doc["_id"],
        doc["workspace_id"],
        doc["connection_id"],
        doc["campaign_key"],
        int(doc["batch_count"]),
        int(doc["total"]),
    )


def _run_of(doc: dict[str, Any]) -> RunRecord:
    return RunRecord(
        job_id=doc["job_id"],
        run=int(doc["run"]),
        created_by=doc.get("created_by", ENGINE),
        created_at=doc.get("created_at"),
        published_at=doc.get("published_at"),
        idempotency_key=doc.get("idempotency_key"),
    )


class JobStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
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
        if not await insert_once(self.jobs, [{**_header_doc(header), "created_at": utcnow()}]):
            return None
        doc = await self.jobs.find_one({"_id": header.job_id})
        if doc is None:  # pragma: no cover - deleted in between
            return "job disappeared while being recorded"
        return header.mismatch(_header_of(doc))

    async def job(self, job_id: str) -> JobHeader | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return _header_of(doc) if doc else None

    async def ensure_run(self, job_id: str, run: int) -> None:
        """A run starts when its first batch is picked up (or when re-triggered)."""
        doc = {"_id": _run_id(job_id, run), "job_id": job_id, "run": run, "created_by": ENGINE, "created_at": utcnow()}
        await insert_once(self.runs, [doc])

    async def create_retrigger_run(self, job_id: str, run: int, idempotency_key: str | None = None) -> bool:
        """Claim run `run` for a re-trigger; False if it exists (someone else won).
        The client's idempotency key is stored in the run document itself, so the
        claim and the key are one insert."""
        doc = {
            "_id": _run_id(job_id, run),
            "job_id": job_id,
            "run": run,
            "created_by": RETRIGGER,
            "created_at": utcnow(),
            "published_at": None,
            "idempotency_key": idempotency_key,
        }
        return not await insert_once(self.runs, [doc])

    async def run(self, job_id: str, run: int) -> RunRecord | None:
        doc = await self.runs.find_one({"_id": _run_id(job_id, run)})
        return _run_of(doc) if doc else None

    async def mark_published(self, job_id: str, run: int) -> None:
        # The only update ever made to a run document, by the one re-trigger that
        # created it, so there is no concurrent writer to lose it to.
        await self.runs.update_one({"_id": _run_id(job_id, run)}, {"$set": {"published_at": utcnow()}})

    async def runs_of(self, job_id: str) -> list[RunRecord]:
        """Every run of a job, oldest first. Runs are numbered from 1 without gaps, so
        point reads until the first miss (cheap on any server, unlike a query)."""
        records: list[RunRecord] = []
        while (record := await self.run(job_id, len(records) + 1)) is not None:
            records.append(record)
        return records

    # --- batches and outcomes ------------------------------------------------------

    async def store_batch(self, batch: AssignmentBatch) -> bool:
        """Keep the assignments for re-runs (first copy wins). True if this was the
        first copy."""
        raw = _ASSIGNMENTS.dump_json(batch.assignments, exclude_none=True)
        doc = {
            "_id": f"{batch.job_id}|{batch.batch_seq}",
            "job_id": batch.job_id,
            "seq": batch.batch_seq,
            "assignments": Binary(zlib.compress(raw, 1)),
        }
        return not await insert_once(self.batches, [doc])

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
            failures = {
                "_id": oid,
                "job_id": job_id,
                "run": run,
                "seq": seq,
                # Objects, not pairs: FerretDB does not store nested arrays.
                "failures": [{"recipient": r, "reason": why} for r, why in outcome.failures],
            }
            await insert_once(self.failures, [failures])
        doc = {
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
        return not await insert_once(self.outcomes, [doc])

    async def failures_of(self, job_id: str, run: int, seq: int) -> list[tuple[str, str]]:
        doc = await self.failures.find_one({"_id": _outcome_id(job_id, run, seq)})
        return [(f["recipient"], f["reason"]) for f in doc["failures"]] if doc else []

    # --- summaries -----------------------------------------------------------------

    async def summarize(self, header: JobHeader, record: RunRecord) -> RunSummary:
        """The run's exact figures, summed from its outcome documents."""
        batches = written = succeeded = failed = unattributed = 0
        by_reason: dict[str, int] = {}
        last: datetime | None = None
        seen: set[int] = set()
        cursor = self.outcomes.find(
            {"job_id": header.job_id, "run": record.run},
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
        status = run_status(header, batches, succeeded, failed, record.created_by, unattributed)
        return RunSummary(
            header=header,
            run=record.run,
            created_by=record.created_by,
            status=status,
            batches_done=batches,
            written=written,
            succeeded=succeeded,
            failed=failed,
            failed_by_reason=by_reason,
            started_at=record.created_at,
            finished_at=last if status in FINAL else None,
            as_of=utcnow(),
            unattributed_failures=unattributed,
        )

    async def summarize_run(self, job_id: str, run: int) -> RunSummary | None:
        header = await self.job(job_id)
        record = await self.run(job_id, run)
        if header is None or record is None:
            return None
        return await self.summarize(header, record)

    async def save_summary(self, summary: RunSummary) -> None:
        """Cache the summary for reads (last writer wins; see the module doc)."""
        h = summary.header
        await self.stats.update_one(
            {"_id": _run_id(h.job_id, summary.run)},
            {
                "$set": {
                    "job_id": h.job_id,
                    "run": summary.run,
                    "workspace_id": h.workspace_id,
                    "connection_id": h.connection_id,
                    "campaign_key": h.campaign_key,
                    "status": str(summary.status),
                    "total": h.total,
                    "written": summary.written,
                    "succeeded": summary.succeeded,
                    "failed": summary.failed,
                    "failed_by_reason": dict(summary.failed_by_reason),
                    "unattributed_failures": summary.unattributed_failures,
                    "started_at": summary.started_at,
                    "finished_at": summary.finished_at,
                    "profiles_per_second": summary.profiles_per_second,
                    "batches_done": summary.batches_done,
                    "created_by": summary.created_by,
                    "updated_at": utcnow(),
                }
            },
            upsert=True,
        )

    async def summaries(self, header: JobHeader) -> list[tuple[RunRecord, RunSummary]]:
        """Every run's figures: finished runs from the cache, others recounted."""
        out = []
        for record in await self.runs_of(header.job_id):
            cached = await self.stats.find_one({"_id": _run_id(header.job_id, record.run)})
            if cached and cached.get("status") in _FINAL_NAMES:
                summary = RunSummary(
                    header=header,
                    run=record.run,
                    created_by=record.created_by,
                    status=WritebackStatus(cached["status"]),
                    batches_done=int(cached["batches_done"]),
                    written=int(cached["written"]),
                    succeeded=int(cached["succeeded"]),
                    failed=int(cached["failed"]),
                    failed_by_reason=dict(cached["failed_by_reason"]),
                    started_at=cached.get("started_at"),
                    finished_at=cached.get("finished_at"),
                    as_of=cached.get("updated_at") or utcnow(),
                    unattributed_failures=int(cached.get("unattributed_failures") or 0),
                )
            else:
                summary = await self.summarize(header, record)
                if summary.finished:
                    await self.save_summary(summary)
            out.append((record, summary))
        return out


class PacerSlotStore:
    """The pacer's `SlotStore` in MongoDB (`writeback_pacer`; see `pacer.py` for why
    claims are inserts)."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._coll = collection

    async def next_hint(self, bucket: str) -> int | None:
        hint = await self._coll.find_one({"_id": f"{bucket}|next"})
        return int(hint["k"]) if hint else None

    async def claim_from(self, bucket: str, slot: int, interval: float) -> int:
        while await insert_once(self._coll, [{"_id": f"{bucket}|{slot}", "b": bucket, "at": slot * interval}]):
            slot += 1  # another instance has it
        return slot

    async def raise_hint(self, bucket: str, slot: int) -> None:
        try:
            await self._coll.update_one({"_id": f"{bucket}|next"}, {"$max": {"k": slot}}, upsert=True)
        except OperationFailure as exc:
            if not is_duplicate_key(exc):
                raise
            # Two first-ever upserts raced; the hint exists now, good enough.

    async def forget_before(self, bucket: str, before: float) -> None:
        await self._coll.delete_many({"b": bucket, "at": {"$lt": before}})
