"""`liftstack deadletters list|replay`, run as the real command against real Kafka and
the MongoDB-wire server: a consumer with a bug dead-letters a message; `list` shows
it with its reason and source; after the fix `replay` re-publishes it once (a second
replay publishes nothing) and the consumer processes it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS
from tests.fixtures.kafka_tools import produce, read_all, wait_for

LIFTSTACK = Path(sys.executable).with_name("liftstack")


async def _cli(settings: CommonSettings, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "LIFTSTACK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LIFTSTACK_MONGO_URL": settings.mongo_url,
        "LIFTSTACK_MONGO_DB": settings.mongo_db,
        "LIFTSTACK_TOPIC_PREFIX": settings.topic_prefix,
    }
    proc = await asyncio.create_subprocess_exec(
        str(LIFTSTACK),
        "deadletters",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_list_then_replay_after_a_fix_once(kafka_topics: CommonSettings, mongo_client: AsyncMongoClient) -> None:
    run = uuid.uuid4().hex[:6]
    settings = kafka_topics.model_copy(
        update={"topic_prefix": f"{kafka_topics.topic_prefix}dl{run}.", "mongo_db": f"{kafka_topics.mongo_db}_dl{run}"}
    )
    await ensure_topics(settings, (ENGAGEMENT_EVENTS, ENGAGEMENT_DEADLETTER))
    source = settings.topic(ENGAGEMENT_EVENTS.name)
    processed: list[str] = []
    bug = {"present": True}

    async def handle(deliveries: list[Delivery[dict[str, Any]]]) -> None:
        for d in deliveries:
            if bug["present"] and d.message["id"] == "needs-the-fix":
                raise KeyError("campaign")  # the bug
            processed.append(d.message["id"])

    runtime = ConsumerRuntime(
        name="test.replayable",
        bootstrap=settings.kafka_bootstrap,
        topics=[source],
        group_id=settings.topic("replayable"),
        decode=lambda r: json.loads(r.value),
        handle=handle,
        dead_letter_topic=settings.topic(ENGAGEMENT_DEADLETTER.name),
        policy=RetryPolicy(attempts=2, retry_initial_s=0.05),
    )
    runtime.start()
    try:
        await produce(
            settings,
            source,
            [
                (b"conn_1:a", json.dumps({"id": "needs-the-fix"}).encode()),
                (b"conn_1:a", json.dumps({"id": "fine"}).encode()),
            ],
            partition=0,
        )

        async def dead_lettered():
            return runtime.stats.dead_lettered == 1 and "fine" in processed

        await wait_for(dead_lettered, 10.0, "one dead letter and the fine message")
        code, out = await _cli(settings, "list")
        assert code == 0, out
        dlt = settings.topic(ENGAGEMENT_DEADLETTER.name)
        assert "1 dead letter(s)" in out and f"{dlt}:0:0" in out
        assert "test.replayable" in out and f"source {source}[0]@0" in out
        assert "KeyError: 'campaign'" in out and "not replayed" in out

        bug["present"] = False  # the fix is deployed
        code, out = await _cli(settings, "replay", "--all")
        assert code == 0 and "1 replayed, 0 already replayed" in out, out

        async def replayed_and_processed():
            return "needs-the-fix" in processed

        await wait_for(replayed_and_processed, 10.0, "the replayed message processed")
        code, out = await _cli(settings, "replay", "--id", f"{dlt}:0:0")
        assert code == 0 and "0 replayed, 1 already replayed" in out, out
        code, out = await _cli(settings, "list")
        assert "replayed 20" in out and "not replayed" not in out
        # Published once by the replay: the source topic has the two originals plus one.
        assert len(await read_all(settings, source)) == 3
        assert processed.count("needs-the-fix") == 1
        code, out = await _cli(settings, "list", "--topic", "no.such.deadletter")
        assert code == 2 and "not a dead-letter topic" in out
    finally:
        await runtime.stop()
        await mongo_client.drop_database(settings.mongo_db)
