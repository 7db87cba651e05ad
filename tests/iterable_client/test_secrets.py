"""The API key never appears in a log line, an exception's text or traceback, or a
repr. (conftest.py also checks the logs of every test in this directory.)"""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest
from pydantic import SecretStr

from liftstack_shared.iterable import (
    IterableAuthError,
    IterableBadRequest,
    IterableClient,
    IterableError,
    IterableUnavailable,
    NoRateLimits,
    RetryPolicy,
)

from .conftest import KEY, Recorder


def rendered(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_reprs_hide_the_key() -> None:
    for key in (KEY, SecretStr(KEY)):
        client = IterableClient(key, sandbox_base_url="http://127.0.0.1:1")
        text = repr(client) + str(vars(client)) + repr(client._http.auth)
        assert KEY not in text
        assert KEY not in str(client._http.headers)  # added per request, not a default


async def test_key_is_sent_only_in_the_header(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"webhooks": []})

    async with make_client(handler) as client:
        await client.get_webhooks()
    assert seen[0].headers["Api-Key"] == KEY
    assert KEY not in str(seen[0].url)


async def test_iterable_echoing_the_key_is_scrubbed(make_client, caplog) -> None:
    body = {"msg": f"Invalid API key {KEY}", "code": "BadApiKey", "params": {"apiKey": KEY}}
    async with make_client(lambda r: httpx.Response(401, json=body)) as client:
        with pytest.raises(IterableAuthError) as info:
            await client.get_lists()
        logging.getLogger("test").exception("caught", exc_info=info.value)
    assert KEY not in rendered(info.value)
    assert "[REDACTED]" in info.value.message and info.value.params is None


async def test_400_text_body_echoing_the_key_is_scrubbed(make_client) -> None:
    async with make_client(lambda r: httpx.Response(400, text=f"bad header Api-Key: {KEY}")) as c:
        with pytest.raises(IterableBadRequest) as info:
            await c.get_lists()
    assert KEY not in rendered(info.value)


async def test_transport_errors_that_mention_the_key(make_client, caplog) -> None:
    """A transport library that puts the request headers in its message must not
    leak them through the retry logs or the raised error."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"failed; headers={dict(request.headers)}", request=request)

    async with make_client(handler, sleep=Recorder()) as client:
        with pytest.raises(IterableUnavailable) as info:
            await client.get_lists()
        logging.getLogger("test").error("boom", exc_info=info.value)
    assert KEY not in rendered(info.value)
    assert "[REDACTED]" in str(info.value)


async def test_stream_errors_that_mention_the_key(make_client) -> None:
    async def body():
        yield b"a\n"
        raise httpx.ReadError(f"reset while sending Api-Key {KEY}")

    async with make_client(lambda r: httpx.Response(200, content=body())) as client:
        with pytest.raises(IterableUnavailable) as info:
            async for _ in client.iter_list_users(1):
                pass
    assert KEY not in rendered(info.value)


async def test_real_connection_failure(watched_keys) -> None:
    """Real httpx transport, nothing listening: the raised error is clean."""
    client = IterableClient(
        KEY,
        sandbox_base_url="http://127.0.0.1:1",
        rate_limits=NoRateLimits(),
        retry=RetryPolicy(max_transient_retries=1, transient_base_delay=0.001),
    )
    async with client:
        with pytest.raises(IterableError) as info:
            await client.get_webhooks()
    assert isinstance(info.value, IterableUnavailable)
    assert KEY not in rendered(info.value)
