"""Where writeback gets a connection's Iterable key: a small port, so the service
asks the connections service in production and tests hand credentials in directly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from liftstack_shared.connections_client import ConnectionNotFound, ConnectionsClient
from liftstack_shared.iterable import Region


class UnknownConnection(Exception):
    """The connection does not exist (or was deleted): its batches are dead letters."""


@dataclass(frozen=True)
class Credentials:
    connection_id: str
    workspace_id: str
    api_key: SecretStr
    region: Region

    def __repr__(self) -> str:  # never show the key, even masked, in a repr
        return f"Credentials({self.connection_id!r}, workspace={self.workspace_id!r})"


class CredentialsPort(Protocol):
    async def get(self, connection_id: str) -> Credentials:
        """The connection's credentials; UnknownConnection if there is none. Any other
        exception is transient (the caller retries)."""
        ...

    def invalidate(self, connection_id: str) -> None:
        """Forget any cached answer (e.g. after Iterable rejected the key)."""
        ...

    async def aclose(self) -> None: ...


class ConnectionsCredentials:
    """Production: the connections service's internal endpoint (briefly cached)."""

    def __init__(self, client: ConnectionsClient) -> None:
        self._client = client

    async def get(self, connection_id: str) -> Credentials:
        try:
            conn = await self._client.get(connection_id)
        except ConnectionNotFound:
            raise UnknownConnection(connection_id) from None
        return Credentials(
            conn.connection_id, conn.workspace_id, conn.api_key, Region(conn.region.value)
        )

    def invalidate(self, connection_id: str) -> None:
        self._client.invalidate(connection_id)

    async def aclose(self) -> None:
        await self._client.aclose()


class StaticCredentials:
    """In-memory credentials (tests, benchmarks, tools)."""

    def __init__(self, connections: dict[str, Credentials] | None = None) -> None:
        self._connections = dict(connections or {})

    def add(
        self, connection_id: str, workspace_id: str, api_key: str | SecretStr,
        region: Region = Region.US,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self._connections[connection_id] = Credentials(connection_id, workspace_id, key, region)

    async def get(self, connection_id: str) -> Credentials:
        try:
            return self._connections[connection_id]
        except KeyError:
            raise UnknownConnection(connection_id) from None

    def invalidate(self, connection_id: str) -> None:
        return None

    async def aclose(self) -> None:
        return None
