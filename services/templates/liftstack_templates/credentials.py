"""Where a connection's Iterable credentials come from.

The connections service owns them; this service asks its internal endpoint
(`GET {connections_url}/internal/connections/{id}` with the service token). Behind a
small port so tests (and tools) can hand credentials over directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx
from pydantic import SecretStr

from liftstack_shared.connections_client import ConnectionNotFound, ConnectionsClient
from liftstack_shared.iterable import Region
from liftstack_shared.settings import CommonSettings


@dataclass(frozen=True)
class Credentials:
    connection_id: str
    workspace_id: str
    api_key: SecretStr
    region: Region


class UnknownConnection(Exception):
    """No such connection (or it was deleted)."""


class CredentialsUnavailable(Exception):
    """The connections service could not be asked."""


class ConnectionCredentialsSource(Protocol):
    async def get(self, connection_id: str) -> Credentials:
        """Raise UnknownConnection or CredentialsUnavailable."""
        ...

    async def aclose(self) -> None: ...


class StaticCredentials:
    """Credentials given directly (tests, one-off tools)."""

    def __init__(self, *credentials: Credentials) -> None:
        self._by_id = {c.connection_id: c for c in credentials}

    def add(self, credentials: Credentials) -> None:
        self._by_id[credentials.connection_id] = credentials

    async def get(self, connection_id: str) -> Credentials:
        try:
            return self._by_id[connection_id]
        except KeyError:
            raise UnknownConnection(connection_id) from None

    async def aclose(self) -> None:
        return None


class HttpCredentialsSource:
    """The connections service's internal endpoint, through the shared client (which
    sends the service token and caches answers briefly)."""

    def __init__(self, settings: CommonSettings, ttl_s: float = 30.0) -> None:
        self._client = ConnectionsClient(settings, ttl_s=ttl_s)

    async def get(self, connection_id: str) -> Credentials:
        try:
            conn = await self._client.get(connection_id)
        except ConnectionNotFound:
            raise UnknownConnection(connection_id) from None
        except (httpx.HTTPError, ValueError) as exc:
            # ValueError: an answer that isn't the expected JSON.
            raise CredentialsUnavailable(type(exc).__name__) from None
        return Credentials(
            connection_id=conn.connection_id,
            workspace_id=conn.workspace_id,
            api_key=conn.api_key,
            region=Region(conn.region.value),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
