"""`SingleWriter` (liftstack_shared.mongo): one write at a time per document in a
process, which is what makes overlapping updates of one document safe on FerretDB
(it rewrites whole documents without isolation)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pymongo import AsyncMongoClient

from liftstack_shared.mongo import SingleWriter, database
from liftstack_shared.settings import CommonSettings


async def test_writes_of_one_key_never_overlap_and_other_keys_do_not_wait() -> None:
    writer = SingleWriter()
    active: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def write(key: str) -> str:
        active[key] += 1
        most[key] = max(most[key], active[key])
        await asyncio.sleep(0.005)
        active[key] -= 1
        return key

    results = await asyncio.gather(*(writer.run(key, lambda key=key: write(key)) for key in "ab" * 10))
    assert results == list("ab" * 10)
    assert most == {"a": 1, "b": 1}
    assert writer.busy() == 0

    # Different keys run side by side: 2 keys x 5 writes of 50 ms take ~250 ms, not 500.
    start = asyncio.get_running_loop().time()
    await asyncio.gather(*(writer.run(key, lambda: asyncio.sleep(0.05)) for key in "ab" * 5))
    assert asyncio.get_running_loop().time() - start < 0.45


async def test_a_cancelled_caller_keeps_its_turn_until_its_write_is_done() -> None:
    writer = SingleWriter()
    order: list[str] = []
    release = asyncio.Event()

    async def slow() -> None:
        order.append("slow started")
        await release.wait()
        order.append("slow done")

    async def fast() -> None:
        order.append("fast")

    caller = asyncio.ensure_future(writer.run("doc", slow))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    follower = asyncio.ensure_future(writer.run("doc", fast))
    await asyncio.sleep(0.01)
    assert order == ["slow started"]  # the server may still be applying it: wait
    release.set()
    await follower
    assert order == ["slow started", "slow done", "fast"]
    assert writer.busy() == 0


async def test_a_failed_write_raises_to_its_caller_and_frees_the_key() -> None:
    writer = SingleWriter()

    async def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError):
        await writer.run("doc", boom)
    assert await writer.run("doc", lambda: asyncio.sleep(0, result=7)) == 7
    assert writer.busy() == 0


async def test_overlapping_updates_of_one_document_all_land(
    settings: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    """On the real server: 16 concurrent writers, each `$inc`ing a counter and
    `$set`ting its own field, lose nothing when they go through one writer. (Without
    it FerretDB loses most of them: see liftstack_shared.mongo.)"""
    col = database(mongo_client, settings)[f"single_writer_{uuid.uuid4().hex[:6]}"]
    await col.insert_one({"_id": "doc", "n": 0})
    writer = SingleWriter()

    async def writer_task(i: int) -> None:
        for j in range(10):
            await writer.run(
                "doc", lambda j=j: col.update_one({"_id": "doc"}, {"$inc": {"n": 1}, "$set": {f"f{i}": j}})
            )

    await asyncio.gather(*(writer_task(i) for i in range(16)))
    doc = await col.find_one({"_id": "doc"})
    assert doc is not None and doc["n"] == 160
    assert all(doc[f"f{i}"] == 9 for i in range(16))
    await col.drop()
