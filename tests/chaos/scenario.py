"""Broker loss under load, shared by the chaos test and bench/chaos_brokers.py.

On a three-node cluster (replication 3, min.insync.replicas 2): a real ingest gateway
takes a burst of webhooks (each retried on a non-200, as Iterable does) while a
writeback instance writes a job into the Iterable sandbox. Mid-way the node leading
the most partitions of the two busy topics is killed with SIGKILL and restarted a few
seconds later. Then what was promised is checked against what is stored:
- every webhook answered 200 has its event on `engagement.events` (after dedupe by
  event id: a retried request may have stored its event twice, the read model counts
  it once);
- the writeback job wrote exactly its profiles, none failed, and Iterable (the
  sandbox) saw no 429 storm.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from liftstack_ingest.app import create_app as create_ingest_app
from liftstack_ingest.lookup import InMemoryConnections
from liftstack_ingest.store import EventsStore
from liftstack_shared.credentials import StaticCredentials
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.messages import EngagementEvent
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, ENGAGEMENT_EVENTS
from liftstack_writeback.app import WritebackInstance
from tests.chaos.cluster import KafkaCluster
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.kafka_tools import read_all
from tests.fixtures.sandbox import SandboxHandle
from tests.ingest.conftest import add_connection, ingest_settings_from
from tests.ingest.payloads import example
from tests.writeback.conftest import emails, fast_settings, make_batches, new_job_id

CAMPAIGN = "chaos-sale"


@dataclass
class Attempt:
    answered_at: float  # time.monotonic() of the answer
    status: int | None  # None: no HTTP answer (connection error, timeout)


@dataclass
class ChaosReport:
    killed_node: int = 0
    killed_at: float = 0.0  # time.monotonic() of the kill
    leaders_before: dict[int, int] = field(default_factory=dict)
    webhooks: int = 0
    acked: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    stored_distinct: int = 0
    stored_copies: int = 0
    lost: list[str] = field(default_factory=list)
    read_model_published: int = 0
    profiles: int = 0
    written: int = 0
    succeeded: int = 0
    failed: int = 0
    sandbox_profiles: int = 0
    bulk_update_statuses: dict[int, int] = field(default_factory=dict)
    writeback_seconds: float = 0.0
    burst_seconds: float = 0.0
    down_seconds: float = 0.0
    failover_seconds: float = 0.0
    resync_seconds: float = 0.0

    @property
    def errors(self) -> list[Attempt]:
        return sorted((a for a in self.attempts if a.status != 200), key=lambda a: a.answered_at)

    def since_kill(self, attempt: Attempt) -> float:
        return attempt.answered_at - self.killed_at

    @property
    def error_window(self) -> tuple[float, float] | None:
        """First and last non-200 answer, in seconds since the kill."""
        errors = self.errors
        return (self.since_kill(errors[0]), self.since_kill(errors[-1])) if errors else None

    @property
    def ingest_recovery_seconds(self) -> float:
        """From the kill until every answer is a 200 again."""
        window = self.error_window
        return max(0.0, window[1]) if window else 0.0

    def timeline(self, step_s: float = 1.0) -> list[str]:
        """Attempts per second around the kill: "t=+3s 200:140 503:12"."""
        buckets: dict[int, Counter[str]] = {}
        for attempt in self.attempts:
            bucket = int(self.since_kill(attempt) // step_s)
            buckets.setdefault(bucket, Counter())["none" if attempt.status is None else str(attempt.status)] += 1
        return [
            f"t={b * step_s:+.0f}s " + " ".join(f"{k}:{v}" for k, v in sorted(c.items()))
            for b, c in sorted(buckets.items())
        ]

    def lines(self) -> list[str]:
        window = self.error_window
        statuses = Counter("no answer" if a.status is None else a.status for a in self.errors)
        return [
            f"killed node {self.killed_node} (partition leaders before: {self.leaders_before}); its partitions "
            f"had new leaders at most {self.failover_seconds:.1f}s after the kill; down {self.down_seconds:.1f}s; "
            f"all replicas back in sync {self.resync_seconds:.1f}s after its restart",
            f"ingest: {self.webhooks} webhooks in {self.burst_seconds:.1f}s, {self.acked} acknowledged, "
            f"{len(self.attempts)} attempts, {len(self.errors)} non-200 {dict(statuses)}",
            "ingest error window: "
            + (f"{window[0]:+.2f}s .. {window[1]:+.2f}s after the kill" if window else "none (no failed request)")
            + f"; recovered {self.ingest_recovery_seconds:.2f}s after the kill",
            f"engagement.events: {self.stored_distinct} distinct events, {self.stored_copies} copies; "
            f"acknowledged but lost: {len(self.lost)}; read model counted {self.read_model_published}",
            f"writeback: {self.written}/{self.profiles} written, {self.succeeded} succeeded, {self.failed} failed "
            f"in {self.writeback_seconds:.1f}s; sandbox has {self.sandbox_profiles} profiles; "
            f"bulkUpdate statuses {self.bulk_update_statuses}",
        ]


async def _send_webhooks(url: str, conn: Any, count: int, rate: float, report: ChaosReport) -> dict[int, str]:
    """Send `count` webhooks at about `rate`/s; each retried until it is answered 200
    (Iterable's behaviour). Returns webhook number -> event id of its 200."""
    acked: dict[int, str] = {}
    started = time.monotonic()

    async def one(client: httpx.AsyncClient, n: int) -> None:
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        body = example("emailOpen", email=f"chaos{n}@example.com")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = await client.post(conn.path, json=body, headers=conn.auth())
                status: int | None = response.status_code
            except httpx.HTTPError:
                status = None
            report.attempts.append(Attempt(time.monotonic(), status))
            if status == 200:
                acked[n] = response.json()["event_id"]
                return
            await asyncio.sleep(0.5)  # Iterable retries later; sooner here to keep the run short
        # Never acknowledged: counted as such (report.acked < report.webhooks).

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        await asyncio.gather(*(one(client, n) for n in range(count)))
    report.burst_seconds = time.monotonic() - started
    return acked


async def broker_loss(
    cluster: KafkaCluster,
    base: CommonSettings,
    sandbox: SandboxHandle,
    *,
    webhooks: int = 2000,
    profiles: int = 50_000,
    rate: float = 150.0,
    kill_after_s: float = 4.0,
    down_s: float = 15.0,
) -> ChaosReport:
    report = ChaosReport(webhooks=webhooks, profiles=profiles)
    settings = base.model_copy(
        update={
            "kafka_bootstrap": cluster.bootstrap,
            "topic_prefix": f"chaos-{secrets.token_hex(4)}.",
            "topic_replication_factor": 3,
            "topic_min_insync_replicas": 2,
        }
    )
    await ensure_topics(settings)
    events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
    busy_topics = [events_topic, settings.topic(CAMPAIGN_ASSIGNMENTS.name)]

    # Writeback: one instance, one sandbox project, one job of `profiles` profiles.
    project = sandbox.create_project()
    key = sandbox.create_key(project)
    credentials = StaticCredentials()
    credentials.add(workspace_id="ws-chaos", connection_id="conn-chaos", api_key=key)
    writeback = WritebackInstance.build(fast_settings(settings, sandbox, settings.topic_prefix), credentials)
    await writeback.start(consume=True)
    job_id = new_job_id()
    batches = make_batches(
        emails(profiles, prefix="chaos"),
        batch_size=1000,
        job_id=job_id,
        workspace_id="ws-chaos",
        connection_id="conn-chaos",
        campaign_key=CAMPAIGN,
    )

    # Ingest: a real gateway with the Events page consumer (the dedupe under test).
    connections = InMemoryConnections()
    conn = add_connection(connections)
    ingest = ingest_settings_from(
        settings, publish_timeout_s=5.0, kafka_connect_wait_s=60.0, events_consumer_enabled=True
    )
    try:
        with serve_asgi(create_ingest_app(ingest, connections), timeout_s=90) as url:
            producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True)
            await producer.start()
            try:
                sends = [
                    await producer.send(busy_topics[1], b.to_bytes(), key=b.connection_id.encode()) for b in batches
                ]
                await asyncio.gather(*sends)
            finally:
                await producer.stop()
            writeback_started = time.monotonic()

            async def chaos() -> None:
                await asyncio.sleep(kill_after_s)
                leaders = await cluster.leaders(busy_topics)
                report.leaders_before = dict(sorted(leaders.items()))
                report.killed_node = leaders.most_common(1)[0][0]
                report.killed_at = time.monotonic()
                cluster.kill(report.killed_node)
                report.failover_seconds = await cluster.wait_leaderless(report.killed_node, busy_topics, 60)
                await asyncio.sleep(max(0.0, report.killed_at + down_s - time.monotonic()))
                cluster.restart(report.killed_node)
                report.down_seconds = time.monotonic() - report.killed_at
                report.resync_seconds = await cluster.wait_fully_replicated(busy_topics, timeout_s=180)

            acked, _ = await asyncio.gather(_send_webhooks(url, conn, webhooks, rate, report), chaos())
            report.acked = len(acked)

            summary = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                summary = await writeback.store.summarize_run(job_id, 1)
                if summary is not None and summary.finished:
                    break
                await asyncio.sleep(0.5)
            assert summary is not None and summary.finished, f"writeback job did not finish: {summary}"
            report.writeback_seconds = time.monotonic() - writeback_started
            report.written, report.succeeded, report.failed = summary.written, summary.succeeded, summary.failed

            # What Kafka stored for our connection, by event id.
            stored = Counter(
                event.event_id
                for event in (
                    EngagementEvent.model_validate_json(r.value) for r in await read_all(settings, events_topic)
                )
                if event.connection_id == conn.id
            )
            report.stored_distinct, report.stored_copies = len(stored), sum(stored.values())
            report.lost = sorted(set(acked.values()) - set(stored))

            # The Events page's read model counts each event once.
            mongo: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongo_url)
            try:
                store = EventsStore(mongo[settings.mongo_db], retention=timedelta(days=7))
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    windows = await store.window_counts(conn.id)
                    report.read_model_published = sum(d["count"] for d in windows["1h"] if d["outcome"] == "published")
                    if report.read_model_published >= report.stored_distinct:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2.0)  # an extra count would show up by now
                windows = await store.window_counts(conn.id)
                report.read_model_published = sum(d["count"] for d in windows["1h"] if d["outcome"] == "published")
            finally:
                await mongo.close()
    finally:
        await writeback.stop()

    report.sandbox_profiles = sum(
        1
        for n in range(profiles)
        if CAMPAIGN
        in ((sandbox.user(project, f"chaos{n}@example.com") or {}).get("dataFields", {}).get("lf_assignments") or {})
    )
    report.bulk_update_statuses = dict(sandbox.stats(project).get("users/bulkUpdate", {}))
    return report
