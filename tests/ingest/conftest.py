"""Ingest test fixtures: one real gateway (uvicorn over real Kafka and Mongo) per
session, an in-memory connection lookup the tests fill, and a reader of what
actually landed on `engagement.events`."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import SecretStr, ValidationError

from liftstack_ingest.app import create_app
from liftstack_ingest.lookup import InMemoryConnections
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.auth import Role
from liftstack_shared.connections_client import InternalConnection, Region
from liftstack_shared.messages import EngagementEvent, EventType
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ENGAGEMENT_EVENTS
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import user_token as provider_token

T = TypeVar("T")
ALL_TYPES = [t.value for t in EventType]


def ingest_settings_from(common: CommonSettings, **overrides: Any) -> IngestSettings:
    return IngestSettings(**{**common.model_dump(), "events_prune_interval_s": 3600, **overrides})


@pytest.fixture(scope="session")
def ingest_settings(kafka_topics: CommonSettings) -> IngestSettings:
    return ingest_settings_from(kafka_topics, publish_timeout_s=5.0)


@pytest.fixture(scope="session")
def connections() -> InMemoryConnections:
    return InMemoryConnections()


@pytest.fixture(scope="session")
def gateway_url(ingest_settings: IngestSettings, connections: InMemoryConnections) -> Iterator[str]:
    with serve_asgi(create_app(ingest_settings, connections)) as url:
        yield url


@pytest.fixture(scope="session")
async def http(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30.0) as client:
        yield client


@dataclass
class Conn:
    connection: InternalConnection
    token: str
    secret: str | None

    @property
    def id(self) -> str:
        return self.connection.connection_id

    @property
    def workspace_id(self) -> str:
        return self.connection.workspace_id

    @property
    def path(self) -> str:
        return f"/webhooks/iterable/{self.token}"

    def auth(self, scheme: str = "OAuth2") -> dict[str, str]:
        assert self.secret
        return {"Authorization": f"{scheme} {self.secret}"}


def add_connection(
    connections: InMemoryConnections,
    event_types: list[str] | None = None,
    secrets_: list[str] | None = None,
    with_secret: bool = True,
    webhook_header: str | None = None,
) -> Conn:
    """A new connection (own workspace, webhook token and secret) the gateway can look up."""
    if secrets_ is None:
        secrets_ = [secrets.token_urlsafe(24)] if with_secret else []
    conn = InternalConnection(
        connection_id=f"conn_{uuid.uuid4().hex[:12]}",
        workspace_id=f"ws_{uuid.uuid4().hex[:8]}",
        name="Production",
        region=Region.US,
        api_key=SecretStr("0" * 32),
        webhook_secrets=[SecretStr(s) for s in secrets_],
        event_types=event_types if event_types is not None else ALL_TYPES,
        webhook_header=webhook_header,
        status="active",
    )
    token = secrets.token_urlsafe(24)
    connections.put(token, conn)
    return Conn(conn, token, secrets_[0] if secrets_ else None)


@pytest.fixture
def make_connection(connections: InMemoryConnections) -> Callable[..., Conn]:
    def make(**options: Any) -> Conn:
        return add_connection(connections, **options)

    return make


class EventLog:
    """Everything on this session's engagement.events, read from the beginning by a
    group-less consumer, so tests see exactly what Kafka stored."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self.events: list[tuple[ConsumerRecord[bytes, bytes], EngagementEvent]] = []

    async def run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    try:
                        self.events.append((record, EngagementEvent.model_validate_json(record.value)))
                    except ValidationError:
                        pass  # the dead-letter test's deliberate garbage

    def for_connection(self, connection_id: str) -> list[tuple[ConsumerRecord[bytes, bytes], EngagementEvent]]:
        return [(r, e) for r, e in self.events if e.connection_id == connection_id]

    async def wait_for(
        self, connection_id: str, count: int, timeout_s: float = 30.0, settle_s: float = 1.0
    ) -> list[tuple[ConsumerRecord[bytes, bytes], EngagementEvent]]:
        """At least `count` events of the connection; then waits `settle_s` more so
        an unexpected extra copy would show up too."""
        found = await eventually(lambda: _at_least(self.for_connection(connection_id), count), timeout_s)
        await asyncio.sleep(settle_s)
        return self.for_connection(connection_id) if found else []


def _at_least(items: list[T], count: int) -> list[T] | None:
    return items if len(items) >= count else None


@pytest.fixture(scope="session")
async def event_log(kafka_topics: CommonSettings) -> AsyncIterator[EventLog]:
    topic = kafka_topics.topic(ENGAGEMENT_EVENTS.name)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_topics.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(ENGAGEMENT_EVENTS.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    log = EventLog(consumer)
    task = asyncio.create_task(log.run())
    yield log
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await consumer.stop()


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None], timeout_s: float = 30.0, interval_s: float = 0.2
) -> T | None:
    """Poll `probe` until it returns something truthy or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(interval_s)


@pytest.fixture(scope="session")
def user_token(ingest_settings: IngestSettings) -> Callable[..., dict[str, str]]:
    def headers(workspace_id: str, role: Role = Role.OWNER) -> dict[str, str]:
        token = provider_token(ingest_settings, "user-1", workspace_id, role)
        return {"Authorization": f"Bearer {token}"}

    return headers


async def summary_of(http: httpx.AsyncClient, conn: Conn, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get(f"/v1/connections/{conn.id}/events/summary", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def window(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(w for w in summary["windows"] if w["window"] == name)
