"""The audiences service over real HTTP, against the Iterable sandbox, real Kafka and
the real MongoDB-wire server. Credentials come from memory (StaticCredentials)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from liftstack_audiences.app import create_app
from liftstack_audiences.settings import AudiencesSettings
from liftstack_shared.auth import Role
from liftstack_shared.connections_client import ProjectType
from liftstack_shared.credentials import IterableCredentials, StaticCredentials
from liftstack_shared.iterable import IterableClient, NoRateLimits, RetryPolicy
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import AUDIENCE_MEMBERS, AUDIENCE_PROGRESS
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import user_token
from tests.fixtures.sandbox import SandboxHandle

FAST_RETRIES = RetryPolicy(
    max_transient_retries=2,
    transient_base_delay=0.01,
    transient_max_delay=0.05,
    max_rate_limit_retries=2,
    rate_limit_base_delay=0.01,
    rate_limit_max_delay=0.05,
)


@dataclass
class Service:
    url: str
    settings: AudiencesSettings
    credentials: StaticCredentials
    workspace_id: str = field(default_factory=lambda: f"ws-{uuid.uuid4().hex[:8]}")
    connection_id: str = field(default_factory=lambda: f"conn-{uuid.uuid4().hex[:8]}")

    def token(self, role: Role = Role.MEMBER, workspace_id: str | None = None) -> str:
        return user_token(self.settings, "user-1", workspace_id or self.workspace_id, role)

    def client(self, role: Role = Role.MEMBER) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token(role)}"},
            timeout=60,
        )

    def connect(
        self,
        api_key: str,
        region: str = "US",
        connection_id: str | None = None,
        project_type: ProjectType = "email",
    ) -> str:
        cid = connection_id or self.connection_id
        self.credentials.add(
            workspace_id=self.workspace_id, connection_id=cid, api_key=api_key, region=region, project_type=project_type
        )
        return cid

    def audiences_path(self, connection_id: str | None = None) -> str:
        cid = connection_id or self.connection_id
        return f"/v1/workspaces/{self.workspace_id}/connections/{cid}/audiences"

    def sync_path(self, sync_id: str) -> str:
        return f"/v1/workspaces/{self.workspace_id}/audience-syncs/{sync_id}"

    async def start_sync(self, http: httpx.AsyncClient, list_id: int, **body: Any) -> str:
        response = await http.post(f"{self.audiences_path()}/{list_id}/sync", json=body or None)
        assert response.status_code == 202, response.text
        return response.json()["sync_id"]

    async def wait(self, http: httpx.AsyncClient, sync_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """The record once the sync has finished (completed or failed)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            response = await http.get(self.sync_path(sync_id))
            assert response.status_code == 200, response.text
            record = response.json()
            if record["status"] in ("completed", "failed"):
                return record
            assert asyncio.get_running_loop().time() < deadline, f"sync still {record}"
            await asyncio.sleep(0.1)


@pytest.fixture
def make_service(kafka_topics: CommonSettings, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`with make_service(**settings_overrides, fast=False) as svc:` the app served on
    a free port. fast=True: the Iterable client neither rate-limits nor waits between
    retries (for outage tests; the sandbox then must not rate-limit either)."""

    @contextmanager
    def make(fast: bool = False, **overrides: Any) -> Iterator[Service]:
        settings = AudiencesSettings(
            **(
                kafka_topics.model_dump()
                | {
                    "iterable_base_url": sandbox.base_url,
                    "audience_state_dir": tmp_path / "state",
                    "audience_batch_size": 100,
                    "audience_progress_interval_s": 0,
                }
                | overrides
            )
        )
        credentials = StaticCredentials()

        def fast_client(c: IterableCredentials) -> IterableClient:
            return IterableClient.from_settings(
                settings, c.api_key, c.region, rate_limits=NoRateLimits(), retry=FAST_RETRIES
            )

        app = create_app(settings, credentials, fast_client if fast else None)
        with serve_asgi(app) as url:
            yield Service(url, settings, credentials)

    yield make


async def read_sync(
    settings: CommonSettings, sync_id: str, timeout_s: float = 60, linger_s: float = 1.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(member batches, completion messages) of one sync from `audience.members`, read
    until its completion plus `linger_s` more, to catch anything sent after it."""
    batches: list[dict[str, Any]] = []
    completions: list[dict[str, Any]] = []
    async for msg in _consume(
        settings, AUDIENCE_MEMBERS.name, sync_id, timeout_s, stop=lambda m: m["kind"] == "completed", linger_s=linger_s
    ):
        (completions if msg["kind"] == "completed" else batches).append(msg)
    assert completions, f"no completion message for sync {sync_id}"
    return batches, completions


async def read_progress(settings: CommonSettings, sync_id: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    return [
        m
        async for m in _consume(
            settings,
            AUDIENCE_PROGRESS.name,
            sync_id,
            timeout_s,
            stop=lambda m: m["status"] in ("completed", "failed"),
            linger_s=0.5,
        )
    ]


async def _consume(
    settings: CommonSettings,
    topic: str,
    sync_id: str,
    timeout_s: float,
    stop: Callable[[dict[str, Any]], bool],
    linger_s: float,
) -> AsyncIterator[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    stop_at: float | None = None
    try:
        while loop.time() < (stop_at or deadline):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    assert record.key == sync_id.encode() or json.loads(record.value)["sync_id"] != sync_id
                    msg = json.loads(record.value)
                    if msg["sync_id"] != sync_id:
                        continue
                    yield msg
                    if stop_at is None and stop(msg):
                        stop_at = loop.time() + linger_s
    finally:
        await consumer.stop()


def members_of(batches: list[dict[str, Any]]) -> list[str]:
    """Every published member's identifier, in order (duplicates kept)."""
    return [m["email"] if m["email"] is not None else m["user_id"] for b in batches for m in b["members"]]
