"""How other services read a connection's decrypted settings from the connections
service (its internal, service-token-only endpoints).

The connections service owns the credentials; everyone else asks it, caches the
answer briefly, and drops the cache entry when `connection.changed` says so.
"""

from __future__ import annotations

import time

import httpx
from pydantic import BaseModel, SecretStr

from liftstack_shared.auth import service_headers
from liftstack_shared.iterable.models import PROJECT_TYPES, ProjectType, Region
from liftstack_shared.settings import CommonSettings

__all__ = [
    "ConnectionNotFound",
    "ConnectionsClient",
    "DEFAULT_EVENT_TYPES",
    "InternalConnection",
    "PROJECT_TYPES",
    "ProjectType",
    "Region",
]


# The engagement event types a connection processes unless configured otherwise
# (Settings > Integrations > Configure Event Types). Values are EventType values.
DEFAULT_EVENT_TYPES: tuple[str, ...] = ("open", "click", "conversion", "unsubscribe")


class InternalConnection(BaseModel):
    """What a service needs to act for a connection. Secrets are SecretStr so they
    never show up in a repr, log line or error."""

    connection_id: str
    workspace_id: str
    name: str
    platform: str = "iterable"
    region: Region
    # The Iterable project's type (email-based, userID-based, hybrid): what a
    # getUsers line or a bulkUpdate identifier means. Older connections have none
    # stored and are email-based, as every connection was before the field existed.
    project_type: ProjectType = "email"
    api_key: SecretStr
    # The current webhook secret first; during rotation the previous one too.
    webhook_secrets: list[SecretStr] = []
    # A custom header (lower-case name) that carries the secret, if the connection
    # names one (Iterable's "Add HTTP header").
    webhook_header: str | None = None
    event_types: list[str] = list(DEFAULT_EVENT_TYPES)
    status: str


class ConnectionNotFound(Exception):
    """Unknown or deleted connection (or webhook token)."""


class ConnectionsClient:
    """Reads connections over HTTP with a short cache (`invalidate` on change)."""

    def __init__(self, settings: CommonSettings, ttl_s: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=settings.connections_url, headers=service_headers(settings), timeout=10.0
        )
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, InternalConnection]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, connection_id: str) -> InternalConnection:
        return await self._cached(f"id:{connection_id}", f"/internal/connections/{connection_id}")

    async def by_webhook_token(self, token: str) -> InternalConnection:
        return await self._cached(f"wh:{token}", f"/internal/webhooks/{token}")

    def invalidate(self, connection_id: str) -> None:
        for key, (_, conn) in list(self._cache.items()):
            if conn.connection_id == connection_id:
                del self._cache[key]

    async def _cached(self, key: str, path: str) -> InternalConnection:
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        response = await self._http.get(path)
        if response.status_code == 404:
            self._cache.pop(key, None)
            raise ConnectionNotFound(key.split(":", 1)[0])
        response.raise_for_status()
        conn = InternalConnection.model_validate(response.json())
        self._cache[key] = (time.monotonic() + self._ttl, conn)
        return conn
