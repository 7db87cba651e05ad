"""lists/getUsers: streamed line by line, retried before the first line only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import pytest

from liftstack_shared.iterable import IterableUnavailable

from .conftest import Recorder, iterable_error


def text_response(content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"Content-Type": "text/plain"})


async def test_lines_and_params(make_client) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return text_response(b"a@x.test\r\nb@x.test\n\n  c@x.test  \nd@x.test")

    async with make_client(handler) as client:
        got = [i async for i in client.iter_list_users(42, prefer_user_id=True)]
    assert got == ["a@x.test", "b@x.test", "c@x.test", "d@x.test"]
    assert seen[0].url.path == "/api/lists/getUsers"
    assert dict(seen[0].url.params) == {"listId": "42", "preferUserId": "true"}


async def test_yields_before_the_body_is_complete(make_client) -> None:
    """The server withholds the rest of the list until the consumer has seen the
    first line: a client that buffered the whole body would hang here."""
    first_seen = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first@x.test\nsec"
        await first_seen.wait()
        yield b"ond@x.test\n"
        for i in range(1000):
            yield f"u{i}@x.test\n".encode()

    async with make_client(lambda r: text_response(body())) as client:
        got: list[str] = []

        async def consume() -> None:
            async for identifier in client.iter_list_users(1):
                got.append(identifier)
                first_seen.set()

        await asyncio.wait_for(consume(), timeout=5)
    assert got[:2] == ["first@x.test", "second@x.test"] and len(got) == 1002


async def test_large_list_in_small_chunks(make_client) -> None:
    async def body() -> AsyncIterator[bytes]:
        payload = b"".join(f"{i}\n".encode() for i in range(200_000))
        for start in range(0, len(payload), 4096):  # splits lines across chunks
            yield payload[start : start + 4096]

    async with make_client(lambda r: text_response(body())) as client:
        count = last = 0
        async for identifier in client.iter_list_users(1, prefer_user_id=True):
            count, last = count + 1, int(identifier)
    assert (count, last) == (200_000, 199_999)


async def test_503_before_the_stream_is_retried(make_client, caplog) -> None:
    answers = [
        iterable_error(503, "Request timeout.  Try again later."),
        iterable_error(503, "Request timeout.  Try again later."),
        text_response(b"a\nb\n"),
    ]
    sleep = Recorder()
    async with make_client(lambda r: answers.pop(0), sleep=sleep) as client:
        assert [i async for i in client.iter_list_users(7)] == ["a", "b"]
    assert len(sleep.sleeps) == 2
    assert "lists/getUsers: HTTP 503" in caplog.text


async def test_503_burst_gives_up(make_client) -> None:
    async with make_client(lambda r: iterable_error(503, "Request timeout"), sleep=Recorder()) as client:
        with pytest.raises(IterableUnavailable):
            async for _ in client.iter_list_users(7):
                pass


async def test_broken_stream_raises_after_partial_output(make_client) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a\nb\n"
        raise httpx.ReadError("connection reset")

    got: list[str] = []
    async with make_client(lambda r: text_response(body())) as client:
        with pytest.raises(IterableUnavailable, match="after 2 lines"):
            async for identifier in client.iter_list_users(7):
                got.append(identifier)
    assert got == ["a", "b"]


async def test_stopping_early_closes_the_response(make_client) -> None:
    responses: list[httpx.Response] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(10_000):
            yield f"{i}\n".encode()

    def handler(request: httpx.Request) -> httpx.Response:
        responses.append(text_response(body()))
        return responses[-1]

    async with make_client(handler) as client, aclosing(client.iter_list_users(1)) as identifiers:
        async for identifier in identifiers:
            if identifier == "3":
                break
    assert responses[0].is_closed
