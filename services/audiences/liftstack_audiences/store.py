"""Sync records and cached audience sizes in Mongo.

FerretDB has no transactions or TTL indexes: every write is a single-document update,
state changes are conditional (`status` in the filter), and expiry is by timestamp.

FerretDB also applies an update as an unisolated read-modify-write of the whole
document (liftstack_shared.mongo): overlapping updates of one document can lose one
entirely, `$inc`s get lost, and a conditional update can succeed twice. So:
- A sync record has one writer: the process running the sync (or, before that, the
  one that created or claimed it), and in that process every write of it (the run's
  progress and counters, the heartbeat task, the final status) goes through one
  `SingleWriter`, one at a time. Without it a heartbeat overlapping `finish` could
  put a completed sync back to `running`.
- Who runs a sync is decided by inserts, which are reliable: creating the record
  (unique sync id) and, for a retry, an insert-once claim (`audience_sync_claims`),
  not by the conditional update alone, which two replicas could both win.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from liftstack_audiences.models import AudienceSize, SizeSource, SyncError, SyncRecord, SyncStatus
from liftstack_audiences.state import Counts
from liftstack_shared.messages import utcnow
from liftstack_shared.mongo import SingleWriter, is_duplicate_key

T = TypeVar("T")
ACTIVE: tuple[SyncStatus, ...] = ("pending", "running")
# Stale claims taken over for one record state before giving up (each generation is
# one claimer that died between claiming and moving the record on).
_CLAIM_GENERATIONS = 20


def now() -> datetime:
    """utcnow at Mongo's precision (milliseconds), so a value read back equals the
    one written."""
    t = utcnow()
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _record(doc: dict[str, Any] | None) -> SyncRecord | None:
    if doc is None:
        return None
    doc = dict(doc)
    doc["sync_id"] = doc.pop("_id")
    return SyncRecord.model_validate(doc)


def _counts(counts: Counts) -> dict[str, int]:
    return {
        "members": counts.members,
        "invalid_skipped": counts.invalid,
        "duplicates_skipped": counts.duplicates,
        "batches": counts.batches,
    }


def _retryable(record: SyncRecord, dead_before: datetime) -> bool:
    if record.status == "failed":
        return True
    return record.status in ACTIVE and record.updated_at < dead_before


class SyncStore:
    """One per process: its `SingleWriter` is what keeps a record's writes apart."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._syncs = db["audience_syncs"]
        self._claims = db["audience_sync_claims"]
        self._writer = SingleWriter()

    async def ensure_indexes(self) -> None:
        await self._syncs.create_index(
            [("connection_id", ASCENDING), ("list_id", ASCENDING), ("created_at", DESCENDING)]
        )
        await self._claims.create_index("sync_id")

    async def _update(self, sync_id: str, write: Callable[[], Awaitable[T]]) -> T:
        """Run `write()` (one update of the sync's record) as this process's only
        write of that record in flight."""
        return await self._writer.run(sync_id, write)

    async def create(self, record: SyncRecord) -> None:
        doc = record.model_dump(exclude={"sync_id"})
        await self._syncs.insert_one({"_id": record.sync_id, **doc})

    async def get(self, sync_id: str) -> SyncRecord | None:
        return _record(await self._syncs.find_one({"_id": sync_id}))

    async def find_active(
        self, workspace_id: str, connection_id: str, list_id: int, alive_since: datetime
    ) -> SyncRecord | None:
        """A live (heartbeating) pending/running sync of this audience, if any."""
        doc = await self._syncs.find_one(
            {
                "workspace_id": workspace_id,
                "connection_id": connection_id,
                "list_id": list_id,
                "status": {"$in": list(ACTIVE)},
                "updated_at": {"$gte": alive_since},
            },
            sort=[("created_at", DESCENDING)],
        )
        return _record(doc)

    async def claim_retry(self, sync_id: str, dead_before: datetime) -> SyncRecord | None:
        """Move a failed (or dead pending/running) sync back to pending, for one
        caller only. None if it is not retryable (completed, or alive elsewhere) or
        another retry claimed it first."""
        record = await self.get(sync_id)
        if record is None or not _retryable(record, dead_before):
            return None
        if not await self._claim(record, dead_before):
            return None
        doc = await self._update(
            sync_id,
            lambda: self._syncs.find_one_and_update(
                {
                    "_id": sync_id,
                    "$or": [
                        {"status": "failed"},
                        {"status": {"$in": list(ACTIVE)}, "updated_at": {"$lt": dead_before}},
                    ],
                },
                {"$set": {"status": "pending", "error": None, "finished_at": None, "updated_at": now()}},
                return_document=ReturnDocument.AFTER,
            ),
        )
        return _record(doc)

    async def _claim(self, record: SyncRecord, dead_before: datetime) -> bool:
        """Win the right to move `record`, in the state read, back to pending.

        The claim's `_id` names that state (runs, updated_at): every retry that read
        it competes for the same `_id`, and the server keeps only the first insert.
        If that claimer died before moving the record on, the record still shows the
        same state; once the claim is as old as a dead sync's heartbeat, the next
        generation's `_id` is up for grabs (again for one caller)."""
        state = f"{record.sync_id}:{record.runs}:{record.updated_at.isoformat()}"
        for generation in range(_CLAIM_GENERATIONS):
            claim_id = f"{state}:{generation}"
            try:
                await self._claims.insert_one({"_id": claim_id, "sync_id": record.sync_id, "claimed_at": now()})
                return True
            except (DuplicateKeyError, OperationFailure) as exc:
                if not is_duplicate_key(exc):
                    raise
            taken = await self._claims.find_one({"_id": claim_id})
            if taken is not None and taken["claimed_at"] >= dead_before:
                return False  # claimed moments ago by another retry
        return False

    async def mark_running(self, sync_id: str) -> SyncRecord | None:
        at = now()
        doc = await self._update(
            sync_id,
            lambda: self._syncs.find_one_and_update(
                {"_id": sync_id, "status": "pending"},
                {"$set": {"status": "running", "started_at": at, "updated_at": at}, "$inc": {"runs": 1}},
                return_document=ReturnDocument.AFTER,
            ),
        )
        return _record(doc)

    async def stream_opened(self, sync_id: str) -> None:
        await self._update(sync_id, lambda: self._syncs.update_one({"_id": sync_id}, {"$inc": {"stream_attempts": 1}}))

    async def progress(self, sync_id: str, counts: Counts) -> None:
        await self._update(
            sync_id,
            lambda: self._syncs.update_one(
                {"_id": sync_id, "status": "running"},
                {"$set": {**_counts(counts), "updated_at": now()}},
            ),
        )

    async def heartbeat(self, sync_id: str) -> None:
        await self._update(
            sync_id,
            lambda: self._syncs.update_one(
                {"_id": sync_id, "status": {"$in": list(ACTIVE)}},
                {"$set": {"updated_at": now()}},
            ),
        )

    async def finish(
        self,
        sync_id: str,
        status: SyncStatus,
        counts: Counts | None,
        error: SyncError | None = None,
    ) -> SyncRecord | None:
        at = now()
        update: dict[str, Any] = {
            "status": status,
            "finished_at": at,
            "updated_at": at,
            "error": error.model_dump() if error else None,
        }
        if counts is not None:
            update |= _counts(counts)
        doc = await self._update(
            sync_id,
            lambda: self._syncs.find_one_and_update(
                {"_id": sync_id}, {"$set": update}, return_document=ReturnDocument.AFTER
            ),
        )
        if status == "completed":
            # A completed sync is never retried: its claims have served.
            await self._claims.delete_many({"sync_id": sync_id})
        return _record(doc)


class SizeCache:
    """Audience sizes by (connection, list): from lists/{id}/size (5 req/min, so
    cached) or from a completed sync's exact member count."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._sizes = db["audience_sizes"]
        self._writer = SingleWriter()

    async def get_many(self, connection_id: str, list_ids: list[int]) -> dict[int, AudienceSize]:
        found: dict[int, AudienceSize] = {}
        async for doc in self._sizes.find({"connection_id": connection_id, "list_id": {"$in": list_ids}}):
            found[doc["list_id"]] = AudienceSize(
                list_id=doc["list_id"],
                size=doc["size"],
                size_source=doc["source"],
                size_as_of=doc["as_of"],
            )
        return found

    async def get(self, connection_id: str, list_id: int) -> AudienceSize | None:
        return (await self.get_many(connection_id, [list_id])).get(list_id)

    async def put(self, connection_id: str, list_id: int, size: int, source: SizeSource) -> AudienceSize:
        at = now()
        key = {"_id": f"{connection_id}:{list_id}"}
        # Every put sets every field, so whichever of two overlapping puts lands last
        # leaves a whole, valid entry.
        change = {
            "$set": {"connection_id": connection_id, "list_id": list_id, "size": size, "source": source, "as_of": at}
        }

        async def write() -> None:
            try:
                await self._sizes.update_one(key, change, upsert=True)
            except (DuplicateKeyError, OperationFailure) as exc:
                if not is_duplicate_key(exc):
                    raise
                # Two first puts raced (FerretDB's upsert is not atomic either, nor
                # is MongoDB's always): the entry exists now.
                await self._sizes.update_one(key, change)

        await self._writer.run(key["_id"], write)
        return AudienceSize(list_id=list_id, size=size, size_source=source, size_as_of=at)


def is_fresh(size: AudienceSize, ttl_s: float) -> bool:
    return size.size_as_of is not None and size.size_as_of > now() - timedelta(seconds=ttl_s)
