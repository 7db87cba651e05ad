"""MongoDB plumbing: one `AsyncMongoClient` per process, and `SingleWriter`.

The local server is FerretDB 1.x on SQLite, which has no transactions, change streams
or TTL indexes, so no code path here or in the services relies on them: writes are
single-document and idempotent (upserts keyed by natural ids, `$setOnInsert`,
conditional updates), and expiry is done by queries on timestamps.

It also does not apply concurrent updates of ONE document atomically. An update (and
findAndModify) reads the matching document, computes the new one, and writes the
whole document back by `_id`, with nothing checking that it changed in between. So
two overlapping updates of one document can lose one of them entirely, even when they
set different fields; `$inc`s get lost; and a conditional update (compare-and-set on
a `rev`, a "claim" by `find_one_and_update({status: pending})`) can succeed for two
callers at once. Measured locally with asyncio.gather against one document: 16
writers x 50 `$inc` left 89 of 800; of 20 compare-and-set rounds with 16 writers, 13
had more than one winner; with just 2 writers, 125 of 200 claims double-succeeded and
146 of 400 `$set`s of distinct fields were lost. Inserts are reliable: a unique `_id`
or unique index rejects the second insert.

So code whose correctness depends on how concurrent writes to one document combine
either has a single writer per document (`SingleWriter` in-process, plus one owning
process, documented where it is relied on) or uses insert-once documents (a unique
`_id` per claim, per outcome) and derives state from them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from liftstack_shared.settings import CommonSettings

T = TypeVar("T")


def make_mongo_client(settings: CommonSettings) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_server_selection_timeout_ms,
        tz_aware=True,
        # FerretDB has no retryable-writes support; our writes are idempotent instead.
        retryWrites=False,
    )


def database(client: AsyncMongoClient[dict[str, Any]], settings: CommonSettings) -> AsyncDatabase[dict[str, Any]]:
    return client[settings.mongo_db]


async def mongo_ready(client: AsyncMongoClient[Any], timeout_s: float = 1.0) -> None:
    """Raise unless the server answers a ping within `timeout_s` (health checks)."""
    await asyncio.wait_for(client.admin.command("ping"), timeout_s)


def is_duplicate_key(exc: BaseException) -> bool:
    """A unique index (or `_id`) refused the write. MongoDB raises DuplicateKeyError;
    FerretDB (SQLite) raises it on insert but a generic OperationFailure naming the
    constraint on update or upsert."""
    if isinstance(exc, DuplicateKeyError):
        return True
    return isinstance(exc, OperationFailure) and "UNIQUE constraint failed" in str(exc)


DUPLICATE_KEY = 11000


async def insert_once(collection: AsyncCollection[Any], documents: list[dict[str, Any]]) -> set[int]:
    """Insert every document whose `_id` is new; return the indexes of those whose
    `_id` already existed. This is how every consumer dedupes (an event id, an
    outcome, a claim): inserts against a unique `_id` are reliable on MongoDB and
    FerretDB alike, so a re-delivered or re-sent message finds its document there.
    Any other write error is raised."""
    if not documents:
        return set()
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or any(err.get("code") != DUPLICATE_KEY for err in errors):
            raise
        return {int(err["index"]) for err in errors}
    return set()


@dataclass
class _Turns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # writes holding or waiting for the lock


class SingleWriter:
    """One write at a time per document, in this process.

    `await writer.run(key, lambda: collection.update_one(...))` waits until no other
    write of `key` (the document's identity) started through this writer is still in
    flight, then runs this one. The write runs to the end even when the caller is
    cancelled: the server may already be applying it, and letting the next write of
    the document start meanwhile is exactly the overlap this prevents.

    It serialises only this process, and only writes made through the same instance
    (keep one per collection per process, e.g. in the store). Documents written from
    several processes need one owning process or insert-once documents instead.
    """

    def __init__(self) -> None:
        self._turns: dict[Hashable, _Turns] = {}

    async def run(self, key: Hashable, write: Callable[[], Awaitable[T]]) -> T:
        task = asyncio.ensure_future(self._run(key, write))
        # If the caller is cancelled nobody awaits the task: retrieve its outcome so a
        # failure is not reported as "never retrieved" (the caller has moved on).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, write: Callable[[], Awaitable[T]]) -> T:
        turns = self._turns.setdefault(key, _Turns())
        turns.users += 1
        try:
            async with turns.lock:
                return await write()
        finally:
            turns.users -= 1
            if turns.users == 0:
                del self._turns[key]

    def busy(self) -> int:
        """Documents with a write in flight or waiting (tests, metrics)."""
        return len(self._turns)
