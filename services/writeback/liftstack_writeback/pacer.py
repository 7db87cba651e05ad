"""A distributed request pacer: one rate budget per Iterable project, shared by every
job and every writeback instance. This module is the pacing; the slots live in a
`SlotStore` (MongoDB: `store.PacerSlotStore`).

Time is cut into slots of `1 / (limit x headroom)` seconds (0.222 s for bulkUpdate's
5/s at 90%). Sending a request takes a slot: the slot is *claimed* in the store (by
inserting a document whose `_id` is `<bucket>|<slot number>`), and the request waits
until that slot's start. The store's unique `_id` is the only guarantee relied on: two
claimers can never both own a slot, so requests to one project are at least one
interval apart whichever instance sends them.

Why inserts and not a compare-and-set on a `next_slot_at` field: the local MongoDB-wire
server (FerretDB on SQLite) applies `update` as read-modify-write without isolation,
so concurrent conditional updates can *both* succeed (measured: 480 "successful" CAS
updates for 51 distinct values) and `$inc`s get lost. A duplicate-key insert is
rejected by the storage engine's unique index there as on real MongoDB.

A `<bucket>|next` hint remembers the highest claimed slot so claimers skip straight
past slots others took; it is raised with `$max` and may lag (lost updates on
FerretDB) which only costs a duplicate-key retry, never correctness. After a 429 the
hint is pushed past the wait (`hold`) so every instance backs off together. Slots
older than the retention are deleted (FerretDB has no TTL indexes, so this is a
periodic query).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from liftstack_shared.iterable import PUBLISHED_LIMITS, Endpoint, Limit

DEFAULT_LIMITS: Mapping[str, Limit] = {Endpoint.BULK_UPDATE: PUBLISHED_LIMITS[Endpoint.BULK_UPDATE]}
_CLEANUP_EVERY_S = 30.0


class SlotStore(Protocol):
    """Where the slots of every bucket are claimed, shared by all instances."""

    async def next_hint(self, bucket: str) -> int | None:
        """The hint: a slot at or below the first free one (None: no hint yet)."""
        ...

    async def claim_from(self, bucket: str, slot: int, interval: float) -> int:
        """Claim the first free slot >= `slot`; returns it. No two claimers, in any
        process, get the same slot."""
        ...

    async def raise_hint(self, bucket: str, slot: int) -> None: ...

    async def forget_before(self, bucket: str, before: float) -> None:
        """Delete the bucket's slots starting before `before` (epoch s)."""
        ...


class Pacer:
    """`RateLimits` (the Iterable client's limiter interface) on a shared `SlotStore`.

    Endpoints without a limit in `limits` pass straight through; route only the ones
    that must be shared across processes here (see `RoutedRateLimits`).
    """

    def __init__(
        self,
        slots: SlotStore,
        headroom: float = 0.9,
        limits: Mapping[str, Limit] = DEFAULT_LIMITS,
        retention_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self._slots = slots
        self._intervals = {ep: 1.0 / (lim.rate * headroom) for ep, lim in limits.items()}
        self._retention = retention_s
        self._clock = clock
        self._sleep = sleep
        # In-process: the highest slot this process has taken or is trying to take.
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
        hint = await self._slots.next_hint(bucket)
        now = self._clock()
        # Concurrent claims of this process run side by side, not one at a time
        # behind a lock (a claim is three round trips; serialised, they capped the
        # rate at ~1 / (3 x MongoDB latency)). Each reserves its first candidate here,
        # before any await, so they try different slots and only collide with other
        # instances' claims, which the unique insert settles as always.
        first = max(math.ceil(now / interval), hint or 0, self._last.get(bucket, -1) + 1)
        self._last[bucket] = first
        slot = await self._slots.claim_from(bucket, first, interval)
        self._last[bucket] = max(self._last[bucket], slot)
        await self._slots.raise_hint(bucket, slot + 1)
        if now - self._cleaned.get(bucket, 0.0) > _CLEANUP_EVERY_S:
            self._cleaned[bucket] = now
            await self._slots.forget_before(bucket, now - self._retention)
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
        await self._slots.raise_hint(bucket, first_free)
