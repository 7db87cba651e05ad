"""Where a connection's Iterable credentials come from: one small port for every
service that calls Iterable on a connection's behalf.

The connections service owns the credentials (encrypted at rest); services ask its
internal endpoint through `ConnectionsClient` (service token, short cache), via
`ConnectionsServiceCredentials`. Tests and tools hand credentials over directly with
`StaticCredentials`.

Every lookup names the workspace the request or message carries: a connection of
another workspace is `ConnectionNotFound`, exactly like a missing one, so nothing
reveals what exists elsewhere. (`ConnectionInOtherWorkspace` is that same error, for
internal callers such as a consumer's dead letters that may say which case it was;
user-facing answers must not tell the two apart.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx
from pydantic import SecretStr

from liftstack_shared.connections_client import (
    ConnectionNotFound,
    ConnectionsClient,
    InternalConnection,
    ProjectType,
)
from liftstack_shared.iterable import Region

__all__ = [
    "ConnectionInOtherWorkspace",
    "ConnectionNotFound",
    "ConnectionsServiceCredentials",
    "CredentialsSource",
    "CredentialsUnavailable",
    "IterableCredentials",
    "StaticCredentials",
]


@dataclass(frozen=True)
class IterableCredentials:
    """What an Iterable client needs to act for one connection."""

    connection_id: str
    workspace_id: str
    api_key: SecretStr
    region: Region
    # How the project identifies users: what its getUsers lines are.
    project_type: ProjectType = "email"

    def __repr__(self) -> str:  # never the key, not even masked
        return (
            f"IterableCredentials(connection_id={self.connection_id!r}, "
            f"workspace_id={self.workspace_id!r}, region={self.region.value!r}, "
            f"project_type={self.project_type!r})"
        )

    @classmethod
    def of(cls, conn: InternalConnection) -> IterableCredentials:
        return cls(conn.connection_id, conn.workspace_id, conn.api_key, Region(conn.region), conn.project_type)


class CredentialsUnavailable(Exception):
    """The credentials could not be read (the connections service is down or answered
    something unexpected). Transient: not "the connection does not exist"."""


class ConnectionInOtherWorkspace(ConnectionNotFound):
    """The connection exists but belongs to another workspace. A `ConnectionNotFound`:
    only internal diagnostics may distinguish it."""


class CredentialsSource(Protocol):
    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        """The connection's credentials. Raises ConnectionNotFound if it does not exist
        in `workspace_id` (also when it belongs to another workspace), or
        CredentialsUnavailable if the source can't be asked right now."""
        ...

    def invalidate(self, connection_id: str) -> None:
        """Forget any cached answer (e.g. Iterable rejected the key: it may have been
        replaced)."""
        ...

    async def aclose(self) -> None: ...


def _check_workspace(creds: IterableCredentials, workspace_id: str) -> IterableCredentials:
    if creds.workspace_id != workspace_id:
        raise ConnectionInOtherWorkspace(creds.connection_id)
    return creds


class ConnectionsServiceCredentials:
    """Production: the connections service's internal endpoint, through the shared
    client (which sends the service token and caches answers briefly)."""

    def __init__(self, client: ConnectionsClient) -> None:
        self._client = client

    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        conn: InternalConnection | None = None
        failure = ""
        try:
            conn = await self._client.get(connection_id)
        except ConnectionNotFound:
            pass
        except (httpx.HTTPError, ValueError) as exc:
            # ValueError: an answer that isn't the expected JSON.
            failure = type(exc).__name__
        # Raised out here, not in the except clauses, so neither exception is chained
        # to (nor kept as the context of) what we raise: httpx errors carry the
        # request, whose headers hold the service token.
        if failure:
            raise CredentialsUnavailable(failure)
        if conn is None:
            raise ConnectionNotFound(connection_id)
        return _check_workspace(IterableCredentials.of(conn), workspace_id)

    def invalidate(self, connection_id: str) -> None:
        self._client.invalidate(connection_id)

    async def aclose(self) -> None:
        await self._client.aclose()


class StaticCredentials:
    """In-memory credentials (tests, benchmarks, one-off tools)."""

    def __init__(self, *credentials: IterableCredentials) -> None:
        self._by_id = {c.connection_id: c for c in credentials}
        # What callers asked to forget, in order (tests can assert on it).
        self.invalidated: list[str] = []

    def add(
        self,
        *,
        workspace_id: str,
        connection_id: str,
        api_key: str | SecretStr,
        region: Region | str = Region.US,
        project_type: ProjectType = "email",
    ) -> IterableCredentials:
        """Add (or replace) a connection's credentials; keyword-only so the two ids
        can't be swapped by accident."""
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        creds = IterableCredentials(connection_id, workspace_id, key, Region(region), project_type)
        self._by_id[connection_id] = creds
        return creds

    def remove(self, connection_id: str) -> None:
        """As if the connection had been deleted."""
        self._by_id.pop(connection_id, None)

    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        try:
            creds = self._by_id[connection_id]
        except KeyError:
            raise ConnectionNotFound(connection_id) from None
        return _check_workspace(creds, workspace_id)

    def invalidate(self, connection_id: str) -> None:
        self.invalidated.append(connection_id)

    async def aclose(self) -> None:
        return None
