"""Iterable answering 429 or 5xx: a 429 only slows a job down; 5xx is retried, and
once retries are spent that request's users fail with the reason while the job goes on."""

from __future__ import annotations

import time

import pytest

from liftstack_shared.iterable import IterableClient, NoRateLimits, RetryPolicy
from liftstack_writeback.writer import BatchWriter, WriterPolicy
from tests.writeback.conftest import Env, emails, make_batches

BULK = ["/api/users/bulkUpdate"]


async def test_429_without_retry_after_backs_off_and_loses_nobody(env: Env) -> None:
    env.sandbox.configure(env.project, retry_after=False)
    env.sandbox.faults(env.project, paths=BULK, fail_next=4, fail_status=429)
    batches = make_batches(emails(40), batch_size=10)
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    assert summary.status == "completed"
    assert (summary.written, summary.succeeded, summary.failed) == (40, 40, 0)
    stats = env.sandbox.stats(env.project)["users/bulkUpdate"]
    assert stats == {429: 4, 200: 4}
    assert env.sandbox.user(env.project, "user39@example.com")["dataFields"]["lf_assignments"] == {"spring-sale": "B"}


@pytest.mark.parametrize("retry_after", [True, False])
async def test_a_429_the_client_gave_up_on_is_sent_again_by_the_writer(env: Env, retry_after: bool) -> None:
    """The writer's own layer under the client's: a client with no 429 retries left
    raises at once, and the writer sends again, after Retry-After (1 s) when Iterable
    sent one, else after its own backoff. Nobody fails."""
    env.sandbox.configure(env.project, retry_after=retry_after)
    env.sandbox.faults(env.project, paths=BULK, fail_next=2, fail_status=429)
    batch = make_batches(emails(5), batch_size=5)[0]
    # The fallback backoff is 20 s when Retry-After is honoured (so it would show),
    # 0.1-0.4 s when it is what the writer must use.
    delay = 20.0 if retry_after else 0.1
    writer = BatchWriter(WriterPolicy(rate_limit_base_delay=delay, rate_limit_max_delay=2 * delay))
    client = IterableClient(
        env.key,
        base_url=env.sandbox.api_url(env.project),
        rate_limits=NoRateLimits(),
        retry=RetryPolicy(max_rate_limit_retries=0),
    )
    async with client:
        started = time.monotonic()
        outcome = await writer.write(client, batch)
        elapsed = time.monotonic() - started

    assert (outcome.users, outcome.failed, outcome.unattributed_failures) == (5, 0, 0)
    assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {429: 2, 200: 1}
    if retry_after:
        assert 2.0 <= elapsed < 10.0, elapsed  # twice Retry-After, not the 20 s backoff
    else:
        assert elapsed < 3.0, elapsed


async def test_429_with_retry_after_waits_as_told(env: Env) -> None:
    env.sandbox.configure(env.project, retry_after=True)  # injected 429s say Retry-After: 1
    env.sandbox.faults(env.project, paths=BULK, fail_next=2, fail_status=429)
    batches = make_batches(emails(30), batch_size=10)
    svc = await env.instance(writeback_window=1)  # one request at a time: the order is known
    started = time.monotonic()
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    # Two consecutive 429s with Retry-After: 1 => at least 2 s of waiting, and no
    # extra 429s caused by retrying early.
    assert time.monotonic() - started >= 2.0
    assert (summary.written, summary.succeeded, summary.failed) == (30, 30, 0)
    assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {429: 2, 200: 3}


async def test_5xx_burst_is_retried_without_failing_users(env: Env) -> None:
    env.sandbox.faults(env.project, paths=BULK, fail_next=3, fail_status=503)
    batches = make_batches(emails(30), batch_size=10)
    svc = await env.instance(writeback_window=1, writeback_transient_retries=3)
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    assert summary.status == "completed"
    assert (summary.written, summary.succeeded, summary.failed) == (30, 30, 0)
    assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {503: 3, 200: 3}


async def test_5xx_beyond_the_retries_fails_that_batch_with_the_reason_and_the_job_goes_on(env: Env) -> None:
    # 1 try + 2 retries, all answered 500: the first batch's users fail.
    env.sandbox.faults(env.project, paths=BULK, fail_next=3, fail_status=500)
    batches = make_batches(emails(30), batch_size=10)
    job_id = batches[0].job_id
    svc = await env.instance(writeback_window=1, writeback_transient_retries=2)
    await env.publish(batches)

    summary = await env.wait_run(svc, job_id)

    assert summary.status == "completed_with_failures"
    assert (summary.written, summary.succeeded, summary.failed) == (30, 20, 10)
    assert summary.failed_by_reason == {"unavailable": 10}
    failed = await svc.store.failures_of(job_id, 1, 0)
    assert sorted(r for r, _ in failed) == sorted(f"user{i}@example.com" for i in range(10))
    assert env.sandbox.user(env.project, "user0@example.com") is None
    assert env.sandbox.user(env.project, "user10@example.com") is not None


async def test_dropped_connections_are_retried_like_5xx(env: Env) -> None:
    env.sandbox.faults(env.project, paths=BULK, drop_next=2)
    batches = make_batches(emails(20), batch_size=10)
    svc = await env.instance(writeback_window=1)
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    assert (summary.written, summary.succeeded, summary.failed) == (20, 20, 0)


async def test_budget_taken_by_the_customers_other_tools_only_slows_the_job(env: Env) -> None:
    """Another tool spends 3 of the project's 5 req/s: the sandbox's leaky bucket
    answers real 429s (no Retry-After). The job finishes with nobody failed, and the
    429s stay a small fraction of requests (the pacer holds the whole project back
    after each one instead of every in-flight request retrying on its own)."""
    import asyncio

    import httpx

    env.sandbox.configure(env.project, retry_after=False)
    batches = make_batches(emails(300), batch_size=10)  # 30 requests
    svc = await env.instance(writeback_window=8)
    stop = asyncio.Event()
    other = {"ok": 0, "429": 0}

    async def other_tool() -> None:
        async with httpx.AsyncClient(base_url=env.sandbox.api_url(env.project)) as http:
            while not stop.is_set():
                response = await http.post(
                    "/api/users/bulkUpdate",
                    headers=env.sandbox.headers(env.key),
                    json={"users": [{"email": "crm@example.com", "dataFields": {"x": 1}}]},
                )
                other["ok" if response.status_code == 200 else "429"] += 1
                await asyncio.sleep(1 / 3)

    tool = asyncio.create_task(other_tool())
    try:
        await env.publish(batches)
        summary = await env.wait_run(svc, batches[0].job_id, timeout=120)
    finally:
        stop.set()
        await tool

    assert (summary.written, summary.succeeded, summary.failed) == (300, 300, 0)
    stats = env.sandbox.stats(env.project)["users/bulkUpdate"]
    ours_ok = stats[200] - other["ok"]
    ours_429 = stats.get(429, 0) - other["429"]
    assert ours_ok == 30
    assert ours_429 <= 20, (ours_429, stats, other)
