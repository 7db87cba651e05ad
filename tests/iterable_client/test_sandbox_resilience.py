"""Contract tests over real HTTP: the sandbox's rate limits, 429s with and without
Retry-After, 5xx bursts, dropped connections, timeouts and broken streams."""

from __future__ import annotations

import asyncio
import time

import pytest

from liftstack_shared.iterable import (
    BulkUpdateUser,
    IterableRateLimited,
    IterableUnavailable,
    RateLimiterRegistry,
    RetryPolicy,
)

from .sandbox_support import CONTRACT_RETRY, RecordingSleep, sandbox_client


@pytest.fixture
def limited(sandbox):
    """A project with Iterable's published limits on (the sandbox default)."""
    return sandbox.create_project(region="US")


@pytest.fixture
def key(sandbox, limited, watched_keys) -> str:
    value = sandbox.create_key(limited)
    watched_keys.add(value)
    return value


def one_user(i: int) -> list[BulkUpdateUser]:
    return [BulkUpdateUser(email=f"u{i}@example.com", dataFields={"i": i})]


async def test_429_without_retry_after_backs_off_and_succeeds(sandbox, limited, key, caplog) -> None:
    sleep = RecordingSleep()
    async with sandbox_client(sandbox, key, sleep=sleep) as client:  # no client-side limiter
        results = await asyncio.gather(*(client.bulk_update(one_user(i)) for i in range(15)))
    assert all(r.successCount == 1 for r in results)
    stats = sandbox.stats(limited)["users/bulkUpdate"]
    assert stats[200] == 15 and stats[429] > 0
    assert len(sleep.sleeps) == stats[429]  # one wait per 429 ...
    assert "HTTP 429" in caplog.text and "(backoff)" in caplog.text  # ... own backoff
    assert "(Retry-After)" not in caplog.text


async def test_429_with_retry_after_is_honoured(sandbox, limited, key, caplog) -> None:
    sandbox.configure(limited, retry_after=True)
    sleep = RecordingSleep()
    async with sandbox_client(sandbox, key, sleep=sleep) as client:
        results = await asyncio.gather(*(client.bulk_update(one_user(i)) for i in range(8)))
    assert all(r.successCount == 1 for r in results)
    assert sandbox.stats(limited)["users/bulkUpdate"][429] > 0
    assert sleep.sleeps and all(s >= 1.0 for s in sleep.sleeps)  # the sandbox says "1"
    assert "(Retry-After)" in caplog.text


async def test_persistent_429_raises_rate_limited(sandbox, limited, key) -> None:
    sandbox.faults(limited, fail_next=100, fail_status=429)
    policy = RetryPolicy(max_rate_limit_retries=3, rate_limit_base_delay=0.01, rate_limit_max_delay=0.02)
    async with sandbox_client(sandbox, key, retry=policy) as client:
        with pytest.raises(IterableRateLimited) as info:
            await client.get_lists()
    assert info.value.status == 429 and "after 3 retries" in str(info.value)
    assert sandbox.stats(limited)["lists"] == {429: 4}


async def test_client_limiter_keeps_under_the_published_limit(sandbox, limited, key) -> None:
    registry = RateLimiterRegistry()  # 90% of 5/s
    started = time.monotonic()
    async with sandbox_client(sandbox, key, rate_limits=registry) as client:
        await asyncio.gather(*(client.bulk_update(one_user(i)) for i in range(12)))
    elapsed = time.monotonic() - started
    assert sandbox.stats(limited)["users/bulkUpdate"] == {200: 12}  # not one 429
    assert elapsed >= 11 / 4.5 - 0.1


async def test_two_clients_of_one_project_share_the_budget(sandbox, limited, key, watched_keys) -> None:
    other = sandbox.create_key(limited)  # a second key of the same project
    watched_keys.add(other)
    registry = RateLimiterRegistry()
    async with (
        sandbox_client(sandbox, key, rate_limits=registry, project_key="p1") as a,
        sandbox_client(sandbox, other, rate_limits=registry, project_key="p1") as b,
    ):
        await asyncio.gather(*(c.bulk_update(one_user(i)) for i in range(6) for c in (a, b)))
    assert sandbox.stats(limited)["users/bulkUpdate"] == {200: 12}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_burst_is_retried(sandbox, limited, key, status: int, caplog) -> None:
    sandbox.faults(limited, fail_next=3, fail_status=status)
    async with sandbox_client(sandbox, key) as client:
        result = await client.bulk_update(one_user(1))
    assert result.successCount == 1
    assert sandbox.stats(limited)["users/bulkUpdate"] == {status: 3, 200: 1}
    assert caplog.text.count(f"HTTP {status}") == 3


async def test_5xx_burst_longer_than_the_retries_raises(sandbox, limited, key) -> None:
    sandbox.faults(limited, fail_next=50, fail_status=500)
    async with sandbox_client(sandbox, key) as client:
        with pytest.raises(IterableUnavailable) as info:
            await client.get_lists()
    assert info.value.status == 500
    assert sandbox.stats(limited)["lists"] == {500: CONTRACT_RETRY.max_transient_retries + 1}


async def test_random_errors_are_absorbed(sandbox, limited, key) -> None:
    sandbox.faults(limited, error_rate=0.3, error_statuses=[500, 502, 503, 504], seed=7)
    policy = RetryPolicy(max_transient_retries=8, transient_base_delay=0.01, transient_max_delay=0.05)
    async with sandbox_client(sandbox, key, retry=policy) as client:
        for _ in range(20):
            await client.get_lists()
    stats = sandbox.stats(limited)["lists"]
    assert stats[200] == 20 and sum(stats.values()) > 20


async def test_dropped_connections_are_retried(sandbox, limited, key) -> None:
    sandbox.faults(limited, drop_next=2)
    async with sandbox_client(sandbox, key) as client:
        result = await client.bulk_update(one_user(1))
    assert result.successCount == 1
    assert sandbox.stats(limited)["users/bulkUpdate"] == {0: 2, 200: 1}


async def test_timeouts_are_retried_then_raise(sandbox, limited, key, caplog) -> None:
    sandbox.faults(limited, latency_ms=400)
    policy = RetryPolicy(max_transient_retries=2, transient_base_delay=0.01)
    async with sandbox_client(sandbox, key, retry=policy, timeout=0.1) as client:
        with pytest.raises(IterableUnavailable, match="ReadTimeout"):
            await client.get_webhooks()
    assert caplog.text.count("ReadTimeout; retry") == 2


async def test_503_before_get_users_stream_is_retried(sandbox, limited, key) -> None:
    list_id = sandbox.create_list(limited, "l", generate=2500)
    sandbox.faults(limited, fail_next=2, fail_status=503, paths=["/api/lists/getUsers"])
    async with sandbox_client(sandbox, key) as client:
        count = sum([1 async for _ in client.iter_list_users(list_id)])
    assert count == 2500
    assert sandbox.stats(limited)["lists/getUsers"] == {503: 2, 200: 1}


async def test_get_users_stream_cut_midway_raises(sandbox, limited, key) -> None:
    list_id = sandbox.create_list(limited, "l", generate=5000)
    sandbox.faults(limited, stream_cut_after_lines=1500, paths=["/api/lists/getUsers"])
    got: list[str] = []
    async with sandbox_client(sandbox, key) as client:
        with pytest.raises(IterableUnavailable, match="stream broke after"):
            async for identifier in client.iter_list_users(list_id):
                got.append(identifier)
    assert 0 < len(got) <= 1500
    assert got[0] == "user0@example.com"


async def test_get_users_at_its_5_per_minute_limit(sandbox, limited, key) -> None:
    """getUsers is 5/min: the sandbox admits a burst of 5, then 429s; without
    Retry-After the client backs off on its own, here cut short by the policy."""
    list_id = sandbox.create_list(limited, "l", generate=3)
    policy = RetryPolicy(max_rate_limit_retries=1, rate_limit_base_delay=0.01)
    async with sandbox_client(sandbox, key, retry=policy) as client:
        for _ in range(5):
            assert len([i async for i in client.iter_list_users(list_id)]) == 3
        with pytest.raises(IterableRateLimited):
            [i async for i in client.iter_list_users(list_id)]
    assert sandbox.stats(limited)["lists/getUsers"] == {200: 5, 429: 2}
