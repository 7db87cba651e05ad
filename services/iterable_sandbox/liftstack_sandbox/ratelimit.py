"""Per-project leaky buckets at Iterable's published rate limits.

Iterable describes its limits as a leaky bucket per project. We implement the bucket
as GCRA (the "virtual scheduling" form of a leaky bucket): each admitted request
pushes a theoretical arrival time (TAT) forward by one interval (period / count);
a request is refused while TAT is more than `capacity - 1` intervals ahead of now.
So a client spacing requests evenly at the published rate is never refused, and a
burst of `capacity` requests from idle is admitted before refusals start.

Capacity is one period's worth of the published number by default
(`ProjectConfig.burst_periods`): 5 for bulkUpdate's 5/s, 5 for getUsers' 5/min.
Refused requests do not fill the bucket (they were not served).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    count: int
    per_seconds: float

    @property
    def interval(self) -> float:
        return self.per_seconds / self.count


# Bucket name -> Iterable's published limit (iterable-api.md, the spec's descriptions).
# Endpoints without an entry have no documented limit and are never throttled.
PUBLISHED_LIMITS: dict[str, Limit] = {
    "users/bulkUpdate": Limit(5, 1),
    "users/getFields": Limit(3, 1),
    "users/get": Limit(100, 1),  # getByEmail, byUserId, /users/{email}
    "users/forget": Limit(3, 1),
    "lists": Limit(100, 1),
    "lists/getUsers": Limit(5, 60),
    "lists/size": Limit(5, 60),
    "templates": Limit(100, 1),
    "templates/email/get": Limit(100, 1),
    "templates/getByClientTemplateId": Limit(100, 1),
}


class LeakyBucket:
    def __init__(self, limit: Limit, burst_periods: float = 1.0) -> None:
        self.limit = limit
        self.capacity = max(1, math.floor(limit.count * burst_periods + 1e-9))
        self._interval = limit.interval
        self._tolerance = (self.capacity - 1) * self._interval
        self._tat = 0.0

    def try_acquire(self, now: float) -> float | None:
        """Admit one request (None) or return the seconds until one would be admitted."""
        tat = max(self._tat, now)
        ahead = tat - now
        if ahead > self._tolerance + 1e-9:
            return ahead - self._tolerance
        self._tat = tat + self._interval
        return None


class RateLimiter:
    """The buckets of one project, created on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, LeakyBucket] = {}
        self._burst_periods = 1.0
        self._lock = threading.Lock()

    def reset(self, burst_periods: float) -> None:
        with self._lock:
            self._buckets.clear()
            self._burst_periods = burst_periods

    def acquire(self, name: str) -> float | None:
        """None if the request may proceed, else seconds to wait (> 0)."""
        limit = PUBLISHED_LIMITS.get(name)
        if limit is None:
            return None
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                bucket = self._buckets[name] = LeakyBucket(limit, self._burst_periods)
            return bucket.try_acquire(self._clock())
