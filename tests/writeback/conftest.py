"""Writeback test helpers: real Kafka, the MongoDB-wire server and the Iterable
sandbox; nothing mocked.

Every test gets its own topic prefix (so its own topics and consumer group) on the
session's database; job ids are unique per test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from liftstack_shared.credentials import StaticCredentials
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.messages import Assignment, AssignmentBatch
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER
from liftstack_writeback.app import WritebackInstance
from liftstack_writeback.models import RunSummary
from liftstack_writeback.settings import WritebackSettings
from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.secrets import WatchedSecrets, capture_debug

_prefixes = itertools.count()
TOPICS = (CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER)


def fast_settings(base: CommonSettings, sandbox: SandboxHandle, prefix: str, **overrides: Any) -> WritebackSettings:
    values: dict[str, Any] = {
        **base.model_dump(),
        "topic_prefix": prefix,
        "iterable_base_url": sandbox.base_url,
        "writeback_transient_retries": 3,
        "writeback_transient_base_delay": 0.05,
        "writeback_transient_max_delay": 0.2,
        "writeback_rate_limit_base_delay": 0.2,
        "writeback_rate_limit_max_delay": 1.0,
        "writeback_progress_interval": 0.1,
        "writeback_session_timeout_ms": 6000,
        "writeback_revoke_grace": 5.0,
    }
    values.update(overrides)
    return WritebackSettings(**values)


@dataclass
class Env:
    """One test's world: settings, a sandbox project with a key, credentials."""

    base: CommonSettings
    sandbox: SandboxHandle
    prefix: str
    project: Any
    key: str
    workspace_id: str = "ws-1"
    connection_id: str = "conn-1"
    credentials: StaticCredentials = field(default_factory=StaticCredentials)
    instances: list[WritebackInstance] = field(default_factory=list)
    _producer: AIOKafkaProducer | None = None

    def settings(self, **overrides: Any) -> WritebackSettings:
        return fast_settings(self.base, self.sandbox, self.prefix, **overrides)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def instance(self, consume: bool = True, **overrides: Any) -> WritebackInstance:
        """A writeback instance of this test's settings (with `overrides`), started."""
        svc = WritebackInstance.build(self.settings(**overrides), self.credentials)
        await svc.start(consume=consume)
        self.instances.append(svc)
        return svc

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.base.kafka_bootstrap, acks="all", enable_idempotence=True
            )
            await self._producer.start()
        return self._producer

    async def publish(self, batches: list[AssignmentBatch], partition: int | None = None) -> None:
        producer = await self.producer()
        topic = self.topic(CAMPAIGN_ASSIGNMENTS.name)
        futures = [
            await producer.send(topic, b.to_bytes(), key=b.connection_id.encode(), partition=partition) for b in batches
        ]
        await asyncio.gather(*futures)

    async def publish_raw(self, value: bytes, key: bytes | None = b"conn-1") -> None:
        producer = await self.producer()
        await producer.send_and_wait(self.topic(CAMPAIGN_ASSIGNMENTS.name), value, key=key)

    async def wait_run(self, svc: WritebackInstance, job_id: str, run: int = 1, timeout: float = 60.0) -> RunSummary:
        deadline = time.monotonic() + timeout
        summary = None
        while time.monotonic() < deadline:
            summary = await svc.store.summarize_run(job_id, run)
            if summary is not None and summary.finished:
                return summary
            await asyncio.sleep(0.2)
        raise AssertionError(f"job {job_id} run {run} did not finish in {timeout}s: {summary}")

    async def read_topic(self, name: str, min_count: int = 1, timeout: float = 30.0) -> list[bytes]:
        """Every message on one of this test's topics (from the beginning)."""
        consumer = AIOKafkaConsumer(
            self.topic(name),
            bootstrap_servers=self.base.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                fetched = await consumer.getmany(timeout_ms=500)
                for records in fetched.values():
                    values.extend(r.value for r in records)
                if len(values) >= min_count and not fetched:
                    break
        finally:
            await consumer.stop()
        return values

    async def close(self) -> None:
        for svc in self.instances:
            try:
                await svc.stop()
            except Exception:  # noqa: BLE001 - already stopped/aborted
                pass
        if self._producer is not None:
            await self._producer.stop()


@pytest.fixture(autouse=True)
def watched_keys(caplog: pytest.LogCaptureFixture, no_secrets_in_logs: WatchedSecrets) -> WatchedSecrets:
    """Every writeback test: no Iterable key a test used (`env` adds its own) shows up
    in a log line or logged traceback of any phase (writeback, liftstack_shared, the
    client, httpx, httpcore at DEBUG; tests/fixtures/secrets.py)."""
    capture_debug(caplog, "liftstack_writeback")
    return no_secrets_in_logs


@pytest.fixture
async def env(
    kafka_topics: CommonSettings, mongo_client: Any, sandbox: SandboxHandle, watched_keys: set[str]
) -> AsyncIterator[Env]:
    prefix = f"{kafka_topics.topic_prefix}wb{next(_prefixes)}."
    base = kafka_topics
    await ensure_topics(base.model_copy(update={"topic_prefix": prefix}), TOPICS)
    project = sandbox.create_project()
    key = sandbox.create_key(project)
    watched_keys.add(key)
    e = Env(base=base, sandbox=sandbox, prefix=prefix, project=project, key=key)
    e.credentials.add(workspace_id=e.workspace_id, connection_id=e.connection_id, api_key=key)
    yield e
    await e.close()


def new_job_id() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


def make_batches(
    assignments: list[Assignment],
    *,
    batch_size: int,
    job_id: str | None = None,
    workspace_id: str = "ws-1",
    connection_id: str = "conn-1",
    campaign_key: str = "spring-sale",
    run: int = 1,
) -> list[AssignmentBatch]:
    job_id = job_id or new_job_id()
    chunks = [assignments[i : i + batch_size] for i in range(0, len(assignments), batch_size)] or [[]]
    return [
        AssignmentBatch(
            job_id=job_id,
            workspace_id=workspace_id,
            connection_id=connection_id,
            campaign_key=campaign_key,
            batch_seq=seq,
            batch_count=len(chunks),
            total_recipients=len(assignments),
            run=run,
            assignments=chunk,
        )
        for seq, chunk in enumerate(chunks)
    ]


def emails(n: int, prefix: str = "user", variants: tuple[str, ...] = ("A", "B")) -> list[Assignment]:
    return [Assignment(email=f"{prefix}{i}@example.com", variant=variants[i % len(variants)]) for i in range(n)]
