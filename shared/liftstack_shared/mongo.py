"""MongoDB plumbing: one `AsyncMongoClient` per process.

The local server is FerretDB on SQLite, which has no transactions, change streams or
TTL indexes, so no code path here or in the services relies on them: writes are
single-document and idempotent (upserts keyed by natural ids, `$setOnInsert`,
conditional updates), and expiry is done by queries on timestamps.
"""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from liftstack_shared.settings import CommonSettings


def make_mongo_client(settings: CommonSettings) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=10_000,
        tz_aware=True,
        # FerretDB has no retryable-writes support; our writes are idempotent instead.
        retryWrites=False,
    )


def database(client: AsyncMongoClient, settings: CommonSettings) -> AsyncDatabase:
    return client[settings.mongo_db]


async def mongo_ready(client: AsyncMongoClient) -> None:
    """Raise unless the server answers a ping."""
    await client.admin.command("ping")
