"""Sync records and cached audience sizes in Mongo.

FerretDB has no transactions or TTL indexes: every write is a single-document update,
state changes are conditional (`status` in the filter), and expiry is by timestamp.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from liftstack_shared.messages import utcnow

from liftstack_audiences.models import AudienceSize, SizeSource, SyncError, SyncRecord, SyncStatus
from liftstack_audiences.state import Counts

ACTIVE: tuple[SyncStatus, ...] = ("pending", "running")


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


class SyncStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._syncs = db["audience_syncs"]

    async def ensure_indexes(self) -> None:
        await self._syncs.create_index(
            [("connection_id", ASCENDING), ("list_id", ASCENDING), ("created_at", DESCENDING)]
        )

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
                "workspace_id": workspace_id, "connection_id": connection_id,
                "list_id": list_id, "status": {"$in": list(ACTIVE)},
                "updated_at": {"$gte": alive_since},
            },
            sort=[("created_at", DESCENDING)],
        )
        return _record(doc)

    async def claim_retry(self, sync_id: str, dead_before: datetime) -> SyncRecord | None:
        """Atomically move a failed (or dead pending/running) sync back to pending.
        None if it is not retryable (completed, or alive elsewhere)."""
        doc = await self._syncs.find_one_and_update(
            {
                "_id": sync_id,
                "$or": [
                    {"status": "failed"},
                    {"status": {"$in": list(ACTIVE)}, "updated_at": {"$lt": dead_before}},
                ],
            },
            {"$set": {"status": "pending", "error": None, "finished_at": None,
                      "updated_at": now()}},
            return_document=ReturnDocument.AFTER,
        )
        return _record(doc)

    async def mark_running(self, sync_id: str) -> SyncRecord | None:
        at = now()
        doc = await self._syncs.find_one_and_update(
            {"_id": sync_id, "status": "pending"},
            {"$set": {"status": "running", "started_at": at, "updated_at": at},
             "$inc": {"runs": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return _record(doc)

    async def stream_opened(self, sync_id: str) -> None:
        await self._syncs.update_one({"_id": sync_id}, {"$inc": {"stream_attempts": 1}})

    async def progress(self, sync_id: str, counts: Counts) -> None:
        await self._syncs.update_one(
            {"_id": sync_id, "status": "running"},
            {"$set": {**_counts(counts), "updated_at": now()}},
        )

    async def heartbeat(self, sync_id: str) -> None:
        await self._syncs.update_one(
            {"_id": sync_id, "status": {"$in": list(ACTIVE)}},
            {"$set": {"updated_at": now()}},
        )

    async def finish(
        self, sync_id: str, status: SyncStatus, counts: Counts | None,
        error: SyncError | None = None,
    ) -> SyncRecord | None:
        at = now()
        update: dict[str, Any] = {
            "status": status, "finished_at": at, "updated_at": at,
            "error": error.model_dump() if error else None,
        }
        if counts is not None:
            update |= _counts(counts)
        doc = await self._syncs.find_one_and_update(
            {"_id": sync_id}, {"$set": update}, return_document=ReturnDocument.AFTER
        )
        return _record(doc)


class SizeCache:
    """Audience sizes by (connection, list): from lists/{id}/size (5 req/min, so
    cached) or from a completed sync's exact member count."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._sizes = db["audience_sizes"]

    async def get_many(self, connection_id: str, list_ids: list[int]) -> dict[int, AudienceSize]:
        found: dict[int, AudienceSize] = {}
        async for doc in self._sizes.find(
            {"connection_id": connection_id, "list_id": {"$in": list_ids}}
        ):
            found[doc["list_id"]] = AudienceSize(
                list_id=doc["list_id"], size=doc["size"], size_source=doc["source"],
                size_as_of=doc["as_of"],
            )
        return found

    async def get(self, connection_id: str, list_id: int) -> AudienceSize | None:
        return (await self.get_many(connection_id, [list_id])).get(list_id)

    async def put(
        self, connection_id: str, list_id: int, size: int, source: SizeSource
    ) -> AudienceSize:
        at = now()
        await self._sizes.update_one(
            {"_id": f"{connection_id}:{list_id}"},
            {"$set": {"connection_id": connection_id, "list_id": list_id, "size": size,
                      "source": source, "as_of": at}},
            upsert=True,
        )
        return AudienceSize(list_id=list_id, size=size, size_source=source, size_as_of=at)


def is_fresh(size: AudienceSize, ttl_s: float) -> bool:
    return size.size_as_of is not None and size.size_as_of > now() - timedelta(seconds=ttl_s)
