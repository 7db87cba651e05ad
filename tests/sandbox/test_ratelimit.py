"""Per-project leaky buckets at the published limits, answering 429
RateLimitExceeded, with or without Retry-After."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from liftstack_sandbox.ratelimit import PUBLISHED_LIMITS, LeakyBucket, Limit
from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.conftest import Api

TINY = {"users": [{"email": "a@example.com", "dataFields": {"n": 1}}]}
RATE_LIMITED = {"code": "RateLimitExceeded", "params": {"endpoint": "/api/users/bulkUpdate"}}


def test_bucket_arithmetic() -> None:
    bucket = LeakyBucket(Limit(5, 1))
    assert bucket.capacity == 5
    assert [bucket.try_acquire(0.0) for _ in range(5)] == [None] * 5
    assert bucket.try_acquire(0.0) == pytest.approx(0.2)  # one leaks out every 200 ms
    assert bucket.try_acquire(0.1) == pytest.approx(0.1)
    assert bucket.try_acquire(0.2) is None
    assert bucket.try_acquire(0.2) is not None
    # Evenly paced at exactly the rate: never refused.
    paced = LeakyBucket(Limit(5, 1))
    assert all(paced.try_acquire(i * 0.2) is None for i in range(1000))
    # Per-minute limits: a burst of 5, then one every 12 s.
    minute = LeakyBucket(Limit(5, 60))
    assert [minute.try_acquire(0) for _ in range(5)] == [None] * 5
    assert minute.try_acquire(0) == pytest.approx(12)
    assert LeakyBucket(Limit(5, 1), burst_periods=0.2).capacity == 1
    assert PUBLISHED_LIMITS["users/bulkUpdate"] == Limit(5, 1)
    assert PUBLISHED_LIMITS["lists/getUsers"] == Limit(5, 60)


async def _burst(sandbox: SandboxHandle, api: Api, n: int) -> tuple[list[httpx.Response], float]:
    """n concurrent requests; also returns how long the burst took."""
    async with httpx.AsyncClient(base_url=sandbox.api_url(api.project), headers=sandbox.headers(api.key)) as client:
        start = time.monotonic()
        responses = await asyncio.gather(*(client.post("/api/users/bulkUpdate", json=TINY) for _ in range(n)))
        return responses, time.monotonic() - start


async def test_burst_gets_429_without_retry_after_by_default(sandbox: SandboxHandle, api: Api) -> None:
    responses, took = await _burst(sandbox, api, 20)
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(limited) == 20
    # Capacity 5, plus at most what leaked (5/s) while the burst was arriving.
    assert 5 <= len(ok) <= 5 + int(5 * took) + 1, (len(ok), took)
    assert len(limited) >= 10
    body = limited[0].json()
    assert {k: body[k] for k in ("code", "params")} == RATE_LIMITED and body["msg"]
    assert all("retry-after" not in r.headers for r in limited)
    assert not any(h.lower().startswith("x-ratelimit") for r in responses for h in r.headers)
    assert sandbox.stats(api.project)["users/bulkUpdate"][429] == len(limited)


async def test_retry_after_when_configured(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.configure(api.project, retry_after=True)
    responses, _ = await _burst(sandbox, api, 12)
    limited = [r for r in responses if r.status_code == 429]
    assert limited and all(r.headers["retry-after"] == "1" for r in limited)


def test_client_pacing_at_the_limit_is_never_refused(sandbox: SandboxHandle, api: Api) -> None:
    """5 req/s evenly (the published limit) and 4.5 req/s (the writeback benchmark's
    90%) for 3 s each: no 429."""
    for rate in (5.0, 4.5):
        project = sandbox.create_project()
        key = sandbox.create_key(project)
        statuses = []
        with httpx.Client(base_url=sandbox.api_url(project), headers=sandbox.headers(key)) as client:
            # Each request at least 1/rate after the previous one (never catching up
            # in a burst after a stall: that would be a burst, not pacing).
            last = 0.0
            for _ in range(int(3 * rate)):
                delay = last + 1 / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                last = time.monotonic()
                statuses.append(client.post("/api/users/bulkUpdate", json=TINY).status_code)
        assert statuses == [200] * len(statuses), (rate, statuses)


def test_sustained_throughput_matches_the_leak_rate(sandbox: SandboxHandle, api: Api) -> None:
    """Hammering for 2 s admits the burst (5) plus 5/s, to within one request."""
    ok = 0
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        ok += api.client.post("/api/users/bulkUpdate", json=TINY).status_code == 200
    elapsed = time.monotonic() - start
    expected = 5 + 5 * elapsed
    assert expected - 1.5 <= ok <= expected + 1, (ok, elapsed)


def test_per_minute_limits(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.configure(api.project, retry_after=True)
    list_id = sandbox.create_list(api.project, "l", ["a@example.com"])
    statuses = [api.client.get("/api/lists/getUsers", params={"listId": list_id}).status_code for _ in range(5)]
    assert statuses == [200] * 5
    refused = api.client.get("/api/lists/getUsers", params={"listId": list_id})
    assert refused.status_code == 429 and refused.json()["code"] == "RateLimitExceeded"
    assert 11 <= int(refused.headers["retry-after"]) <= 12
    # Buckets are per endpoint: size has its own 5/min.
    assert [api.client.get(f"/api/lists/{list_id}/size").status_code for _ in range(6)] == [200] * 5 + [429]
    assert api.client.get("/api/lists").status_code == 200


def test_get_fields_is_3_per_second(sandbox: SandboxHandle, api: Api) -> None:
    statuses = [api.client.get("/api/users/getFields").status_code for _ in range(5)]
    assert statuses[:3] == [200] * 3 and 429 in statuses[3:]


def test_limits_are_per_project_and_can_be_switched_off(sandbox: SandboxHandle, api: Api) -> None:
    other = sandbox.create_project(rate_limits=False)
    other_key = sandbox.create_key(other)
    for _ in range(8):
        api.client.post("/api/users/bulkUpdate", json=TINY)
    assert api.client.post("/api/users/bulkUpdate", json=TINY).status_code == 429
    with httpx.Client(base_url=sandbox.api_url(other), headers=sandbox.headers(other_key)) as client:
        assert [client.post("/api/users/bulkUpdate", json=TINY).status_code for _ in range(30)] == [200] * 30
    sandbox.configure(api.project, rate_limits=False)
    assert [api.client.post("/api/users/bulkUpdate", json=TINY).status_code for _ in range(30)] == [200] * 30
    # Switching them back on starts from an empty bucket.
    sandbox.configure(api.project, rate_limits=True)
    assert [api.client.post("/api/users/bulkUpdate", json=TINY).status_code for _ in range(5)] == [200] * 5
    assert api.client.post("/api/users/bulkUpdate", json=TINY).status_code == 429
