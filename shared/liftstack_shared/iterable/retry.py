"""Retry budget and backoff for the Iterable client, and Retry-After parsing."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Retry budget and backoff. Delays grow as base * 2**retry up to the cap, and the
    last `jitter` fraction of each delay is random so clients don't retry in step."""

    # 5xx, timeouts, connection errors: retried this many times, then
    # IterableUnavailable.
    max_transient_retries: int = 5
    transient_base_delay: float = 0.5
    transient_max_delay: float = 20.0
    # 429: generous, because the project's budget is shared with the customer's other
    # tools and may stay exhausted for a while; then IterableRateLimited.
    max_rate_limit_retries: int = 20
    rate_limit_base_delay: float = 1.0
    rate_limit_max_delay: float = 60.0
    # A Retry-After above this is not waited out: IterableRateLimited at once.
    max_retry_after: float = 300.0
    jitter: float = 0.5

    def delay(self, retry: int, base: float, cap: float, rng: random.Random) -> float:
        full = min(cap, base * 2.0**retry)
        return full * (1 - self.jitter) + rng.uniform(0, full * self.jitter)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
