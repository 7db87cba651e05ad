"""The HTTP client of the services the console's pages call: connections
(Settings > Integrations), ingest (the Events page) and experiments (campaigns and
the whole campaign loop), always as the signed-in user (their JWT as the bearer), so
each service applies its own role rules.

Errors from a service come back as `ServiceCallError` (liftstack_shared.service_calls) carrying the service's own
`{"error": {"code", "message", "field"}}`, which the console shows as is.
"""

from __future__ import annotations

from typing import Any

import httpx

from liftstack_console.settings import ConsoleSettings
from liftstack_shared.service_calls import DEFAULT_TIMEOUT, call_service, json_or_none


class Services:
    """One pooled httpx client per console process; per call, the user's token."""

    def __init__(self, settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, transport=transport)
        self.base = {
            "connections": settings.connections_url.rstrip("/"),
            "ingest": settings.ingest_url.rstrip("/"),
            "experiments": settings.experiments_url.rstrip("/"),
        }

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        raw: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """The answer's JSON (None if empty), or with `raw` the response itself;
        `ServiceCallError` for an error answer or none."""
        response = await call_service(
            self._http,
            service,
            method,
            self.base[service] + path,
            token=token,
            json=json,
            params=params,
            timeout_s=timeout,
        )
        return response if raw else json_or_none(response)
