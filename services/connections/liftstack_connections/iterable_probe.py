"""The connection test: read-only calls to Iterable with the stored key.

Only GETs, never a create, modify or delete on the customer's project. What a key can
write (user profiles, templates) can't be seen without writing, and Iterable doesn't
say which type a key is, so write permissions are reported "unverified", honestly.

Order: GET /api/lists on the configured region decides whether the key works at all.
Only after a 401/403 there, the other region's host gets the same GET: a key accepted
there belongs to the other data center (wrong region). Then user fields, templates
and system webhooks are read to report each permission liftstack needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from liftstack_connections.models import PermissionCheck
from liftstack_shared.connections_client import Region
from liftstack_shared.iterable import (
    IterableAuthError,
    IterableClient,
    IterableError,
    IterableRateLimited,
    IterableUnavailable,
    RetryPolicy,
)

# A test is interactive: fail fast rather than wait out a long backoff.
PROBE_RETRY = RetryPolicy(
    max_transient_retries=1,
    transient_base_delay=0.2,
    transient_max_delay=1.0,
    max_rate_limit_retries=2,
    rate_limit_base_delay=0.5,
    rate_limit_max_delay=2.0,
    max_retry_after=5.0,
)
WRITE_UNVERIFIED = (
    "can't be checked without changing data in Iterable; a Standard (server-side) key has it, a Read-only key does not"
)


@dataclass
class ProbeResult:
    ok: bool
    message: str
    checks: list[PermissionCheck] = field(default_factory=list)
    suggested_region: Region | None = None


@dataclass(frozen=True)
class ProbeTarget:
    api_key: str
    region: Region
    webhook_url: str | None = None


EventHooks = Mapping[str, list[Callable[..., Any]]]


def _other(region: Region) -> Region:
    return Region.EU if region == Region.US else Region.US


def _is_invalid_key(exc: IterableAuthError) -> bool:
    # Both cases are 401 "BadApiKey"; only the message tells an unknown key from a
    # disabled or under-privileged one.
    return exc.status == 401 and "invalid api key" in exc.message.lower()


class IterableProbe:
    def __init__(self, base_url: str | None, timeout_s: float = 30.0, event_hooks: EventHooks | None = None) -> None:
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._event_hooks = event_hooks  # tests use them to see every request made

    def _client(self, api_key: str, region: Region) -> IterableClient:
        return IterableClient(
            api_key,
            region,
            sandbox_base_url=self._base_url,
            retry=PROBE_RETRY,
            timeout=10.0,
            event_hooks=self._event_hooks,
        )

    async def run(self, target: ProbeTarget) -> ProbeResult:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._run(target)
        except TimeoutError:
            return ProbeResult(
                False,
                f"Iterable unreachable: no answer from Iterable's "
                f"{target.region} data center within {self._timeout_s:.0f}s. "
                "Try again later.",
            )

    async def _run(self, target: ProbeTarget) -> ProbeResult:
        region = target.region
        async with self._client(target.api_key, region) as client:
            try:
                await client.get_lists()
            except IterableAuthError as exc:
                return await self._auth_failure(target, exc)
            except IterableError as exc:
                return ProbeResult(False, _transport_message(exc, region))
            checks = [PermissionCheck(permission="read_lists", result="ok", message="Can read lists.")]
            checks.append(await _read_check("read_users", "read user profile fields", client.get_user_fields()))
            checks.append(await _read_check("read_templates", "read templates", client.get_templates(page_size=1)))
            checks.append(
                PermissionCheck(
                    permission="write_users", result="unverified", message=f"Writing user profiles {WRITE_UNVERIFIED}."
                )
            )
            checks.append(
                PermissionCheck(
                    permission="write_templates", result="unverified", message=f"Writing templates {WRITE_UNVERIFIED}."
                )
            )
            if target.webhook_url:
                checks.append(await _webhook_check(client, target.webhook_url))
        failed = [c for c in checks if c.result == "failed"]
        if failed:
            what = "; ".join(c.message for c in failed)
            return ProbeResult(
                False, f"Unauthorized: the key works but lacks permissions liftstack needs. {what}", checks
            )
        return ProbeResult(
            True,
            f"Connected to Iterable ({region}). Reading lists, user fields "
            "and templates works. Write access to user profiles and "
            "templates is unverified: make sure this is a Standard "
            "(server-side) key, not a Read-only key.",
            checks,
        )

    async def _auth_failure(self, target: ProbeTarget, exc: IterableAuthError) -> ProbeResult:
        other = _other(target.region)
        try:
            async with self._client(target.api_key, other) as client:
                await client.get_lists()
        except IterableError:
            pass  # not the other region's key either: report the original failure
        else:
            return ProbeResult(
                False,
                f"Wrong region: this key belongs to Iterable's {other} data center, but the "
                f"connection is set to {target.region}. Change the region to {other}.",
                [
                    PermissionCheck(
                        permission="read_lists",
                        result="failed",
                        message=f"Rejected by the {target.region} data center.",
                    )
                ],
                suggested_region=other,
            )
        if _is_invalid_key(exc):
            message = (
                "Invalid API key: Iterable doesn't recognise this key in either data "
                "center. Copy it again from Iterable > Integrations > API Keys."
            )
        else:
            message = (
                "Unauthorized: Iterable refused to read lists with this key: it is "
                "disabled or lacks privileges (e.g. a JavaScript or mobile key). "
                "liftstack needs a Standard (server-side) key."
            )
        return ProbeResult(
            False,
            message,
            [PermissionCheck(permission="read_lists", result="failed", message=f"Iterable: {exc.message}")],
        )


async def _read_check(permission: str, what: str, call: Any) -> PermissionCheck:
    try:
        await call
    except IterableAuthError:
        return PermissionCheck(permission=permission, result="failed", message=f"The key can't {what}.")
    except IterableError as exc:
        return PermissionCheck(
            permission=permission,
            result="unverified",
            message=f"Couldn't check whether the key can {what}: {_short(exc)}.",
        )
    return PermissionCheck(permission=permission, result="ok", message=f"Can {what}.")


async def _webhook_check(client: IterableClient, webhook_url: str) -> PermissionCheck:
    """Informational: is a system webhook pointing at this connection's URL?"""
    try:
        hooks = await client.get_webhooks()
    except IterableError as exc:
        return PermissionCheck(
            permission="webhook", result="unverified", message=f"Couldn't read system webhooks: {_short(exc)}."
        )
    if any(h.endpoint.rstrip("/") == webhook_url.rstrip("/") and h.enabled is not False for h in hooks):
        return PermissionCheck(permission="webhook", result="ok", message="A system webhook sends events to liftstack.")
    return PermissionCheck(
        permission="webhook",
        result="missing",
        message="No enabled system webhook points at this connection's webhook URL yet "
        "(Iterable > Integrations > System Webhooks); events won't arrive until then.",
    )


def _short(exc: IterableError) -> str:
    return f"HTTP {exc.status}" if exc.status else type(exc).__name__


def _transport_message(exc: IterableError, region: Region) -> str:
    if isinstance(exc, IterableUnavailable):
        return (
            f"Iterable unreachable: Iterable's {region} data center didn't answer "
            f"({exc.message}). Check status.iterable.com and try again."
        )
    if isinstance(exc, IterableRateLimited):
        return "Iterable is rate limiting this project right now (HTTP 429); try the test again in a minute."
    return f"Iterable answered unexpectedly ({_short(exc)}: {exc.message})."
