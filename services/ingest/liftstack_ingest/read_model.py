"""The Events page read model in MongoDB (FerretDB-compatible: no transactions, no
TTL indexes; single-document idempotent writes, expiry by query).

Collections:
- `ingest_events`: one document per distinct event (`_id` = content-derived event
  id, so an Iterable retry collides with the first delivery), or per rejected
  request (`_id` from its Kafka coordinates), or per dead letter of a consumer
  ("failed downstream", `_id` = `dl:<consumer>:<source coordinates>`). The
  recent-events list, and the dedupe marker for counting: written with
  `liftstack_shared.mongo.insert_once`, the same insert-once-on-event_id the results
  consumer uses.
- `ingest_counts`: counters per connection, time bucket (minute "m" / hour "h"),
  event name, outcome, reason and source partition. Minute buckets serve the last
  hour, hour buckets 24 h and 7 d; a window sums its buckets over partitions.
- `ingest_connections`: per connection, the last time anything was received.
- `ingest_counted`: ids whose counters were incremented.

Counting is at-least-once and duplicate-free for Iterable retries and Kafka
redelivery: an entry is inserted with the Kafka coordinates that claimed it, counters
are incremented, then its id is recorded as counted. A redelivered message (same
coordinates, not yet counted) is counted; a second delivery of the same event (other
coordinates) is a duplicate. Counters are per source partition, so each has one
writer at a time (FerretDB loses concurrent `$inc`s of one document, and every
gateway instance runs this consumer in one group), and each remembers the highest
offset it holds, so a batch applied again after failing part-way (the runtime
retries it) adds nothing twice. Only a crash between the increment and the record,
followed by a redelivery reaching further than the crashed batch, counts some
messages twice. Steady state is inserts plus a few counter upserts per batch:
FerretDB (SQLite) is slow at multi-document updates and `$in` scans.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from liftstack_shared.mongo import insert_once, is_duplicate_key

log = logging.getLogger(__name__)
MINUTE_RETENTION = timedelta(hours=2)
HOUR_RETENTION = timedelta(days=8)
# (window name, bucket granularity, number of buckets including the current one)
WINDOWS: tuple[tuple[str, str, int], ...] = (("1h", "m", 60), ("24h", "h", 24), ("7d", "h", 168))
OUTCOMES = ("published", "filtered", "unknown", "rejected")
# A dead letter of a consumer of events (shown, but not part of "received").
FAILED_DOWNSTREAM = "failed_downstream"


@dataclass
class Entry:
    """One countable thing the consumer saw: a published event or an observation."""

    doc_id: str
    claim: str  # Kafka coordinates of the message that carried it
    connection_id: str
    workspace_id: str
    outcome: str
    at: datetime
    event_name: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "_id": self.doc_id,
            "claim": self.claim,
            "connection_id": self.connection_id,
            "workspace_id": self.workspace_id,
            "outcome": self.outcome,
            "event_name": self.event_name,
            "reason": self.reason,
            "received_at": self.at,
            **self.details,
        }

    @property
    def source(self) -> str:
        """The Kafka partition that carried it (`topic:partition`)."""
        return self.claim.rpartition(":")[0]

    @property
    def offset(self) -> int:
        return int(self.claim.rpartition(":")[2])


@dataclass(frozen=True)
class CounterAdd:
    """`n` more on one counter document, from one partition's messages up to offset `upto`."""

    doc_id: str
    n: int
    upto: int
    fields: dict[str, Any]


def counter_adds(entries: list[Entry]) -> list[CounterAdd]:
    """The counter increments of a batch. Counters are kept per source partition: a
    partition has one consumer at a time, so every counter document has a single
    writer (FerretDB loses concurrent `$inc`s of one document), and the highest
    offset a counter holds makes re-applying a batch a no-op."""
    adds: dict[tuple[Any, ...], tuple[int, int]] = {}
    for e in entries:
        for granularity in ("m", "h"):
            key = (
                e.connection_id,
                e.workspace_id,
                granularity,
                _floor(e.at, granularity),
                e.event_name or "",
                e.outcome,
                e.reason or "",
                e.source,
            )
            n, upto = adds.get(key, (0, -1))
            adds[key] = (n + 1, max(upto, e.offset))
    return [
        CounterAdd(
            doc_id=f"{cid}|{gran}|{start.isoformat()}|{name}|{outcome}|{reason}|{source}",
            n=n,
            upto=upto,
            fields={
                "connection_id": cid,
                "workspace_id": ws,
                "granularity": gran,
                "start": start,
                "event_name": name,
                "outcome": outcome,
                "reason": reason,
                "source": source,
            },
        )
        for (cid, ws, gran, start, name, outcome, reason, source), (n, upto) in adds.items()
    ]


@dataclass
class ApplyResult:
    counted: int
    duplicates: int


class ReadModel:
    def __init__(self, db: AsyncDatabase, retention: timedelta) -> None:
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
        if not entries:
            return ApplyResult(0, 0)
        for entry in entries:
            entry.at = _millis(entry.at)  # BSON keeps milliseconds; cursors compare exactly
        duplicate_idx = await insert_once(self.events, [e.document() for e in entries])
        to_count = [e for i, e in enumerate(entries) if i not in duplicate_idx]
        if duplicate_idx:
            to_count += await self._uncounted_own([entries[i] for i in sorted(duplicate_idx)])
        if to_count:
            await self._increment(to_count)
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

    async def _increment(self, entries: list[Entry]) -> None:
        for add in counter_adds(entries):
            await self._add(add)
        last_seen: dict[tuple[str, str], datetime] = {}
        for e in entries:
            conn = (e.connection_id, e.workspace_id)
            last_seen[conn] = max(e.at, last_seen.get(conn, e.at))
        # Two writers' `$max` at one moment can keep the older time (FerretDB, see
        # liftstack_shared.mongo); the next batch corrects it.
        await _bulk_upsert(
            self.connections,
            [
                (
                    {"_id": cid},
                    {"$max": {"last_received_at": at}, "$setOnInsert": {"workspace_id": ws}},
                )
                for (cid, ws), at in last_seen.items()
            ],
        )

    async def _add(self, add: CounterAdd) -> None:
        """`$inc` one counter, unless it already holds its partition's messages up to
        `add.upto`: the batch is being applied again after failing part-way."""
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
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; returns a page and the cursor of the next one (or None)."""
        query: dict[str, Any] = {"connection_id": connection_id}
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

    async def window_counts(self, connection_id: str, now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Counter documents per window name (see `WINDOWS`)."""
        now = now or datetime.now(UTC)
        out: dict[str, list[dict[str, Any]]] = {}
        for name, granularity, buckets in WINDOWS:
            step = timedelta(minutes=1) if granularity == "m" else timedelta(hours=1)
            since = _floor(now, granularity) - step * (buckets - 1)
            cursor = self.counts.find(
                {"connection_id": connection_id, "granularity": granularity, "start": {"$gte": since}}
            )
            out[name] = [doc async for doc in cursor]
        return out


Upsert = tuple[dict[str, Any], dict[str, Any]]  # (filter, update)


async def _bulk_upsert(collection: Any, ops: list[Upsert]) -> None:
    """Apply counter upserts one by one. Concurrent first upserts of one `_id` can fail
    with a duplicate key; the document exists then, so redoing just that one succeeds.
    Not `bulk_write`: FerretDB answers a bulk upsert that lost that race without
    `nModified`, PyMongo raises a KeyError, and nobody can tell which `$inc`s were
    applied (redoing the batch would count some twice)."""
    for selector, update in ops:
        for attempt in range(3):
            try:
                await collection.update_one(selector, update, upsert=True)
                break
            except PyMongoError as exc:
                if attempt == 2 or not is_duplicate_key(exc):
                    raise
                await asyncio.sleep(0.05)


def _floor(at: datetime, granularity: str) -> datetime:
    at = at.astimezone(UTC)
    if granularity == "m":
        return at.replace(second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def _millis(at: datetime) -> datetime:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).replace(microsecond=at.microsecond // 1000 * 1000)


def encode_cursor(at: datetime, doc_id: str) -> str:
    raw = f"{_millis(at).isoformat()}|{doc_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a malformed cursor."""
    padded = cursor + "=" * (-len(cursor) % 4)
    raw = base64.urlsafe_b64decode(padded.encode()).decode()
    at_text, sep, doc_id = raw.partition("|")
    if not sep or not doc_id:
        raise ValueError("bad cursor")
    at = datetime.fromisoformat(at_text)
    if at.tzinfo is None:
        raise ValueError("bad cursor")
    return at, doc_id
