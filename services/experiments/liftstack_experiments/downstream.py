"""HTTP clients of the services the campaign loop drives: audiences, writeback,
templates and connections always as the signed-in user (their bearer token is
forwarded, so each service applies its own role rules), the Iterable sandbox's admin
API (no auth; local stacks only), and the connections service's internal API for
the webhook secret the sandbox posts with.

A service's error comes back as `liftstack_shared.service_calls.ServiceCallError`,
carrying the service's own code, message and field plus which service said it, so
the console shows it as is. Only what the loop reads of each answer is modelled here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field

from liftstack_experiments.results import SendRecord
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.retry import backoff
from liftstack_shared.service_calls import (
    DEFAULT_TIMEOUT,
    ServiceCallError,
    ServiceUnavailable,
    call_service,
    json_or_none,
)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Audience(_Answer):
    id: int
    name: str
    type: str
    iterable_type: str | None = None
    size: int | None = None


class SyncAccepted(_Answer):
    sync_id: str
    status: str


class SyncProblem(_Answer):
    code: str = "error"
    message: str = ""


class SyncRecord(_Answer):
    status: str
    list_name: str | None = None
    members: int = 0
    invalid_skipped: int = 0
    duplicates_skipped: int = 0
    error: SyncProblem | None = None
    started_at: datetime | None = None


class WritebackRun(_Answer):
    """One run of a writeback job (writeback's RunView)."""

    status: str
    total: int = 0
    written: int = 0
    succeeded: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    unattributed_failures: int = 0
    run: int = 1
    triggered_by: str | None = None
    batches_done: int | None = None
    batch_count: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    profiles_per_second: float | None = None


class WritebackJob(_Answer):
    current: WritebackRun
    previous_runs: list[WritebackRun] = Field(default_factory=list)


class GeneratedTemplate(_Answer):
    name: str | None = None
    content_hash: str | None = None


class PublishedTemplate(_Answer):
    template_id: int
    content_hash: str | None = None


class VariantPreview(_Answer):
    variant: str | None = None
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    error: str | None = None


class ConnectionView(_Answer):
    webhook_url: str
    webhook_secret_hint: str | None = None


class SandboxSendSummary(BaseModel):
    """The sandbox's answer to a send (kept whole: the console shows it)."""

    model_config = ConfigDict(extra="allow")

    campaignId: int
    sendId: str | None = None
    recipients: int | None = None
    sent: int = 0
    skipped: int | None = None
    events: dict[str, int] = Field(default_factory=dict)
    deliveries: dict[str, Any] | None = None


class Downstream:
    """One pooled httpx client per process; per call, the user's token."""

    def __init__(
        self,
        settings: ExperimentsSettings,
        connections: ConnectionsClient,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, transport=transport)
        self._connections = connections
        self._base = {
            "audiences": settings.audiences_url.rstrip("/"),
            "writeback": settings.writeback_url.rstrip("/"),
            "templates": settings.templates_url.rstrip("/"),
            "connections": settings.connections_url.rstrip("/"),
            "sandbox": (settings.sandbox_url or "").rstrip("/"),
        }

    @property
    def has_sandbox(self) -> bool:
        return bool(self._base["sandbox"])

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._connections.aclose()

    # ------------------------------------------------------------------ audiences

    async def list_audiences(self, token: str, ws: str, connection_id: str) -> list[Audience]:
        data = await self._call("audiences", "GET", f"/v1/workspaces/{ws}/connections/{connection_id}/audiences", token)
        return [Audience.model_validate(a) for a in data["audiences"]]

    async def start_sync(self, token: str, ws: str, connection_id: str, list_id: int) -> SyncAccepted:
        # No identity: the connection's project type rules how members are read.
        path = f"/v1/workspaces/{ws}/connections/{connection_id}/audiences/{list_id}/sync"
        return SyncAccepted.model_validate(await self._call("audiences", "POST", path, token, json={}))

    async def sync_record(self, token: str, ws: str, sync_id: str) -> SyncRecord:
        data = await self._call("audiences", "GET", f"/v1/workspaces/{ws}/audience-syncs/{sync_id}", token)
        return SyncRecord.model_validate(data)

    # ------------------------------------------------------------------ writeback

    async def writeback_job(self, token: str, ws: str, job_id: str) -> WritebackJob:
        data = await self._call("writeback", "GET", f"/v1/workspaces/{ws}/writeback/jobs/{job_id}", token)
        return WritebackJob.model_validate(data)

    async def retrigger_writeback(self, token: str, ws: str, job_id: str, idempotency_key: str) -> WritebackJob:
        # The key makes the retries (or a lost response) answer the run it created.
        data = await self._call(
            "writeback",
            "POST",
            f"/v1/workspaces/{ws}/writeback/jobs/{job_id}/retrigger",
            token,
            json={},
            retries=2,
            headers={"Idempotency-Key": idempotency_key},
        )
        return WritebackJob.model_validate(data)

    # ------------------------------------------------------------------ templates

    async def generate_template(self, token: str, ws: str, spec: dict[str, Any]) -> GeneratedTemplate:
        data = await self._call("templates", "POST", f"/v1/workspaces/{ws}/templates/generate", token, spec, retries=3)
        return GeneratedTemplate.model_validate(data)

    async def publish_template(
        self, token: str, ws: str, connection_id: str, spec: dict[str, Any]
    ) -> PublishedTemplate:
        # Idempotent: publishing by templateId, unchanged content is a no-op.
        body = {"connection_id": connection_id, "template": spec}
        data = await self._call("templates", "POST", f"/v1/workspaces/{ws}/templates/publish", token, body, retries=3)
        return PublishedTemplate.model_validate(data)

    async def preview_template(
        self, token: str, ws: str, campaign_key: str, profile: dict[str, Any]
    ) -> list[VariantPreview]:
        body = {"campaign_key": campaign_key, "profile": profile}
        data = await self._call("templates", "POST", f"/v1/workspaces/{ws}/templates/preview", token, body, retries=3)
        return [VariantPreview.model_validate(p) for p in data["previews"]]

    # ---------------------------------------------------------------- connections

    async def connection(self, token: str, ws: str, connection_id: str) -> ConnectionView:
        data = await self._call("connections", "GET", f"/v1/workspaces/{ws}/connections/{connection_id}", token)
        return ConnectionView.model_validate(data)

    async def webhook_credentials(self, connection_id: str) -> tuple[str, str | None] | None:
        """(current webhook secret, custom header name) from the connections service's
        internal API, or None when the connection has no secret."""
        internal = await self._connections.get(connection_id)
        if not internal.webhook_secrets:
            return None
        return internal.webhook_secrets[0].get_secret_value(), internal.webhook_header

    # -------------------------------------------------------------------- sandbox

    async def sandbox_project_ids(self) -> list[int]:
        data = await self._call("sandbox", "GET", "/_sandbox/projects")
        return [int(p["id"]) for p in data["projects"]]

    async def sandbox_has_template(self, project_id: int, template_id: int) -> bool:
        try:
            await self._call("sandbox", "GET", f"/_sandbox/projects/{project_id}/templates/{template_id}")
        except ServiceCallError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def sandbox_send(self, project_id: int, body: dict[str, Any]) -> SandboxSendSummary:
        # The sandbox renders and delivers inside this request: minutes for a big list.
        data = await self._call("sandbox", "POST", f"/_sandbox/projects/{project_id}/send", json=body, timeout=900)
        return SandboxSendSummary.model_validate(data)

    async def sandbox_send_records(self, project_id: int, campaign_id: int) -> list[SendRecord]:
        """Which branch every recipient of the campaign's sandbox sends got."""
        query = urlencode({"campaignId": campaign_id, "fields": "sendId,email,userId,variant,status"})
        data = await self._call("sandbox", "GET", f"/_sandbox/projects/{project_id}/sends?{query}", timeout=120)
        return [SendRecord.model_validate(item) for item in data["sends"]]

    # ---------------------------------------------------------------------- HTTP

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        *,
        timeout: float | None = None,
        retries: int = 0,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """`retries`: for idempotent calls, how often to retry a 5xx or no answer."""
        async for attempt in backoff(attempts=retries + 1, first_s=0.5, max_s=4.0, retry_on=(ServiceUnavailable,)):
            with attempt:
                return await self._once(service, method, path, token, json, timeout, headers or {})
        raise AssertionError("unreachable: backoff re-raises the last failure")

    async def _once(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None,
        json: Any,
        timeout: float | None,
        headers: dict[str, str],
    ) -> Any:
        url = self._base[service] + path
        response = await call_service(
            self._http, service, method, url, token=token, json=json, headers=headers, timeout_s=timeout
        )
        return json_or_none(response)
