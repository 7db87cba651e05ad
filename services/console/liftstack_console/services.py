"""HTTP clients for the services the console drives, always as the signed-in user
(their JWT as the bearer), so each service applies its own role rules.

Errors from a service come back as `ServiceError` carrying the service's own
`{"error": {"code", "message", "field"}}`, which the console shows as is.
"""

from __future__ import annotations

import asyncio
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
            "writeback": settings.writeback_url.rstrip("/"),
            "templates": settings.templates_url.rstrip("/"),
            "audiences": settings.audiences_url.rstrip("/"),
            "sandbox": (settings.sandbox_url or "").rstrip("/"),
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
        retries: int = 0,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """`retries`: for idempotent calls, how often to retry a 5xx (a service's
        database can be briefly busy: FerretDB on SQLite answers SQLITE_BUSY).
        `headers`: extra request headers (e.g. Idempotency-Key)."""
        for attempt in range(retries + 1):
            try:
                return await self._call(service, method, path, token, json, params, raw, timeout, headers)
            except ServiceError as exc:
                if exc.status < 500 or attempt == retries:
                    raise
                await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None,
        json: Any,
        params: dict[str, Any] | None,
        raw: bool,
        timeout: float | None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(extra_headers or {})
        url = self.base[service] + path
        try:
            response = await self._http.request(
                method,
                url,
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
        return ServiceError(
            response.status_code, str(err.get("code", "error")), str(err.get("message", "")), err.get("field"), service
        )
    if isinstance(body, dict) and "msg" in body:  # the Iterable sandbox's error shape
        return ServiceError(response.status_code, str(body.get("code")), str(body["msg"]), service=service)
    return ServiceError(
        response.status_code, "error", f"The {service} service answered HTTP {response.status_code}.", service=service
    )
