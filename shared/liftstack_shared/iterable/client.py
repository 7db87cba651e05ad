"""The async Iterable API client: one httpx connection pool per client, per-project
rate limiting, retries by HTTP status, typed requests and responses.

Secrets: the key lives in a SecretStr and is added to each request by an httpx auth
hook, so it is not in the pool's default headers; nothing the client logs or raises
formats it, and anything Iterable echoes back is scrubbed of it. Transport exceptions
are re-raised as IterableUnavailable without chaining (`from None`), because httpx
exceptions carry the request, whose headers hold the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from liftstack_shared.iterable import metrics
from liftstack_shared.iterable.bulk import (
    MAX_BODY_BYTES,
    BulkUpdateResponse,
    BulkUpdateResult,
    BulkUpdateUser,
    FailureReason,
    bulk_update_body,
    dumps,
)
from liftstack_shared.iterable.errors import (
    IterableAuthError,
    IterableBadRequest,
    IterableConflict,
    IterableError,
    IterableNotFound,
    IterableRateLimited,
    IterableUnavailable,
)
from liftstack_shared.iterable.models import (
    ApiResponse,
    EmailTemplate,
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    IterableList,
    MessageMedium,
    Region,
    TemplateEntry,
    TemplatesPage,
    TemplateType,
    UserFields,
    Webhook,
)
from liftstack_shared.iterable.ratelimit import Endpoint, RateLimits, default_registry
from liftstack_shared.iterable.retry import RetryPolicy, parse_retry_after
from liftstack_shared.settings import CommonSettings

log = logging.getLogger("liftstack.iterable")

M = TypeVar("M", bound=BaseModel)

HOSTS: Mapping[Region, str] = {
    Region.US: "https://api.iterable.com",
    Region.EU: "https://api.eu.iterable.com",
}

# Reads are generous because getUsers and bulkUpdate can take a while server-side;
# connecting is quick or the host is unreachable.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=30.0)
# Between chunks of a getUsers stream: Iterable may pause while it builds a big list.
DEFAULT_STREAM_READ_TIMEOUT = 120.0
_REDACTED = "[REDACTED]"


class _ApiKeyAuth(httpx.Auth):
    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Api-Key"] = self._key.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(**********)"


def _bucket_id(key: str) -> str:
    # Stable per key, and safe to log or store in a shared (e.g. Redis) limiter.
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class IterableClient:
    """Async client for one Iterable project key.

    `rate_limits`: a shared `RateLimits` (e.g. one `RateLimiterRegistry` per process);
    None uses the process-wide default registry at `headroom`. Clients share buckets
    when they have the same `project_key` (default: derived from the API key).
    `sandbox_base_url` replaces Iterable's hosts with `{sandbox_base_url}/us` or `/eu`
    (by `region`); `base_url` is an exact API root instead (e.g. the sandbox fixture's
    `api_url(project)`), used as given.
    `transport` and `sleep` are for tests.
    """

    def __init__(
        self,
        api_key: str | SecretStr,
        region: Region | str = Region.US,
        *,
        sandbox_base_url: str | None = None,
        base_url: str | None = None,
        rate_limits: RateLimits | None = None,
        headroom: float = 0.9,
        project_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        stream_read_timeout: float = DEFAULT_STREAM_READ_TIMEOUT,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not self._key.get_secret_value():
            raise ValueError("an Iterable API key is required")
        self.region = Region(region)
        if base_url:
            self.base_url = base_url.rstrip("/")
        elif sandbox_base_url:
            self.base_url = f"{sandbox_base_url.rstrip('/')}/{self.region.value.lower()}"
        else:
            self.base_url = HOSTS[self.region]
        self.project_key = project_key or _bucket_id(self._key.get_secret_value())
        self.rate_limits: RateLimits = rate_limits or default_registry(headroom)
        self.retry = retry or RetryPolicy()
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._stream_timeout = httpx.Timeout(**(self._timeout.as_dict() | {"read": stream_read_timeout}))
        self._sleep = sleep
        self._rng = random.Random()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=_ApiKeyAuth(self._key),
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": "liftstack-iterable/0.1"},
            # A redirect to another host must never receive the key.
            follow_redirects=False,
            transport=transport,
            event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
        )

    @classmethod
    def from_settings(
        cls,
        settings: CommonSettings,
        api_key: str | SecretStr,
        region: Region | str = Region.US,
        **kwargs: Any,
    ) -> IterableClient:
        """Build from `CommonSettings` (iterable_base_url, iterable_rate_headroom)."""
        kwargs.setdefault("sandbox_base_url", settings.iterable_base_url)
        kwargs.setdefault("headroom", settings.iterable_rate_headroom)
        return cls(api_key, region, **kwargs)

    def __repr__(self) -> str:
        return (
            f"IterableClient(region={self.region.value}, base_url={self.base_url!r}, project_key={self.project_key!r})"
        )

    async def __aenter__(self) -> IterableClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- users ---------------------------------------------------------------------

    async def bulk_update(self, users: list[BulkUpdateUser], create_new_fields: bool = True) -> BulkUpdateResult:
        """POST /api/users/bulkUpdate. Partial failures are per-user outcomes in the
        result, not exceptions. Pack large audiences with `pack_users` first."""
        if not users:
            return BulkUpdateResult.empty()
        body = bulk_update_body(users, create_new_fields)
        if len(body) > MAX_BODY_BYTES:
            raise IterableBadRequest(
                f"body of {len(body)} bytes for {len(users)} users exceeds Iterable's"
                f" {MAX_BODY_BYTES}-byte cap; split it with pack_users()",
                endpoint=Endpoint.BULK_UPDATE,
            )
        response = await self._send(Endpoint.BULK_UPDATE, "POST", "/api/users/bulkUpdate", body=body)
        parsed = self._parse(BulkUpdateResponse, response, Endpoint.BULK_UPDATE)
        result = BulkUpdateResult.from_response(users, parsed)
        # Counted per reason, not per user (a labels() lookup per user was a hot spot).
        failed_by_reason = result.failed_by_reason
        succeeded = len(users) - sum(failed_by_reason.values())
        for outcome, n in ((None, succeeded), *failed_by_reason.items()):
            if n:
                metrics.BULK_USERS.labels(outcome or "ok").inc(n)
        if result.filteredOutFields:
            log.warning(
                "iterable users/bulkUpdate dropped fields %s (filteredOutFields): %d users failed with field_dropped",
                result.filteredOutFields,
                failed_by_reason.get(FailureReason.FIELD_DROPPED, 0),
            )
        if result.unattributed_fail_count:
            log.warning(
                "iterable users/bulkUpdate: failCount %d but only %d users named; %d failures are unattributed",
                result.failCount,
                result.failCount - result.unattributed_fail_count,
                result.unattributed_fail_count,
            )
        if result.failCount:
            log.info(
                "iterable users/bulkUpdate: %d ok, %d failed %s",
                result.successCount,
                result.failCount,
                {str(k): v for k, v in failed_by_reason.items()},
            )
        return result

    async def get_user_fields(self) -> UserFields:
        """GET /api/users/getFields."""
        response = await self._send(Endpoint.GET_USER_FIELDS, "GET", "/api/users/getFields")
        return self._parse(UserFields, response, Endpoint.GET_USER_FIELDS)

    async def get_user(self, email: str | None = None, user_id: str | None = None) -> dict[str, Any] | None:
        """GET /api/users/getByEmail (or /api/users/byUserId): the profile
        `{email, userId?, dataFields}`, or None when Iterable knows no such user (it
        answers `{}`)."""
        if email is not None:
            response = await self._send(Endpoint.GET_USER, "GET", "/api/users/getByEmail", params={"email": email})
        elif user_id is not None:
            response = await self._send(Endpoint.GET_USER, "GET", "/api/users/byUserId", params={"userId": user_id})
        else:
            raise ValueError("get_user needs an email or a userId")
        try:
            user = response.json().get("user")
        except ValueError:
            raise IterableError(
                "the answer is not JSON", endpoint=Endpoint.GET_USER, status=response.status_code
            ) from None
        return user if isinstance(user, dict) else None

    # --- lists ---------------------------------------------------------------------

    async def get_lists(self) -> list[IterableList]:
        """GET /api/lists."""
        response = await self._send(Endpoint.GET_LISTS, "GET", "/api/lists")
        return self._parse(_Lists, response, Endpoint.GET_LISTS).lists

    async def iter_list_users(self, list_id: int, prefer_user_id: bool = False) -> AsyncGenerator[str, None]:
        """GET /api/lists/getUsers, streamed: yields one identifier per line as it
        arrives, never holding the whole list. Errors before the first line are
        retried like any request (503 included); a stream that breaks later raises
        IterableUnavailable, since restarting would repeat lines already yielded.
        Use `contextlib.aclosing` when you may stop early, to free the connection."""
        endpoint = Endpoint.GET_LIST_USERS
        response = await self._send(
            endpoint,
            "GET",
            "/api/lists/getUsers",
            params={"listId": list_id, "preferUserId": prefer_user_id},
            stream=True,
        )
        count = 0
        try:
            async for line in response.aiter_lines():
                identifier = line.strip()
                if identifier:
                    count += 1
                    yield identifier
        except httpx.TransportError as exc:
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            log.warning(
                "iterable %s: stream of list %s broke after %d lines: %s",
                endpoint,
                list_id,
                count,
                detail,
            )
            raise IterableUnavailable(f"stream broke after {count} lines ({detail})", endpoint=endpoint) from None
        finally:
            await response.aclose()

    async def get_list_size(self, list_id: int) -> int:
        """GET /api/lists/{listId}/size: Iterable answers a bare number."""
        endpoint = Endpoint.GET_LIST_SIZE
        response = await self._send(endpoint, "GET", f"/api/lists/{int(list_id)}/size")
        text = response.text.strip()
        try:
            value = json.loads(text)  # "123", 123, or a JSON-quoted "123"
            return int(value)
        except (ValueError, TypeError):
            raise IterableError(
                f"expected a number, got {text[:80]!r}",
                endpoint=endpoint,
                status=response.status_code,
            ) from None

    # --- templates -----------------------------------------------------------------

    async def get_templates(
        self,
        template_type: TemplateType | str | None = None,
        message_medium: MessageMedium | str | None = MessageMedium.EMAIL,
        page: int = 1,
        page_size: int = 100,
    ) -> TemplatesPage:
        """GET /api/templates, one page (page_size at most 1000)."""
        if not 1 <= page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000")
        params: dict[str, Any] = {"page": page, "pageSize": page_size}
        if template_type is not None:
            params["templateType"] = str(TemplateType(template_type))
        if message_medium is not None:
            params["messageMedium"] = str(MessageMedium(message_medium))
        response = await self._send(Endpoint.GET_TEMPLATES, "GET", "/api/templates", params=params)
        return self._parse(TemplatesPage, response, Endpoint.GET_TEMPLATES)

    async def get_email_template(self, template_id: int, locale: str | None = None) -> EmailTemplate:
        """GET /api/templates/email/get."""
        params: dict[str, Any] = {"templateId": template_id}
        if locale is not None:
            params["locale"] = locale
        response = await self._send(Endpoint.GET_EMAIL_TEMPLATE, "GET", "/api/templates/email/get", params=params)
        return self._parse(EmailTemplate, response, Endpoint.GET_EMAIL_TEMPLATE)

    async def get_templates_by_client_template_id(self, client_template_id: str) -> list[TemplateEntry]:
        """GET /api/templates/getByClientTemplateId; [] when none match.

        "None match" arrives three ways (the spec lists 200, 400 and 401): 200 with an
        empty list, 404, or a 400 that says not found. Any other 400 (e.g. a missing
        parameter) still raises."""
        endpoint = Endpoint.GET_TEMPLATES_BY_CLIENT_ID
        try:
            response = await self._send(
                endpoint,
                "GET",
                "/api/templates/getByClientTemplateId",
                params={"clientTemplateId": client_template_id},
            )
        except IterableNotFound:
            # "No template has this clientTemplateId" is an answer, not an error.
            return []
        except IterableBadRequest as exc:
            if _says_not_found(exc):
                return []
            raise
        return self._parse(_TemplateEntries, response, endpoint).templates

    async def upsert_email_template(self, template: EmailTemplateUpsert) -> ApiResponse:
        """POST /api/templates/email/upsert. Updates EVERY template matching the
        clientTemplateId; new ids only appear in `msg` (see `ApiResponse.ids_in_msg`).
        Prefer: upsert once, `get_templates_by_client_template_id`, then update."""
        response = await self._send(
            Endpoint.UPSERT_EMAIL_TEMPLATE,
            "POST",
            "/api/templates/email/upsert",
            body=dumps(template.to_body()),
        )
        return self._parse(ApiResponse, response, Endpoint.UPSERT_EMAIL_TEMPLATE)

    async def update_email_template(self, template: EmailTemplateUpdate) -> ApiResponse:
        """POST /api/templates/email/update: changes only the fields set."""
        response = await self._send(
            Endpoint.UPDATE_EMAIL_TEMPLATE,
            "POST",
            "/api/templates/email/update",
            body=dumps(template.to_body()),
        )
        return self._parse(ApiResponse, response, Endpoint.UPDATE_EMAIL_TEMPLATE)

    # --- webhooks ------------------------------------------------------------------

    async def get_webhooks(self) -> list[Webhook]:
        """GET /api/webhooks (read-only: used as a probe of the key and project)."""
        response = await self._send(Endpoint.GET_WEBHOOKS, "GET", "/api/webhooks")
        return self._parse(_Webhooks, response, Endpoint.GET_WEBHOOKS).webhooks

    # --- plumbing ------------------------------------------------------------------

    async def _send(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One logical call: waits for rate budget, sends, retries 429/5xx/transport
        failures per the policy, and returns a 2xx response (unread if `stream`)."""
        policy = self.retry
        rate_retries = transient_retries = 0
        headers = {"Content-Type": "application/json"} if body is not None else None
        while True:
            await self._acquire(endpoint)
            request = self._http.build_request(
                method,
                path,
                params=params,
                content=body,
                headers=headers,
                timeout=self._stream_timeout if stream else httpx.USE_CLIENT_DEFAULT,
            )
            started = time.monotonic()
            retry_after: float | None = None
            status: int | None = None
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TimeoutException as exc:
                reason, detail = "timeout", f"{type(exc).__name__}"
                metrics.REQUESTS.labels(endpoint, reason).inc()
            except httpx.TransportError as exc:
                reason = "connection_error"
                detail = self._scrub(f"{type(exc).__name__}: {exc}")
                metrics.REQUESTS.labels(endpoint, reason).inc()
            else:
                status = response.status_code
                metrics.REQUESTS.labels(endpoint, str(status)).inc()
                metrics.REQUEST_SECONDS.labels(endpoint).observe(time.monotonic() - started)
                if 200 <= status < 300:
                    return response
                if stream:
                    await response.aread()
                    await response.aclose()
                error = self._error(endpoint, response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 429:
                    if retry_after is not None and retry_after > policy.max_retry_after:
                        raise IterableRateLimited(
                            f"{error.message} (Retry-After {retry_after:.0f}s exceeds the"
                            f" {policy.max_retry_after:.0f}s the client will wait)",
                            retry_after=retry_after,
                            endpoint=endpoint,
                            status=status,
                            code=error.code,
                            params=error.params,
                        )
                    if rate_retries >= policy.max_rate_limit_retries:
                        raise IterableRateLimited(
                            f"{error.message} (still rate limited after {rate_retries} retries)",
                            retry_after=retry_after,
                            endpoint=endpoint,
                            status=status,
                            code=error.code,
                            params=error.params,
                        )
                    if retry_after is not None:
                        delay, source = retry_after, "retry_after"
                    else:
                        delay = policy.delay(
                            rate_retries,
                            policy.rate_limit_base_delay,
                            policy.rate_limit_max_delay,
                            self._rng,
                        )
                        source = "backoff"
                    rate_retries += 1
                    metrics.RETRIES.labels(endpoint, "rate_limited").inc()
                    metrics.RATE_LIMIT_WAIT_SECONDS.labels(endpoint, source).observe(delay)
                    log.warning(
                        "iterable %s: HTTP 429 %r; retry %d/%d in %.2fs (%s)",
                        endpoint,
                        error.message,
                        rate_retries,
                        policy.max_rate_limit_retries,
                        delay,
                        "Retry-After" if source == "retry_after" else "backoff",
                    )
                    await self._sleep(delay)
                    continue
                if status < 500:
                    raise error
                reason, detail = "server_error", f"HTTP {status} {error.message!r}"

            # 5xx, timeout or connection error.
            if transient_retries >= policy.max_transient_retries:
                log.error(
                    "iterable %s: giving up after %d retries: %s",
                    endpoint,
                    transient_retries,
                    detail,
                )
                raise IterableUnavailable(
                    f"{detail} (after {transient_retries} retries)",
                    endpoint=endpoint,
                    status=status,
                )
            delay = policy.delay(
                transient_retries,
                policy.transient_base_delay,
                policy.transient_max_delay,
                self._rng,
            )
            if retry_after is not None:  # a 503 may say when to come back
                delay = min(max(delay, retry_after), policy.max_retry_after)
            transient_retries += 1
            metrics.RETRIES.labels(endpoint, reason).inc()
            metrics.BACKOFF_SECONDS.labels(endpoint, reason).observe(delay)
            log.warning(
                "iterable %s: %s; retry %d/%d in %.2fs",
                endpoint,
                detail,
                transient_retries,
                policy.max_transient_retries,
                delay,
            )
            await self._sleep(delay)

    async def _acquire(self, endpoint: Endpoint) -> None:
        started = time.monotonic()
        await self.rate_limits.acquire(self.project_key, endpoint)
        waited = time.monotonic() - started
        if waited >= 0.001:
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(endpoint, "limiter").observe(waited)
            # Pacing at the limit is routine (DEBUG); a long wait means contention.
            log.log(
                logging.INFO if waited >= 1.0 else logging.DEBUG,
                "iterable %s: waited %.3fs for rate-limit budget (project %s)",
                endpoint,
                waited,
                self.project_key,
            )

    def _scrub(self, text: str) -> str:
        return text.replace(self._key.get_secret_value(), _REDACTED)

    def _error(self, endpoint: Endpoint, response: httpx.Response) -> IterableError:
        status = response.status_code
        msg, code, params = "", None, None
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            msg = str(data.get("msg") or "")
            code = data.get("code") if isinstance(data.get("code"), str) else None
            params = data.get("params")
        if not msg:
            # Load balancers answer 502/504 with an HTML page: the reason phrase says more.
            html = "html" in response.headers.get("Content-Type", "")
            text = "" if html else response.text[:300].strip()
            msg = text or response.reason_phrase or "no message"
        msg = self._scrub(msg)
        if params is not None and self._key.get_secret_value() in json.dumps(params, default=str):
            params = None
        cls: type[IterableError]
        if status in (401, 403):
            cls = IterableAuthError
        elif status == 404:
            cls = IterableNotFound
        elif status == 409:
            cls = IterableConflict
        elif status == 429:
            cls = IterableRateLimited
        elif status >= 500:
            cls = IterableUnavailable
        elif status >= 400:
            cls = IterableBadRequest
        else:  # 1xx/3xx: nothing Iterable should send us
            cls = IterableError
        if cls is IterableAuthError:
            log.error("iterable %s: HTTP %d %r (not retried)", endpoint, status, msg)
        return cls(msg, endpoint=endpoint, status=status, code=code, params=params)

    def _parse(self, model: type[M], response: httpx.Response, endpoint: Endpoint) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise IterableError(
                f"unexpected response body ({exc.error_count()} problems; first: {where}: {first['msg']})",
                endpoint=endpoint,
                status=response.status_code,
            ) from None


_NOT_FOUND = re.compile(r"not\s*found|does\s*not\s*exist|no\s+templates?\b", re.IGNORECASE)


def _says_not_found(error: IterableError) -> bool:
    """A 400 that means "no such thing": Iterable's NotFound code, or a message
    saying so (Iterable sometimes answers code BadParams with such a message)."""
    return error.code == "NotFound" or bool(_NOT_FOUND.search(error.message or ""))


class _Lists(BaseModel):
    lists: list[IterableList]


class _TemplateEntries(BaseModel):
    templates: list[TemplateEntry]


class _Webhooks(BaseModel):
    webhooks: list[Webhook]
