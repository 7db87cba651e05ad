"""Client-side rate limiting: pace, headroom, sharing between clients."""

from __future__ import annotations

import asyncio
import time
import warnings

import httpx
import pytest
from prometheus_client import REGISTRY

from liftstack_shared.iterable import (
    PUBLISHED_LIMITS,
    BulkUpdateUser,
    Endpoint,
    Limit,
    RateLimiterRegistry,
    RoutedRateLimits,
    default_registry,
)

from . import samples
from .conftest import KEY


def answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path.removeprefix("/us").removeprefix("/eu")
    return httpx.Response(200, json=samples.BY_ROUTE[(request.method, path)])


def fast_lists(rate: float) -> dict[str, Limit]:
    return {Endpoint.GET_LISTS: Limit(rate, 1)}


async def timed(*coros) -> float:
    started = time.monotonic()
    await asyncio.gather(*coros)
    return time.monotonic() - started


def test_published_limits_match_the_reference() -> None:
    assert PUBLISHED_LIMITS[Endpoint.BULK_UPDATE].rate == 5
    assert PUBLISHED_LIMITS[Endpoint.GET_USER_FIELDS].rate == 3
    assert PUBLISHED_LIMITS[Endpoint.GET_LIST_USERS].rate == pytest.approx(5 / 60)
    assert PUBLISHED_LIMITS[Endpoint.GET_LIST_SIZE].rate == pytest.approx(5 / 60)
    assert PUBLISHED_LIMITS[Endpoint.GET_TEMPLATES].rate == 100
    assert Endpoint.UPSERT_EMAIL_TEMPLATE not in PUBLISHED_LIMITS  # none documented
    assert Endpoint.GET_WEBHOOKS not in PUBLISHED_LIMITS


def test_headroom_is_validated() -> None:
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError):
            RateLimiterRegistry(headroom=bad)


async def test_bulk_update_is_paced_at_90_percent_of_5_per_second() -> None:
    registry = RateLimiterRegistry()  # headroom 0.9 -> 4.5 requests/s, evenly spaced
    elapsed = await timed(*(registry.acquire("p", Endpoint.BULK_UPDATE) for _ in range(6)))
    # 6 requests: the first at once, then one every 1/4.5 s.
    assert 5 / 4.5 - 0.05 <= elapsed <= 5 / 4.5 + 0.5


async def test_headroom_scales_the_pace() -> None:
    full = RateLimiterRegistry(headroom=1.0, limits=fast_lists(20))
    half = RateLimiterRegistry(headroom=0.5, limits=fast_lists(20))
    t_full = await timed(*(full.acquire("p", Endpoint.GET_LISTS) for _ in range(5)))
    t_half = await timed(*(half.acquire("p", Endpoint.GET_LISTS) for _ in range(5)))
    # Lower bounds are the point; upper bounds are loose for busy CI machines.
    assert 4 / 20 - 0.02 <= t_full <= 4 / 20 + 0.25
    assert 4 / 10 - 0.02 <= t_half <= 4 / 10 + 0.25


async def test_no_window_of_one_second_exceeds_the_limit() -> None:
    """Even pacing stays under a fixed or sliding one-second window, not just a
    leaky bucket: what Iterable really enforces is not documented."""
    registry = RateLimiterRegistry(headroom=0.9)
    stamps: list[float] = []

    async def one() -> None:
        await registry.acquire("p", Endpoint.BULK_UPDATE)
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(12)))
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t - start < 1.0) <= 5


async def test_clients_with_the_same_key_share_a_bucket(make_client) -> None:
    registry = RateLimiterRegistry(headroom=1.0, limits=fast_lists(10))
    async with make_client(answer, rate_limits=registry) as a, make_client(answer, rate_limits=registry) as b:
        assert a.project_key == b.project_key and KEY not in a.project_key
        elapsed = await timed(*(c.get_lists() for c in (a, b) for _ in range(3)))
    assert elapsed >= 5 / 10 - 0.03  # 6 requests through one 10/s bucket


async def test_explicit_project_key_shares_across_keys(make_client, watched_keys) -> None:
    other_key = "fedcba9876543210fedcba9876543210"  # e.g. the project's read-only key
    watched_keys.add(other_key)
    registry = RateLimiterRegistry(headroom=1.0, limits=fast_lists(10))
    async with (
        make_client(answer, rate_limits=registry, project_key="proj-1") as a,
        make_client(answer, rate_limits=registry, project_key="proj-1", api_key=other_key) as b,
    ):
        elapsed = await timed(*(c.get_lists() for c in (a, b) for _ in range(3)))
    assert elapsed >= 5 / 10 - 0.03


async def test_different_projects_do_not_share(make_client, watched_keys) -> None:
    other_key = "fedcba9876543210fedcba9876543210"
    watched_keys.add(other_key)
    registry = RateLimiterRegistry(headroom=1.0, limits=fast_lists(10))
    async with (
        make_client(answer, rate_limits=registry) as a,
        make_client(answer, rate_limits=registry, api_key=other_key) as b,
    ):
        assert a.project_key != b.project_key
        elapsed = await timed(*(c.get_lists() for c in (a, b) for _ in range(3)))
    assert elapsed < 0.4  # two buckets in parallel (0.2 s); one shared would be 0.5 s


async def test_endpoints_have_separate_buckets() -> None:
    registry = RateLimiterRegistry(headroom=1.0)
    await registry.acquire("p", Endpoint.GET_LIST_SIZE)  # 5/min: the next waits 12 s
    elapsed = await timed(registry.acquire("p", Endpoint.GET_LIST_USERS), registry.acquire("p", Endpoint.GET_LISTS))
    assert elapsed < 1.0  # a shared bucket would make one of them wait 12 s


async def test_undocumented_endpoints_are_not_throttled(make_client) -> None:
    registry = RateLimiterRegistry()
    async with make_client(answer, rate_limits=registry) as client:
        elapsed = await timed(*(client.get_webhooks() for _ in range(50)))
    assert elapsed < 2.0


async def test_routed_limits_send_bulk_update_elsewhere(make_client) -> None:
    calls: list[tuple[str, str]] = []

    class Distributed:
        async def acquire(self, project_key: str, endpoint: str) -> None:
            calls.append((project_key, endpoint))

    routed = RoutedRateLimits(RateLimiterRegistry(), {Endpoint.BULK_UPDATE: Distributed()})
    async with make_client(answer, rate_limits=routed, project_key="proj-9") as client:
        await client.bulk_update([])  # nothing to send: no budget used
        await client.bulk_update([BulkUpdateUser(userId="u1")])
        await client.get_lists()
    assert calls == [("proj-9", "users/bulkUpdate")]


async def test_default_registry_is_shared_process_wide(make_client) -> None:
    async with (
        make_client(answer, rate_limits=None) as a,
        make_client(answer, rate_limits=None) as b,
        make_client(answer, rate_limits=None, headroom=0.5) as c,
    ):
        assert a.rate_limits is b.rate_limits is default_registry(0.9)
        assert c.rate_limits is default_registry(0.5)


async def test_limiter_waits_are_logged_and_measured(make_client, caplog) -> None:
    def count() -> float:
        return (
            REGISTRY.get_sample_value(
                "liftstack_iterable_rate_limit_wait_seconds_count", {"endpoint": "lists", "source": "limiter"}
            )
            or 0.0
        )

    before = count()
    registry = RateLimiterRegistry(headroom=1.0, limits=fast_lists(20))
    async with make_client(answer, rate_limits=registry) as client:
        await asyncio.gather(*(client.get_lists() for _ in range(3)))
    assert count() >= before + 2
    assert "waited" in caplog.text and "for rate-limit budget" in caplog.text


def test_registry_survives_a_new_event_loop() -> None:
    registry = RateLimiterRegistry(headroom=1.0, limits=fast_lists(1000))

    async def use() -> None:
        for _ in range(3):
            await registry.acquire("p", Endpoint.GET_LISTS)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aiolimiter warns on cross-loop reuse
        asyncio.run(use())
        asyncio.run(use())
