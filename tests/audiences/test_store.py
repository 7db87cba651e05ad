"""The sync records on the real MongoDB-wire server, where FerretDB applies overlapping
updates of one document without isolation: who runs a sync is decided by inserts, and
one process's writes of a record never overlap."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient

from liftstack_audiences.models import SyncError, SyncRecord
from liftstack_audiences.state import Counts
from liftstack_audiences.store import SizeCache, SyncStore, now
from liftstack_shared.mongo import database
from liftstack_shared.settings import CommonSettings

ROUNDS = 25


@pytest.fixture
async def db(settings: CommonSettings, mongo_client: AsyncMongoClient):
    return database(mongo_client, settings)


async def new_store(db) -> SyncStore:
    store = SyncStore(db)
    await store.ensure_indexes()
    return store


async def failed_sync(store: SyncStore) -> str:
    at = now()
    record = SyncRecord(
        sync_id=uuid.uuid4().hex,
        workspace_id="ws-1",
        connection_id="conn-1",
        list_id=1,
        list_name="L",
        list_type="list",
        prefer_user_id=False,
        status="pending",
        requested_by="user-1",
        created_at=at,
        updated_at=at,
    )
    await store.create(record)
    assert await store.mark_running(record.sync_id) is not None
    await store.finish(record.sync_id, "failed", Counts(), SyncError(code="x", message="x"))
    return record.sync_id


async def test_concurrent_retries_from_two_replicas_claim_a_sync_once(db) -> None:
    # Two stores: as two audiences replicas would, each with its own process-local
    # writer, so only the insert-once claim keeps the second retry out.
    replica_a, replica_b = await new_store(db), await new_store(db)
    dead_before = now() - timedelta(seconds=60)
    for _ in range(ROUNDS):
        sync_id = await failed_sync(replica_a)
        claims = await asyncio.gather(
            replica_a.claim_retry(sync_id, dead_before),
            replica_b.claim_retry(sync_id, dead_before),
            replica_a.claim_retry(sync_id, dead_before),
        )
        assert sum(c is not None for c in claims) == 1, claims
        assert (await replica_a.get(sync_id)).status == "pending"


async def test_a_claim_whose_claimer_died_can_be_taken_over_once_stale(db) -> None:
    store = await new_store(db)
    sync_id = await failed_sync(store)
    record = await store.get(sync_id)
    assert record is not None
    # A claimer that died right after claiming: the record never moved on.
    state = f"{sync_id}:{record.runs}:{record.updated_at.isoformat()}"
    claims = db["audience_sync_claims"]
    await claims.insert_one({"_id": f"{state}:0", "sync_id": sync_id, "claimed_at": now()})

    assert await store.claim_retry(sync_id, now() - timedelta(seconds=60)) is None  # fresh
    await claims.update_one({"_id": f"{state}:0"}, {"$set": {"claimed_at": now() - timedelta(minutes=5)}})
    taken = await store.claim_retry(sync_id, now() - timedelta(seconds=60))
    assert taken is not None and taken.status == "pending"
    # The record moved on: the same state can't be claimed again.
    assert await store.claim_retry(sync_id, now() - timedelta(seconds=60)) is None


async def test_a_heartbeat_overlapping_the_final_write_never_revives_the_sync(db) -> None:
    store = await new_store(db)
    for _ in range(ROUNDS):
        sync_id = await failed_sync(store)
        assert await store.claim_retry(sync_id, now()) is not None
        assert await store.mark_running(sync_id) is not None
        counts = Counts(members=10, batches=1)
        await asyncio.gather(
            store.heartbeat(sync_id),
            store.progress(sync_id, counts),
            store.stream_opened(sync_id),
            store.finish(sync_id, "completed", counts),
            store.heartbeat(sync_id),
        )
        record = await store.get(sync_id)
        assert record is not None
        assert record.status == "completed" and record.members == 10, record
        assert record.runs == 2 and record.stream_attempts == 1


async def test_racing_first_size_puts_leave_one_entry(db) -> None:
    caches = [SizeCache(db) for _ in range(4)]  # as separate replicas
    connection = f"conn-{uuid.uuid4().hex[:6]}"
    for list_id in range(ROUNDS):
        await asyncio.gather(*(cache.put(connection, list_id, 100 + i, "iterable") for i, cache in enumerate(caches)))
        got = await caches[0].get(connection, list_id)
        assert got is not None and got.size in {100, 101, 102, 103}
    assert await db["audience_sizes"].count_documents({"connection_id": connection}) == ROUNDS
