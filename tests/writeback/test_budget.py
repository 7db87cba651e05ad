"""One rate budget per Iterable project, held across writeback instances."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from liftstack_shared.iterable import Endpoint
from liftstack_shared.mongo import make_mongo_client
from liftstack_writeback.pacer import Pacer
from liftstack_writeback.store import PacerSlotStore
from tests.writeback.conftest import Env, emails, make_batches


async def test_pacers_in_separate_processes_never_share_a_slot(settings, mongo_client) -> None:
    """Four pacers with their own MongoDB connections (as four instances would have)
    claim slots for one project at once: every slot is distinct, and the claimed
    start times are at least one interval apart, i.e. at most limit x headroom per s."""
    clients = [make_mongo_client(settings) for _ in range(4)]
    pacers = [Pacer(PacerSlotStore(c[settings.mongo_db]["writeback_pacer_test"]), headroom=0.9) for c in clients]
    project = f"key-test-{time.monotonic_ns()}"
    try:
        claims = await asyncio.gather(
            *(pacer.claim(project, Endpoint.BULK_UPDATE) for pacer in pacers for _ in range(15))
        )
    finally:
        for c in clients:
            await c.close()
    interval = 1 / (5 * 0.9)
    starts = sorted(claims)
    assert len(set(starts)) == 60
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= interval - 1e-6
    # Claimed back to back: no holes in the schedule either.
    assert max(gaps) <= interval * 3


async def test_several_instances_share_one_projects_budget(env: Env) -> None:
    """Three writeback instances in one consumer group; six jobs (one per partition)
    on three connections that use the same Iterable key, so every instance writes to
    the same project at the same time. The sandbox enforces Iterable's published
    5 req/s (leaky bucket): it never answers 429, and the rate stays under 5/s."""
    for n in range(3):
        env.credentials.add(workspace_id="ws-1", connection_id=f"conn-{n}", api_key=env.key)
    jobs = []
    for partition in range(6):
        batches = make_batches(emails(60, prefix=f"p{partition}-"), batch_size=5, connection_id=f"conn-{partition % 3}")
        jobs.append((partition, batches))
    instances = [await env.instance(writeback_window=8) for _ in range(3)]
    await asyncio.sleep(3)  # let the group settle: each instance owns two partitions
    started = time.monotonic()
    for partition, batches in jobs:
        await env.publish(batches, partition=partition)

    summaries = [await env.wait_run(instances[0], b[0].job_id, timeout=120) for _, b in jobs]
    elapsed = time.monotonic() - started

    for summary in summaries:
        assert (summary.written, summary.succeeded, summary.failed) == (60, 60, 0)
    stats = env.sandbox.stats(env.project)["users/bulkUpdate"]
    requests = 6 * 12
    assert stats == {200: requests}, stats  # not a single 429
    assert requests / elapsed <= 5.0
    # Every instance really did write (the budget was shared, not serialised by Kafka).
    writers: Counter[str] = Counter()
    async for doc in instances[0].store.outcomes.find({"job_id": {"$in": [b[0].job_id for _, b in jobs]}}):
        writers[doc["recorded_by"]] += 1
    assert len(writers) == 3, writers
