"""Helpers for the connections tests: secrets that are tracked (so the log check knows
what must never appear), tokens per role, and a Kafka reader for connection.changed."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from liftstack_shared.auth import SERVICE_TOKEN_HEADER, Role
from liftstack_shared.messages.connections import ConnectionChanged
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import CONNECTION_CHANGED
from tests.fixtures.identity import user_token

# Every credential a test hands the service; checked against logs, responses,
# database documents and Kafka messages.
TRACKED_SECRETS: set[str] = set()


def track(secret: str) -> str:
    TRACKED_SECRETS.add(secret)
    return secret


def fake_key() -> str:
    """Shaped like an Iterable key, unknown to any Iterable project."""
    return track(secrets.token_hex(16))


def webhook_secret() -> str:
    return track(secrets.token_urlsafe(24))


def new_workspace() -> str:
    return f"ws-{uuid.uuid4().hex[:10]}"


class Workspace:
    """A workspace with one user per role and an HTTP client per user."""

    def __init__(self, settings: CommonSettings, base_url: str) -> None:
        self.id = new_workspace()
        self.base_url = base_url
        self.settings = settings
        self.tokens = {role: user_token(settings, f"{role}-1", self.id, role) for role in Role}

    def client(self, role: Role | None = Role.OWNER, token: str | None = None) -> httpx.AsyncClient:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=60.0)

    @property
    def path(self) -> str:
        return f"/v1/workspaces/{self.id}/connections"

    async def create(self, role: Role = Role.OWNER, **fields: Any) -> dict[str, Any]:
        body = {
            "platform": "iterable",
            "name": f"Conn {uuid.uuid4().hex[:6]}",
            "api_key": fake_key(),
            "region": "US",
        } | fields
        async with self.client(role) as c:
            response = await c.post(self.path, json=body)
        assert response.status_code == 201, response.text
        return response.json()


def service_client(settings: CommonSettings, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=30.0,
        headers={SERVICE_TOKEN_HEADER: settings.service_token.get_secret_value()},
    )


async def read_changes(
    settings: CommonSettings, connection_id: str, want: int, timeout_s: float = 30.0
) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of the connection.changed messages for one connection, from the
    start of the topic, once at least `want` are there."""
    topic = settings.topic(CONNECTION_CHANGED.name)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[tuple[bytes | None, bytes]] = []
    try:
        parts = [TopicPartition(topic, p) for p in range(CONNECTION_CHANGED.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(found) < want and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if ConnectionChanged.model_validate_json(r.value).connection_id == connection_id:
                        found.append((r.key, r.value))
    finally:
        await consumer.stop()
    return found
