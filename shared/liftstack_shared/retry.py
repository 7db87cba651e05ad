"""Retries with backoff, on tenacity, for calls that are not Kafka messages
(consumers have `liftstack_shared.consumer.MessageGuard`).

    async for attempt in backoff(attempts=4, retry_on=(httpx.TransportError,)):
        with attempt:
            response = await client.get(url)

The last failure is re-raised as itself (not wrapped), so callers handle the same
exception types with or without retries.
"""

from __future__ import annotations

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_never
from tenacity.wait import wait_exponential_jitter


def backoff(
    attempts: int | None = 5,
    first_s: float = 0.2,
    max_s: float = 5.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> AsyncRetrying:
    """Up to `attempts` tries (None: until cancelled), waiting exponentially with
    jitter from `first_s` up to `max_s` between them, retrying only `retry_on`."""
    return AsyncRetrying(
        stop=stop_never if attempts is None else stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=first_s, max=max_s, jitter=first_s),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
    )
