"""The HTTP client of the services the console's pages call: connections
(Settings > Integrations), ingest (the Events page) and experiments (campaigns and
the whole campaign loop), always as the signed-in user (their JWT as the bearer), so
each service applies its own role rules.

Errors from a service come back as `ServiceError` carrying the service's own
`{"error": {"code", "message", "field"}}`, which the console shows as is.
"""

from __future__ import annotations

from typing import Any

import httpx

from liftstack_console.settings import ConsoleSettings

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, service: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.service = service

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field, "service": self.service}}


class Services:
    """One pooled httpx client per console process; per call, the user's token."""

    def __init__(self, settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._http = httpx.AsyncClient(timeout=TIMEOUT, transport=transport)
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
        `ServiceError` for an error answer or none."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self._http.request(
                method,
                self.base[service] + path,
                json=json,
                params=params,
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=5.0) if timeout else TIMEOUT,
            )
        except httpx.HTTPError as exc:
            raise ServiceError(
                503,
                "service_unavailable",
                f"The {service} service did not answer ({type(exc).__name__}).",
                service=service,
            ) from None
        if response.status_code >= 400:
            raise _error(service, response)
        if raw:
            return response
        if response.status_code == 204 or not response.content:
            return None
        return response.json()


def _error(service: str, response: httpx.Response) -> ServiceError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        # experiments names the service behind its error (audiences, writeback, ...).
        said_by = str(err.get("service") or service)
        return ServiceError(
            response.status_code, str(err.get("code", "error")), str(err.get("message", "")), err.get("field"), said_by
        )
    return ServiceError(
        response.status_code, "error", f"The {service} service answered HTTP {response.status_code}.", service=service
    )
