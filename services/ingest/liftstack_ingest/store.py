"""All of ingest's MongoDB access: the Events page read model (FerretDB-compatible:
no transactions, no TTL indexes; single-document idempotent writes, expiry by query).
What is counted, and why it is counted this way, is `events.py`.

Collections:
- `ingest_events`: one document per distinct event (`_id` = content-derived event
  id, so an Iterable retry collides with the first delivery), or per rejected
  request (`_id` from its Kafka coordinates), or per dead letter of a consumer
  ("failed downstream", `_id` = `dl:<consumer>:<source coordinates>`). The
  recent-events list, and the dedupe marker for counting: written with
  `liftstack_shared.mongo.insert_once`, the same insert-once-on-event_id the results
  consumer uses.
- `ingest_counts`: counters per connection, time bucket (minute "m" / hour "h"),
  event name, outcome, reason and source partition (`events.counter_adds`). Minute
  buckets serve the last hour, hour buckets 24 h and 7 d; a window sums its buckets.
- `ingest_connections`: per connection, the last time anything was received.
- `ingest_counted`: ids whose counters were incremented.

Steady state is inserts plus a few counter upserts per batch: FerretDB (SQLite) is
slow at multi-document updates and `$in` scans.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from liftstack_ingest.events import (
    HOUR_RETENTION,
    MINUTE_RETENTION,
    ApplyResult,
    CounterAdd,
    Entry,
    counter_adds,
    decode_cursor,
    encode_cursor,
    last_seen,
    millis,
    window_starts,
)
from liftstack_shared.mongo import insert_once, is_duplicate_key

Document = dict[str, Any]


class EventsStore:
    def __init__(self, db: AsyncDatabase[Document], retention: timedelta) -> None:
        self.events = db["ingest_events"]
        self.counts = db["ingest_counts"]
        self.connections = db["ingest_connections"]
        self.counted = db["ingest_counted"]
        self._retention = retention

    async def ensure_indexes(self) -> None:
        await self.events.create_index([("connection_id", ASCENDING), ("received_at", DESCENDING), ("_id", DESCENDING)])
        await self.events.create_index([("received_at", ASCENDING)])
        await self.counted.create_index([("received_at", ASCENDING)])
        await self.counts.create_index([("connection_id", ASCENDING), ("granularity", ASCENDING), ("start", ASCENDING)])
        await self.counts.create_index([("granularity", ASCENDING), ("start", ASCENDING)])

    # ------------------------------------------------------------------ writing

    async def apply(self, entries: list[Entry]) -> ApplyResult:
        """Store and count a batch (idempotent: see `events`)."""
        if not entries:
            return ApplyResult(0, 0)
        for entry in entries:
            entry.at = millis(entry.at)  # BSON keeps milliseconds; cursors compare exactly
        duplicate_idx = await insert_once(self.events, [e.document() for e in entries])
        to_count = [e for i, e in enumerate(entries) if i not in duplicate_idx]
        if duplicate_idx:
            to_count += await self._uncounted_own([entries[i] for i in sorted(duplicate_idx)])
        if to_count:
            for add in counter_adds(to_count):
                await self._add(add)
            await self._note_received(to_count)
            # Inserts only: FerretDB is slow at multi-document updates.
            await insert_once(self.counted, [{"_id": e.doc_id, "received_at": e.at} for e in to_count])
        return ApplyResult(len(to_count), len(entries) - len(to_count))

    async def _uncounted_own(self, candidates: list[Entry]) -> list[Entry]:
        """Of entries whose id already existed, those from our own earlier,
        interrupted attempt at the very same message (same claim, not counted)."""
        ids = list({e.doc_id for e in candidates})
        claims = {doc["_id"]: doc.get("claim") async for doc in self.events.find({"_id": {"$in": ids}}, {"claim": 1})}
        counted = {doc["_id"] async for doc in self.counted.find({"_id": {"$in": ids}}, {"_id": 1})}
        return [e for e in candidates if e.doc_id not in counted and claims.get(e.doc_id) == e.claim]

    async def _add(self, add: CounterAdd) -> None:
        """`$inc` one counter, unless it already holds its partition's messages up to
        `add.upto`: the batch is being applied again after failing part-way. One
        `update_one` per counter, not `bulk_write`: FerretDB answers a bulk upsert that
        lost a first-insert race without `nModified` (PyMongo raises a KeyError), and
        nobody could tell which `$inc`s were applied."""
        selector = {"_id": add.doc_id, "upto": {"$lt": add.upto}}
        update = {"$inc": {"count": add.n}, "$set": {"upto": add.upto}, "$setOnInsert": add.fields}
        for _ in range(2):
            try:
                await self.counts.update_one(selector, update, upsert=True)
                return
            except PyMongoError as exc:
                if not is_duplicate_key(exc):
                    raise
            # The document exists but did not match: it holds these messages already, or
            # another writer created it just now (a partition changing owners). Once more
            # tells which: a second duplicate key means the former.

    async def _note_received(self, entries: list[Entry]) -> None:
        """Per connection, the newest time received. Two writers' `$max` at one moment
        can keep the older time (FerretDB, see `liftstack_shared.mongo`); the next
        batch corrects it."""
        for (cid, ws), at in last_seen(entries).items():
            await _upsert(
                self.connections,
                {"_id": cid},
                {"$max": {"last_received_at": at}, "$setOnInsert": {"workspace_id": ws}},
            )

    async def prune(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        await self.events.delete_many({"received_at": {"$lt": now - self._retention}})
        await self.counted.delete_many({"received_at": {"$lt": now - self._retention}})
        await self.counts.delete_many({"granularity": "m", "start": {"$lt": now - MINUTE_RETENTION}})
        await self.counts.delete_many({"granularity": "h", "start": {"$lt": now - HOUR_RETENTION}})

    # ------------------------------------------------------------------ reading

    async def recent(
        self,
        connection_id: str,
        limit: int,
        cursor: str | None = None,
        outcome: str | None = None,
    ) -> tuple[list[Document], str | None]:
        """Newest first; returns a page and the cursor of the next one (or None).
        Raises ValueError for a malformed cursor."""
        query: Document = {"connection_id": connection_id}
        if outcome:
            query["outcome"] = outcome
        if cursor:
            at, doc_id = decode_cursor(cursor)
            query["$or"] = [
                {"received_at": {"$lt": at}},
                {"received_at": at, "_id": {"$lt": doc_id}},
            ]
        found = self.events.find(query).sort([("received_at", DESCENDING), ("_id", DESCENDING)])
        docs = [doc async for doc in found.limit(limit + 1)]
        if len(docs) <= limit:
            return docs, None
        last = docs[limit - 1]
        return docs[:limit], encode_cursor(last["received_at"], last["_id"])

    async def last_received(self, connection_id: str) -> datetime | None:
        doc = await self.connections.find_one({"_id": connection_id})
        return doc.get("last_received_at") if doc else None

    async def window_counts(self, connection_id: str, now: datetime | None = None) -> dict[str, list[Document]]:
        """Counter documents per window name (see `events.WINDOWS`)."""
        out: dict[str, list[Document]] = {}
        for name, granularity, since in window_starts(now or datetime.now(UTC)):
            cursor = self.counts.find(
                {"connection_id": connection_id, "granularity": granularity, "start": {"$gte": since}}
            )
            out[name] = [doc async for doc in cursor]
        return out


async def _upsert(collection: AsyncCollection[Document], selector: Document, update: Document) -> None:
    """Concurrent first upserts of one `_id` can fail with a duplicate key; the
    document exists then, so redoing just that one succeeds."""
    for attempt in range(3):
        try:
            await collection.update_one(selector, update, upsert=True)
            return
        except PyMongoError as exc:
            if attempt == 2 or not is_duplicate_key(exc):
                raise
            await asyncio.sleep(0.05)
