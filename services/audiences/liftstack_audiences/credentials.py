"""Where a connection's Iterable key comes from: a small port so the service reads it
from the connections service while tests supply credentials in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx
from pydantic import SecretStr

from liftstack_shared.connections_client import ConnectionNotFound, ConnectionsClient


@dataclass(frozen=True)
class IterableCredentials:
    api_key: SecretStr
    region: str  # "US" or "EU"

    def __repr__(self) -> str:
        return f"IterableCredentials(region={self.region!r}, api_key=**********)"


class CredentialsUnavailable(Exception):
    """The credential source could not be reached (not: the connection is unknown)."""


class Credentials(Protocol):
    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        """The connection's key; ConnectionNotFound if it does not exist in this
        workspace; CredentialsUnavailable if the source is down."""
        ...

    def invalidate(self, connection_id: str) -> None:
        """Forget a cached key (Iterable rejected it: it may have been rotated)."""
        ...

    async def aclose(self) -> None: ...


class ConnectionsServiceCredentials:
    """Reads credentials from the connections service (short-cached by its client)."""

    def __init__(self, client: ConnectionsClient) -> None:
        self._client = client

    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        try:
            conn = await self._client.get(connection_id)
        except httpx.HTTPError as exc:
            # Never chain: httpx errors carry the request, whose headers hold the
            # service token.
            raise CredentialsUnavailable(type(exc).__name__) from None
        # Another workspace's connection is indistinguishable from a missing one.
        if conn.workspace_id != workspace_id:
            raise ConnectionNotFound(connection_id)
        return IterableCredentials(api_key=conn.api_key, region=str(conn.region))

    def invalidate(self, connection_id: str) -> None:
        self._client.invalidate(connection_id)

    async def aclose(self) -> None:
        await self._client.aclose()


class StaticCredentials:
    """In-memory credentials keyed by (workspace_id, connection_id): tests and tools."""

    def __init__(self, entries: dict[tuple[str, str], IterableCredentials] | None = None) -> None:
        self.entries = dict(entries or {})

    def add(self, workspace_id: str, connection_id: str, api_key: str, region: str = "US") -> None:
        self.entries[(workspace_id, connection_id)] = IterableCredentials(SecretStr(api_key), region)

    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        try:
            return self.entries[(workspace_id, connection_id)]
        except KeyError:
            raise ConnectionNotFound(connection_id) from None

    def invalidate(self, connection_id: str) -> None:
        return None

    async def aclose(self) -> None:
        return None
