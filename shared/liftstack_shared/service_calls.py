"""Calling another liftstack service (or the Iterable sandbox's admin API) over HTTP,
one way for every caller: the console's backend-for-frontend and the experiments
service's campaign loop.

A service's error answer comes back as `ServiceCallError`, an `ApiError` carrying the
service's own code, message and field plus which service said it, so a caller can
show it as is; no answer at all, or a 5xx, is `ServiceUnavailable` (worth retrying
for idempotent calls).
"""

from __future__ import annotations

from typing import Any

import httpx

from liftstack_shared.errors import ApiError

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class ServiceCallError(ApiError):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, service: str = "") -> None:
        super().__init__(status, code, message, field, extra={"service": service})
        self.service = service


class ServiceUnavailable(ServiceCallError):
    """A 5xx or no answer: the service (or its database) may be back in a moment."""


async def call_service(
    http: httpx.AsyncClient,
    service: str,
    method: str,
    url: str,
    *,
    token: str | None = None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float | None = None,
) -> httpx.Response:
    """The response when it is not an error; else `ServiceCallError`. `token` is the
    caller's bearer token, forwarded so the service applies its own role rules."""
    if token:
        headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
    try:
        response = await http.request(
            method,
            url,
            json=json,
            params=params,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0) if timeout_s else DEFAULT_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(
            503, "service_unavailable", f"The {service} service did not answer ({type(exc).__name__}).", None, service
        ) from None
    if response.status_code >= 400:
        raise error_from(service, response)
    return response


def json_or_none(response: httpx.Response) -> Any:
    """The answer's JSON; None for an empty answer (204)."""
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def error_from(service: str, response: httpx.Response) -> ServiceCallError:
    kind = ServiceUnavailable if response.status_code >= 500 else ServiceCallError
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        # A service that itself calls others (experiments) names the one that said it.
        said_by = str(err.get("service") or service)
        return kind(
            response.status_code, str(err.get("code", "error")), str(err.get("message", "")), err.get("field"), said_by
        )
    if isinstance(body, dict) and "msg" in body:  # the Iterable sandbox's error shape
        return kind(response.status_code, str(body.get("code")), str(body["msg"]), None, service)
    return kind(
        response.status_code, "error", f"The {service} service answered HTTP {response.status_code}.", None, service
    )
