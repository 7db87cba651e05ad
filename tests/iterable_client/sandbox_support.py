"""Helpers for the contract tests that run the client over real HTTP against the
Iterable sandbox (tests/fixtures/sandbox.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from liftstack_shared.iterable import IterableClient, NoRateLimits, RateLimits, RetryPolicy

# Fast enough for tests, but real sleeps.
CONTRACT_RETRY = RetryPolicy(
    max_transient_retries=4,
    transient_base_delay=0.02,
    transient_max_delay=0.2,
    max_rate_limit_retries=40,
    rate_limit_base_delay=0.1,
    rate_limit_max_delay=1.0,
    max_retry_after=5.0,
)


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, keeping every (request, response) for inspection."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.exchanges.append((request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def requests(self) -> list[httpx.Request]:
        return [request for request, _ in self.exchanges]


@dataclass
class RecordingSleep:
    """Really sleeps, and remembers how long each time."""

    sleeps: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(seconds)


def sandbox_client(
    sandbox: Any,
    key: str,
    region: str = "US",
    *,
    rate_limits: RateLimits | None = None,
    retry: RetryPolicy = CONTRACT_RETRY,
    **kwargs: Any,
) -> IterableClient:
    """A client on the sandbox, addressed like production code does it: the sandbox
    base URL plus a region (the client adds /us or /eu)."""
    return IterableClient(
        key,
        region,
        sandbox_base_url=sandbox.base_url,
        rate_limits=rate_limits if rate_limits is not None else NoRateLimits(),
        retry=retry,
        **kwargs,
    )
