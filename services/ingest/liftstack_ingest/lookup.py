"""The port through which ingest finds the connection behind a webhook URL.

Production uses `liftstack_shared.connections_client.ConnectionsClient` (HTTP to the
connections service, cached, invalidated on `connection.changed`); tests and local
tools use `InMemoryConnections`. Both raise `ConnectionNotFound` for unknown or
deleted connections.
"""

from __future__ import annotations

from typing import Protocol

from liftstack_shared.connections_client import ConnectionNotFound, InternalConnection

__all__ = ["ConnectionLookup", "ConnectionNotFound", "InMemoryConnections"]


class ConnectionLookup(Protocol):
    async def by_webhook_token(self, token: str) -> InternalConnection: ...

    # The Events page checks the caller's workspace against the connection's.
    async def get(self, connection_id: str) -> InternalConnection: ...

    def invalidate(self, connection_id: str) -> None: ...


class InMemoryConnections:
    """A `ConnectionLookup` over a dict: webhook token -> connection."""

    def __init__(self, by_token: dict[str, InternalConnection] | None = None) -> None:
        self._by_token: dict[str, InternalConnection] = dict(by_token or {})

    def put(self, token: str, connection: InternalConnection) -> None:
        self._by_token[token] = connection

    def remove(self, connection_id: str) -> None:
        for token, conn in list(self._by_token.items()):
            if conn.connection_id == connection_id:
                del self._by_token[token]

    async def by_webhook_token(self, token: str) -> InternalConnection:
        try:
            return self._by_token[token]
        except KeyError:
            raise ConnectionNotFound("wh") from None

    async def get(self, connection_id: str) -> InternalConnection:
        for conn in self._by_token.values():
            if conn.connection_id == connection_id:
                return conn
        raise ConnectionNotFound("id")

    def invalidate(self, connection_id: str) -> None:
        pass  # nothing cached
