"""Error classification by HTTP status, retries and backoff (httpx.MockTransport)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from prometheus_client import REGISTRY

from liftstack_shared.iterable import (
    IterableAuthError,
    IterableBadRequest,
    IterableConflict,
    IterableNotFound,
    IterableRateLimited,
    IterableUnavailable,
    RetryPolicy,
)
from liftstack_shared.iterable.client import parse_retry_after

from . import samples
from .conftest import FAST_RETRY, Recorder, iterable_error, json_response


class Script:
    """Answers requests from a list, in order; the last entry repeats."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok() -> httpx.Response:
    return json_response(200, samples.LISTS)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("status", "body", "exc"),
    [
        (401, {"msg": "Invalid API key", "code": "BadApiKey", "params": None}, IterableAuthError),
        (401, {"msg": "Disabled API key or insufficient privileges", "code": "BadApiKey"}, IterableAuthError),
        (403, {"msg": "Forbidden", "code": "Forbidden", "params": None}, IterableAuthError),
        # Classified by status, not code: Iterable has sent code "Success" with a 400.
        (400, {"msg": "Invalid template id", "code": "Success", "params": None}, IterableBadRequest),
        (400, {"msg": "Bad JSON", "code": "BadJsonBody", "params": None}, IterableBadRequest),
        (413, {"msg": "too large", "code": "BatchTooLarge", "params": None}, IterableBadRequest),
        (404, {"msg": "Not found", "code": "NotFound", "params": None}, IterableNotFound),
        (409, {"msg": "User is forgotten", "code": "ForgottenUserError"}, IterableConflict),
    ],
)
async def test_client_errors_raise_once_with_iterable_msg(make_client, status, body, exc) -> None:
    script, sleep = Script(json_response(status, body)), Recorder()
    async with make_client(script, sleep=sleep) as client:
        with pytest.raises(exc) as info:
            await client.get_lists()
    assert info.value.status == status
    assert info.value.message == body["msg"]
    assert body["msg"] in str(info.value) and "lists" in str(info.value)
    assert info.value.code == body["code"]
    assert script.calls == 1 and sleep.sleeps == []  # never retried


async def test_error_body_that_is_not_json(make_client) -> None:
    script = Script(httpx.Response(400, text="Bad Request: listId"))
    async with make_client(script) as client:
        with pytest.raises(IterableBadRequest, match="Bad Request: listId"):
            await client.get_lists()


async def test_429_honours_retry_after_seconds(make_client, caplog) -> None:
    limited = httpx.Response(
        429, json={"msg": "Rate limit exceeded", "code": "RateLimitExceeded"}, headers={"Retry-After": "2"}
    )
    script = Script(limited, ok())
    sleep = Recorder()
    before = metric("liftstack_iterable_retries_total", endpoint="lists", reason="rate_limited")
    async with make_client(script, sleep=sleep) as client:
        lists = await client.get_lists()
    assert len(lists) == 2
    assert sleep.sleeps == [2.0]
    assert script.calls == 2
    assert metric("liftstack_iterable_retries_total", endpoint="lists", reason="rate_limited") == before + 1
    assert "HTTP 429" in caplog.text and "retry 1/4 in 2.00s (Retry-After)" in caplog.text


async def test_429_honours_retry_after_http_date(make_client) -> None:
    when = datetime.now(UTC) + timedelta(seconds=3)
    limited = httpx.Response(
        429,
        json={"msg": "slow down", "code": "RateLimitExceeded"},
        headers={"Retry-After": format_datetime(when, usegmt=True)},
    )
    sleep = Recorder()
    async with make_client(Script(limited, ok()), sleep=sleep) as client:
        await client.get_lists()
    assert len(sleep.sleeps) == 1 and 1.0 <= sleep.sleeps[0] <= 3.0


async def test_429_without_retry_after_backs_off_exponentially(make_client, caplog) -> None:
    limited = iterable_error(429, "Rate limit exceeded", "RateLimitExceeded")
    policy = RetryPolicy(max_rate_limit_retries=10, rate_limit_base_delay=1.0, rate_limit_max_delay=6.0, jitter=0.5)
    sleep = Recorder()
    script = Script(limited, limited, limited, limited, limited, ok())
    async with make_client(script, sleep=sleep, retry=policy) as client:
        await client.get_lists()
    # full delay per retry: 1, 2, 4, 6 (cap), 6; each is 50-100% of that (jitter).
    for slept, full in zip(sleep.sleeps, [1, 2, 4, 6, 6], strict=True):
        assert full * 0.5 <= slept <= full
    assert "(backoff)" in caplog.text


async def test_429_retries_are_bounded(make_client) -> None:
    script, sleep = Script(iterable_error(429, "Rate limit exceeded", "RateLimitExceeded")), Recorder()
    async with make_client(script, sleep=sleep) as client:
        with pytest.raises(IterableRateLimited) as info:
            await client.get_lists()
    assert script.calls == FAST_RETRY.max_rate_limit_retries + 1
    assert len(sleep.sleeps) == FAST_RETRY.max_rate_limit_retries
    assert info.value.status == 429 and "Rate limit exceeded" in str(info.value)


async def test_429_with_retry_after_beyond_the_cap_raises_at_once(make_client) -> None:
    limited = httpx.Response(429, json={"msg": "later", "code": "RateLimitExceeded"}, headers={"Retry-After": "3600"})
    script, sleep = Script(limited), Recorder()
    async with make_client(script, sleep=sleep) as client:
        with pytest.raises(IterableRateLimited) as info:
            await client.get_lists()
    assert info.value.retry_after == 3600 and script.calls == 1 and sleep.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_then_succeeds(make_client, status: int, caplog) -> None:
    error = iterable_error(status, "Request timeout. Try again later.")
    script, sleep = Script(error, error, ok()), Recorder()
    before = metric("liftstack_iterable_retries_total", endpoint="lists", reason="server_error")
    async with make_client(script, sleep=sleep) as client:
        assert len(await client.get_lists()) == 2
    assert script.calls == 3 and len(sleep.sleeps) == 2
    assert metric("liftstack_iterable_retries_total", endpoint="lists", reason="server_error") == before + 2
    assert f"HTTP {status}" in caplog.text and "retry 2/3" in caplog.text


async def test_5xx_burst_exhausts_retries(make_client, caplog) -> None:
    script, sleep = Script(iterable_error(500, "GenericError")), Recorder()
    async with make_client(script, sleep=sleep) as client:
        with pytest.raises(IterableUnavailable) as info:
            await client.get_lists()
    assert script.calls == FAST_RETRY.max_transient_retries + 1
    assert info.value.status == 500 and "after 3 retries" in str(info.value)
    assert "giving up" in caplog.text


async def test_503_retry_after_is_respected(make_client) -> None:
    busy = httpx.Response(503, json={"msg": "busy", "code": "GenericError"}, headers={"Retry-After": "1.5"})
    sleep = Recorder()
    async with make_client(Script(busy, ok()), sleep=sleep) as client:
        await client.get_lists()
    assert sleep.sleeps == [1.5]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectTimeout("connect timed out"), "timeout"),
        (httpx.ConnectError("connection refused"), "connection_error"),
        (httpx.RemoteProtocolError("server disconnected"), "connection_error"),
    ],
)
async def test_transport_failures_retry_then_raise_unavailable(make_client, failure, reason) -> None:
    before = metric("liftstack_iterable_retries_total", endpoint="lists", reason=reason)
    # Recovers after two failures ...
    async with make_client(Script(failure, failure, ok()), sleep=Recorder()) as client:
        assert len(await client.get_lists()) == 2
    # ... or gives up after the configured retries.
    script = Script(failure)
    async with make_client(script, sleep=Recorder()) as client:
        with pytest.raises(IterableUnavailable) as info:
            await client.get_lists()
    assert script.calls == FAST_RETRY.max_transient_retries + 1
    assert info.value.status is None
    # Not chained: the httpx exception holds the request, whose headers hold the key.
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert (
        metric("liftstack_iterable_retries_total", endpoint="lists", reason=reason)
        == before + 2 + FAST_RETRY.max_transient_retries
    )


async def test_backoff_really_sleeps(make_client) -> None:
    """With the real asyncio.sleep: three 5xx retries at base 20 ms, jitter off."""
    policy = RetryPolicy(max_transient_retries=3, transient_base_delay=0.02, transient_max_delay=1.0, jitter=0.0)
    error = iterable_error(500, "GenericError")
    started = time.monotonic()
    async with make_client(Script(error, error, error, ok()), retry=policy) as client:
        await client.get_lists()
    assert time.monotonic() - started >= 0.02 + 0.04 + 0.08


def test_retry_policy_delay_bounds() -> None:
    policy, rng = RetryPolicy(jitter=0.5), random.Random(1)
    for retry in range(12):
        full = min(30.0, 0.5 * 2**retry)
        for _ in range(50):
            assert full * 0.5 <= policy.delay(retry, 0.5, 30.0, rng) <= full


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("5", 5.0), (" 0.25 ", 0.25), ("-3", 0.0), ("soon", None)],
)
def test_parse_retry_after(value, expected) -> None:
    assert parse_retry_after(value) == expected


async def test_request_metrics_by_status(make_client) -> None:
    before_200 = metric("liftstack_iterable_requests_total", endpoint="webhooks", status="200")
    before_503 = metric("liftstack_iterable_requests_total", endpoint="webhooks", status="503")
    script = Script(iterable_error(503, "busy"), json_response(200, samples.WEBHOOKS))
    async with make_client(script, sleep=Recorder()) as client:
        await client.get_webhooks()
    assert metric("liftstack_iterable_requests_total", endpoint="webhooks", status="200") == before_200 + 1
    assert metric("liftstack_iterable_requests_total", endpoint="webhooks", status="503") == before_503 + 1


async def test_html_gateway_errors_use_the_reason_phrase(make_client) -> None:
    page = httpx.Response(502, html="<html><body><h1>502 Bad Gateway</h1></body></html>")
    async with make_client(Script(page), sleep=Recorder()) as client:
        with pytest.raises(IterableUnavailable) as info:
            await client.get_lists()
    assert "HTTP 502 'Bad Gateway'" in str(info.value) and "<html>" not in str(info.value)
