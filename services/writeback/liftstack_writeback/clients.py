"""One Iterable client per connection, wired to the shared rate budget.

bulkUpdate is routed to the distributed pacer (one budget per project across
instances); every other endpoint to an in-process registry. A 429 seen by any client
also pushes the pacer's next slot past the wait, so all instances back off together.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from liftstack_shared.credentials import CredentialsSource, IterableCredentials
from liftstack_shared.iterable import (
    Endpoint,
    IterableClient,
    RateLimiterRegistry,
    RetryPolicy,
    RoutedRateLimits,
)
from liftstack_shared.iterable.retry import parse_retry_after
from liftstack_writeback.pacer import Pacer
from liftstack_writeback.settings import WritebackSettings

log = logging.getLogger(__name__)
_BULK_PATH = "/api/users/bulkUpdate"
# A replaced client may still have requests in flight: close it this much later.
_CLOSE_GRACE_S = 120.0


def project_key(api_key: str) -> str:
    """The budget's name: one per API key (liftstack can't see which keys share a
    project). Same derivation as the client's default; safe to store and log."""
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


def retry_policy(settings: WritebackSettings) -> RetryPolicy:
    return RetryPolicy(
        max_transient_retries=settings.writeback_transient_retries,
        transient_base_delay=settings.writeback_transient_base_delay,
        transient_max_delay=settings.writeback_transient_max_delay,
        # 429s are retried for as long as it takes (the writer loops on top of this).
        max_rate_limit_retries=1000,
        rate_limit_base_delay=settings.writeback_rate_limit_base_delay,
        rate_limit_max_delay=settings.writeback_rate_limit_max_delay,
    )


@dataclass
class _Entry:
    fingerprint: str
    client: IterableClient


class IterableClients:
    def __init__(
        self,
        settings: WritebackSettings,
        credentials: CredentialsSource,
        pacer: Pacer,
    ) -> None:
        self._settings = settings
        self.credentials = credentials
        self._pacer = pacer
        self._limits = RoutedRateLimits(
            RateLimiterRegistry(settings.iterable_rate_headroom),
            {Endpoint.BULK_UPDATE: pacer},
        )
        self._retry = retry_policy(settings)
        self._entries: dict[str, _Entry] = {}
        self._retired: dict[asyncio.Task[None], IterableClient] = {}

    async def client_for(self, creds: IterableCredentials) -> IterableClient:
        key = creds.api_key.get_secret_value()
        fingerprint = f"{project_key(key)}:{creds.region}"
        entry = self._entries.get(creds.connection_id)
        if entry is not None and entry.fingerprint == fingerprint:
            return entry.client
        if entry is not None:  # key rotated or region changed
            self._retire(entry.client)
        pkey = project_key(key)
        client = IterableClient.from_settings(
            self._settings,
            creds.api_key,
            creds.region,
            rate_limits=self._limits,
            project_key=pkey,
            retry=self._retry,
            max_connections=max(4, self._settings.writeback_window),
            event_hooks={"response": [self._on_response_hook(pkey)]},
        )
        self._entries[creds.connection_id] = _Entry(fingerprint, client)
        return client

    def _on_response_hook(self, pkey: str) -> Callable[[httpx.Response], Awaitable[None]]:
        pacer = self._pacer

        async def on_response(response: httpx.Response) -> None:
            if response.status_code == 429 and response.request.url.path.endswith(_BULK_PATH):
                wait = parse_retry_after(response.headers.get("Retry-After"))
                # Without Retry-After, one second lets a per-second leaky bucket drain.
                await pacer.hold(pkey, Endpoint.BULK_UPDATE, wait if wait is not None else 1.0)

        return on_response

    def _retire(self, client: IterableClient) -> None:
        async def close_later() -> None:
            await asyncio.sleep(_CLOSE_GRACE_S)
            await client.aclose()

        task = asyncio.create_task(close_later())
        self._retired[task] = client
        task.add_done_callback(lambda t: self._retired.pop(t, None))

    async def aclose(self) -> None:
        clients = [e.client for e in self._entries.values()] + list(self._retired.values())
        for task in list(self._retired):
            task.cancel()
        for client in clients:
            await client.aclose()
        self._entries.clear()
