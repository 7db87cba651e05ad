"""Writeback on the shared runtime's guard: a poison batch (one storage refuses after
the bounded retries, one that isn't JSON) is dead-lettered with its reason; the normal
batch after it is written within 10 s; afterwards nothing is retried and the group
has committed past everything."""

from __future__ import annotations

import asyncio
import json
import time

from liftstack_shared.messages import DeadLetter
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER
from liftstack_writeback.service import BATCHES
from tests.fixtures.kafka_tools import group_lag
from tests.writeback.conftest import Env, emails, make_batches


async def test_a_poison_batch_is_dead_lettered_and_the_next_one_written_within_10s(env: Env) -> None:
    svc = await env.instance(writeback_record_attempts=3)
    poison = json.loads(make_batches(emails(2), batch_size=2)[0].to_bytes())
    poison["total_recipients"] = 10**40  # valid JSON; no int64 can hold it
    good = make_batches(emails(5), batch_size=5)
    started = time.monotonic()
    await env.publish_raw(json.dumps(poison).encode())
    await env.publish_raw(b"\xff not json")
    await env.publish(good)

    summary = await env.wait_run(svc, good[0].job_id, timeout=10.0)
    assert (summary.written, summary.succeeded) == (5, 5)
    assert time.monotonic() - started < 10.0

    letters = [DeadLetter.model_validate_json(v) for v in await env.read_topic(WRITEBACK_DEADLETTER.name, min_count=2)]
    by_class = {letter.reason_class: letter for letter in letters}
    assert len(letters) == 2 and set(by_class) <= {"overflow", "validation"}, [item.reason for item in letters]
    not_json = next(item for item in letters if item.payload_base64)
    assert not_json.original_bytes() == b"\xff not json" and not_json.attempts == 1
    too_big = next(item for item in letters if item is not not_json)
    if too_big.reason_class == "overflow":  # storage refused it, after the bounded tries
        assert too_big.attempts == 3 and "8-byte ints" in too_big.reason
        assert too_big.first_failed_at and too_big.last_failed_at and too_big.first_failed_at < too_big.last_failed_at
    assert all(
        item.consumer == "writeback" and item.source_topic == env.topic(CAMPAIGN_ASSIGNMENTS.name) for item in letters
    )

    # Idle: no batch in flight, no more batches handled, every offset committed past.
    handled = sum(BATCHES.labels(r)._value.get() for r in ("written", "duplicate", "dead_letter"))
    await asyncio.sleep(2.0)
    assert svc.consumer.in_flight == 0
    assert sum(BATCHES.labels(r)._value.get() for r in ("written", "duplicate", "dead_letter")) == handled
    assert await group_lag(env.base, svc.settings.group_id, env.topic(CAMPAIGN_ASSIGNMENTS.name)) == 0
    assert len(await env.read_topic(WRITEBACK_DEADLETTER.name, min_count=2, timeout=2.0)) == 2
    assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {200: 1}
