"""Client-side rate limiting at Iterable's published per-project limits.

The interface is one coroutine, `acquire(project_key, endpoint)`, that returns when
one request may be sent. `RateLimiterRegistry` is the in-process implementation
(aiolimiter buckets, shared by every client given the same registry); a distributed
bucket (e.g. for bulkUpdate across writeback workers) implements `RateLimits` too and
can be routed to per endpoint with `RoutedRateLimits`.

Buckets release requests evenly spaced (burst 1) by default: Iterable calls its limit
a leaky bucket, but an even pace also stays under a fixed or sliding one-second
window, so it is safe whatever the server really does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol
from weakref import WeakKeyDictionary

from aiolimiter import AsyncLimiter


class Endpoint(StrEnum):
    """Every endpoint the client calls; the value names it in buckets, logs, metrics."""

    BULK_UPDATE = "users/bulkUpdate"
    GET_USER_FIELDS = "users/getFields"
    GET_USER = "users/get"  # getByEmail, byUserId
    GET_LISTS = "lists"
    GET_LIST_USERS = "lists/getUsers"
    GET_LIST_SIZE = "lists/size"
    GET_TEMPLATES = "templates"
    GET_EMAIL_TEMPLATE = "templates/email/get"
    GET_TEMPLATES_BY_CLIENT_ID = "templates/getByClientTemplateId"
    UPSERT_EMAIL_TEMPLATE = "templates/email/upsert"
    UPDATE_EMAIL_TEMPLATE = "templates/email/update"
    GET_WEBHOOKS = "webhooks"


@dataclass(frozen=True)
class Limit:
    requests: float
    per_seconds: float
    burst: int = 1

    @property
    def rate(self) -> float:
        return self.requests / self.per_seconds


# Iterable's published per-project limits (iterable-api.md). Endpoints missing here
# have no documented limit and are not throttled client-side (429s are still handled).
PUBLISHED_LIMITS: Mapping[str, Limit] = {
    Endpoint.BULK_UPDATE: Limit(5, 1),
    Endpoint.GET_USER_FIELDS: Limit(3, 1),
    Endpoint.GET_USER: Limit(100, 1),
    Endpoint.GET_LISTS: Limit(100, 1),
    Endpoint.GET_LIST_USERS: Limit(5, 60),
    Endpoint.GET_LIST_SIZE: Limit(5, 60),
    Endpoint.GET_TEMPLATES: Limit(100, 1),
    Endpoint.GET_EMAIL_TEMPLATE: Limit(100, 1),
    Endpoint.GET_TEMPLATES_BY_CLIENT_ID: Limit(100, 1),
}


class RateLimits(Protocol):
    """What the client needs from a rate limiter. `project_key` identifies an Iterable
    project's budget (not a secret: the client passes a hash of the key unless told a
    project id); `endpoint` is an `Endpoint` value."""

    async def acquire(self, project_key: str, endpoint: str) -> None: ...


class NoRateLimits:
    """Never waits: for tests and tools that must not be throttled client-side."""

    async def acquire(self, project_key: str, endpoint: str) -> None:
        return None


class RateLimiterRegistry:
    """In-process buckets, one per (project, endpoint), created on first use.

    `headroom` scales every limit (0.9 = 90%) because the customer's other tools share
    the project's budget. Share one registry among all clients of a process.
    """

    def __init__(self, headroom: float = 0.9, limits: Mapping[str, Limit] = PUBLISHED_LIMITS) -> None:
        if not 0 < headroom <= 1:
            raise ValueError("headroom must be in (0, 1]")
        self.headroom = headroom
        self.limits = dict(limits)
        # aiolimiter buckets belong to one event loop, so buckets are kept per loop
        # (a process-wide registry may outlive a loop, as in tests).
        self._buckets: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], AsyncLimiter]] = (
            WeakKeyDictionary()
        )

    def _bucket(self, project_key: str, endpoint: str) -> AsyncLimiter | None:
        limit = self.limits.get(endpoint)
        if limit is None:
            return None
        buckets = self._buckets.setdefault(asyncio.get_running_loop(), {})
        bucket = buckets.get((project_key, endpoint))
        if bucket is None:
            rate = limit.rate * self.headroom
            # AsyncLimiter(max_rate, period) drains max_rate per period and holds at
            # most max_rate: burst `b` at `rate`/s is (b, b / rate).
            bucket = AsyncLimiter(limit.burst, limit.burst / rate)
            buckets[(project_key, endpoint)] = bucket
        return bucket

    async def acquire(self, project_key: str, endpoint: str) -> None:
        bucket = self._bucket(project_key, endpoint)
        if bucket is not None:
            await bucket.acquire()


class RoutedRateLimits:
    """Sends some endpoints to another implementation, e.g. bulkUpdate to a
    distributed bucket and everything else to the in-process registry."""

    def __init__(self, default: RateLimits, routes: Mapping[str, RateLimits]) -> None:
        self.default = default
        self.routes = dict(routes)

    async def acquire(self, project_key: str, endpoint: str) -> None:
        await self.routes.get(endpoint, self.default).acquire(project_key, endpoint)


_defaults: dict[float, RateLimiterRegistry] = {}


def default_registry(headroom: float = 0.9) -> RateLimiterRegistry:
    """The process-wide registry clients use when given none, so two clients for the
    same project share buckets even if nobody wired a registry through."""
    registry = _defaults.get(headroom)
    if registry is None:
        registry = _defaults[headroom] = RateLimiterRegistry(headroom)
    return registry
