"""The shared /healthz checks and the tenacity backoff helper, against real servers."""

from __future__ import annotations

import time

import pytest
from pymongo import AsyncMongoClient

from liftstack_shared.health import bootstrap_check, mongo_check
from liftstack_shared.http import run_health_checks
from liftstack_shared.retry import backoff
from tests.fixtures.asgi import free_port


async def test_checks_pass_on_live_servers_and_fail_fast_on_dead_ones(kafka_topics, mongo_client):
    dead_mongo: AsyncMongoClient[dict] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=500
    )
    started = time.monotonic()
    results = await run_health_checks(
        {
            "mongo": mongo_check(lambda: mongo_client),
            "kafka": bootstrap_check(kafka_topics.kafka_bootstrap),
            "dead_mongo": mongo_check(lambda: dead_mongo),
            "dead_kafka": bootstrap_check(f"127.0.0.1:{free_port()}"),
            "not_started": mongo_check(lambda: None),
        }
    )
    assert time.monotonic() - started < 2.0
    assert results["mongo"] == "ok" and results["kafka"] == "ok"
    assert all(results[name].startswith("error") for name in ("dead_mongo", "dead_kafka", "not_started"))
    await dead_mongo.close()


async def test_backoff_retries_only_what_it_names_and_reraises_the_last_failure():
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "done"

    async for attempt in backoff(attempts=5, first_s=0.01, max_s=0.02, retry_on=(ConnectionError,)):
        with attempt:
            result = await flaky()
    assert result == "done" and len(calls) == 3

    calls.clear()
    with pytest.raises(ConnectionError, match="not yet"):
        async for attempt in backoff(attempts=2, first_s=0.01, max_s=0.02, retry_on=(ConnectionError,)):
            with attempt:
                await flaky()
    assert len(calls) == 2

    calls.clear()
    with pytest.raises(ValueError):
        async for attempt in backoff(attempts=5, first_s=0.01, retry_on=(ConnectionError,)):
            with attempt:
                calls.append(1)
                raise ValueError("a bug is not retried")
    assert len(calls) == 1
