"""Shared helpers for the Iterable client tests.

Every test here runs with all loggers captured at DEBUG (httpx and httpcore
included), and afterwards asserts that no API key a test used appears in any log
line or logged traceback, of any phase (tests/fixtures/secrets.py): the key-hygiene
check covers every test, not one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from liftstack_shared.iterable import IterableClient, NoRateLimits, RetryPolicy
from tests.fixtures.secrets import WatchedSecrets

KEY = "0123456789abcdef0123456789abcdef"  # shaped like a real server-side key

# Small but non-zero delays: retry tests run in milliseconds and still sleep.
FAST_RETRY = RetryPolicy(
    max_transient_retries=3,
    transient_base_delay=0.001,
    transient_max_delay=0.004,
    max_rate_limit_retries=4,
    rate_limit_base_delay=0.001,
    rate_limit_max_delay=0.004,
    max_retry_after=5.0,
)


@pytest.fixture(autouse=True)
def watched_keys(caplog: pytest.LogCaptureFixture, no_secrets_in_logs: WatchedSecrets) -> WatchedSecrets:
    """Keys that must never show up in logs (KEY, and any extra key a test adds)."""
    caplog.set_level(logging.DEBUG)
    no_secrets_in_logs.add(KEY)
    return no_secrets_in_logs


class Recorder:
    """Records sleeps instead of sleeping, so backoff delays can be asserted."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


Handler = Callable[[httpx.Request], Any]


@pytest.fixture
def make_client() -> Iterator[Callable[..., IterableClient]]:
    """`make_client(handler, **kwargs)`: a client on httpx.MockTransport, unthrottled
    and with fast retries unless overridden."""

    def factory(handler: Handler, **kwargs: Any) -> IterableClient:
        kwargs.setdefault("rate_limits", NoRateLimits())
        kwargs.setdefault("retry", FAST_RETRY)
        return IterableClient(
            kwargs.pop("api_key", KEY),
            kwargs.pop("region", "US"),
            transport=httpx.MockTransport(handler),
            **kwargs,
        )

    yield factory


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def iterable_error(status: int, msg: str, code: str = "GenericError") -> httpx.Response:
    return json_response(status, {"msg": msg, "code": code, "params": None})
