"""A distributed request pacer in MongoDB: one rate budget per Iterable project,
shared by every job and every writeback instance.

Time is cut into slots of `1 / (limit x headroom)` seconds (0.222 s for bulkUpdate's
5/s at 90%). Sending a request takes a slot: the slot is *claimed* by inserting a
document whose `_id` is `<bucket>|<slot number>`, and the request waits until that
slot's start. The unique `_id` is the only guarantee relied on: two claimers can never
both own a slot, so requests to one project are at least one interval apart whichever
instance sends them.

Why inserts and not a compare-and-set on a `next_slot_at` field: the local MongoDB-wire
server (FerretDB on SQLite) applies `update` as read-modify-write without isolation,
so concurrent conditional updates can *both* succeed (measured: 480 "successful" CAS
updates for 51 distinct values) and `$inc`s get lost. A duplicate-key insert is
rejected by the storage engine's unique index there as on real MongoDB.

A `<bucket>|next` hint document remembers the highest claimed slot so claimers skip
straight past slots others took; it is updated with `$max` and may lag (lost updates
on FerretDB) which only costs a duplicate-key retry, never correctness. After a 429
the hint is pushed past the wait (`hold`) so every instance backs off together.
Slot documents are deleted once older than the retention (FerretDB has no TTL
indexes, so this is a periodic query).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from liftstack_shared.iterable import PUBLISHED_LIMITS, Endpoint, Limit

log = logging.getLogger(__name__)

DEFAULT_LIMITS: Mapping[str, Limit] = {Endpoint.BULK_UPDATE: PUBLISHED_LIMITS[Endpoint.BULK_UPDATE]}
_CLEANUP_EVERY_S = 30.0


class MongoPacer:
    """`RateLimits` (the Iterable client's limiter interface) backed by MongoDB.

    Endpoints without a limit in `limits` pass straight through; route only the ones
    that must be shared across processes here (see `RoutedRateLimits`).
    """

    def __init__(
        self,
        collection: AsyncCollection,
        headroom: float = 0.9,
        limits: Mapping[str, Limit] = DEFAULT_LIMITS,
        retention_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self._coll = collection
        self._intervals = {ep: 1.0 / (lim.rate * headroom) for ep, lim in limits.items()}
        self._retention = retention_s
        self._clock = clock
        self._sleep = sleep
        # In-process: one claim at a time per bucket (no self-inflicted duplicate
        # keys), and the last slot this process took.
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, int] = {}
        self._cleaned: dict[str, float] = {}

    def interval(self, endpoint: str) -> float | None:
        return self._intervals.get(endpoint)

    @staticmethod
    def bucket(project_key: str, endpoint: str, interval: float) -> str:
        # The interval is part of the name: slot numbers only mean something for one
        # slot width, so instances configured differently don't misread each other.
        return f"{project_key}|{endpoint}|{round(interval * 1e6)}us"

    async def acquire(self, project_key: str, endpoint: str) -> None:
        interval = self._intervals.get(endpoint)
        if interval is None:
            return
        at = await self.claim(project_key, endpoint)
        delay = at - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def claim(self, project_key: str, endpoint: str) -> float:
        """Take the next free slot of the project's bucket; returns its start (epoch s)."""
        interval = self._intervals[endpoint]
        bucket = self.bucket(project_key, endpoint, interval)
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        async with lock:
            hint = await self._coll.find_one({"_id": f"{bucket}|next"})
            now = self._clock()
            slot = max(
                math.ceil(now / interval),
                int(hint["k"]) if hint else 0,
                self._last.get(bucket, -1) + 1,
            )
            while True:
                try:
                    await self._coll.insert_one({"_id": f"{bucket}|{slot}", "b": bucket, "at": slot * interval})
                    break
                except DuplicateKeyError:
                    slot += 1  # another instance has it
            self._last[bucket] = slot
            await self._raise_hint(bucket, slot + 1)
            if now - self._cleaned.get(bucket, 0.0) > _CLEANUP_EVERY_S:
                self._cleaned[bucket] = now
                await self._coll.delete_many({"b": bucket, "at": {"$lt": now - self._retention}})
            return slot * interval

    async def hold(self, project_key: str, endpoint: str, seconds: float) -> None:
        """Nobody (in any instance) gets a slot for `seconds`: after a 429 the whole
        project backs off instead of each in-flight request finding out on its own."""
        interval = self._intervals.get(endpoint)
        if interval is None or seconds <= 0:
            return
        bucket = self.bucket(project_key, endpoint, interval)
        first_free = math.ceil((self._clock() + seconds) / interval)
        self._last[bucket] = max(self._last.get(bucket, -1), first_free - 1)
        await self._raise_hint(bucket, first_free)

    async def _raise_hint(self, bucket: str, slot: int) -> None:
        try:
            await self._coll.update_one({"_id": f"{bucket}|next"}, {"$max": {"k": slot}}, upsert=True)
        except DuplicateKeyError:
            pass  # two first-ever upserts raced; the hint exists now, good enough
