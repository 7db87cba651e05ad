"""The campaign loop, step by step, as the console's wizard (and `liftstack demo`)
drives it: audience sync (audiences) -> assignment (here) -> writeback (writeback)
-> template (templates) -> "send" (the Iterable sandbox) -> results (here).

Each step reads the campaign and replaces one of its sections (store.py). The
services own their progress; the loop asks them for it, always as the signed-in
user (`Caller.token` is forwarded). The assignment runs in the background: it
reads the sync's members from Kafka, plans (plan.py) and publishes (assigner.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from liftstack_experiments import assigner
from liftstack_experiments.assigner import AssignmentPublisher
from liftstack_experiments.campaigns import (
    DEMO_RATES,
    AssignmentSection,
    Campaign,
    SendSection,
    SyncSection,
    TemplateSection,
    demo_rates,
    iterable_campaign_id,
    job_id_for,
)
from liftstack_experiments.downstream import (
    Audience,
    Downstream,
    SandboxSendSummary,
    VariantPreview,
    WritebackJob,
)
from liftstack_experiments.models import SendBody, WritebackProgress
from liftstack_experiments.plan import plan_assignments
from liftstack_experiments.results import SendRecord
from liftstack_experiments.store import CampaignStore, utcnow
from liftstack_shared.errors import ApiError
from liftstack_shared.service_calls import ServiceCallError
from liftstack_shared.settings import CommonSettings

log = logging.getLogger(__name__)

# A sample profile for previews (the demo list's members have a firstName).
PREVIEW_PROFILE = {"firstName": "Ann", "email": "ann@example.com"}


@dataclass(frozen=True)
class Caller:
    """The signed-in user a step runs as: their workspace, id and bearer token."""

    workspace_id: str
    user_id: str
    token: str


@dataclass
class BackgroundTasks:
    """Work that outlives its request; references kept so tasks aren't GC'd."""

    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def run(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def template_spec(campaign: Campaign) -> dict[str, Any]:
    """The templates service's TemplateSpec for this campaign."""
    return {
        "campaign_key": campaign.key,
        "control": campaign.control,
        "name": f"liftstack · {campaign.name}",
        "variants": [
            {"key": v.name, "subject": v.subject, "preheader": v.preheader, "html": v.html} for v in campaign.variants
        ],
    }


class CampaignLoop:
    def __init__(
        self,
        settings: CommonSettings,
        campaigns: CampaignStore,
        downstream: Downstream,
        publisher: AssignmentPublisher,
        sync_read_timeout_s: float = 120.0,
    ) -> None:
        self._settings = settings
        self._campaigns = campaigns
        self._downstream = downstream
        self._publisher = publisher
        self._sync_read_timeout_s = sync_read_timeout_s
        self.background = BackgroundTasks()

    @property
    def has_sandbox(self) -> bool:
        return self._downstream.has_sandbox

    # -------------------------------------------------------------------- audience

    async def list_audiences(self, who: Caller, campaign: Campaign) -> list[Audience]:
        return await self._downstream.list_audiences(who.token, who.workspace_id, campaign.connection_id)

    async def start_sync(self, who: Caller, campaign: Campaign, list_id: int, list_name: str | None) -> SyncSection:
        accepted = await self._downstream.start_sync(who.token, who.workspace_id, campaign.connection_id, list_id)
        sync = SyncSection.model_validate(
            {
                "id": accepted.sync_id,
                "status": accepted.status,
                "list_id": list_id,
                "list_name": list_name,
                "requested_at": utcnow(),
            }
        )
        # A new audience invalidates what came after it.
        await self._campaigns.set_sections(campaign.id, sync=sync, assignment=None)
        return sync

    async def refresh_sync(self, who: Caller, campaign: Campaign) -> Campaign:
        """The campaign with its sync section as the audiences service has it now."""
        sync = campaign.sync
        if sync is None or sync.finished:
            return campaign
        record = await self._downstream.sync_record(who.token, who.workspace_id, sync.id)
        sync = sync.model_validate(
            {
                **sync.model_dump(),
                "status": record.status,
                "members": record.members,
                "invalid_skipped": record.invalid_skipped,
                "duplicates_skipped": record.duplicates_skipped,
                "error": record.error.message if record.error else None,
                "started_at": record.started_at,
                "list_name": record.list_name or sync.list_name,
            }
        )
        await self._campaigns.set_sections(campaign.id, sync=sync)
        return campaign.model_copy(update={"sync": sync})

    # ------------------------------------------------------------------ assignment

    async def start_assignment(self, campaign: Campaign) -> bool:
        """Claim the step (one run at a time) and run it in the background."""
        sync = campaign.sync
        if sync is None or sync.status != "completed":
            raise ApiError(409, "audience_not_synced", "Sync the audience first.")
        running = AssignmentSection(status="running", job_id=job_id_for(campaign, sync), started_at=utcnow())
        claimed = await self._campaigns.claim_assignment(campaign.id, running)
        if claimed:
            self.background.run(self.run_assignment(campaign.id), f"assign-{campaign.id}")
        return claimed

    async def run_assignment(self, campaign_id: str) -> None:
        campaign = await self._campaigns.get_by_id(campaign_id)
        if campaign is None or campaign.sync is None:
            return  # deleted meanwhile
        sync = campaign.sync
        job_id = job_id_for(campaign, sync)
        try:
            members = await assigner.read_sync_members(
                self._settings, sync.id, sync.started_at or sync.requested_at, timeout_s=self._sync_read_timeout_s
            )
            plan = plan_assignments(
                job_id=job_id,
                workspace_id=campaign.workspace_id,
                connection_id=campaign.connection_id,
                campaign_key=campaign.key,
                variants=campaign.variant_names,
                weights=campaign.weights,
                members=members.members,
            )
            await self._publisher.publish(plan)
        except Exception as exc:  # any failure: the wizard shows why and offers a retry
            log.exception("assignment of campaign %s failed", campaign_id)
            failed = AssignmentSection(status="failed", job_id=job_id, error=str(exc) or type(exc).__name__)
            await self._campaigns.set_sections(campaign_id, assignment=failed)
            return
        done = AssignmentSection(
            status="completed",
            job_id=plan.job_id,
            total=plan.total,
            counts=plan.counts,
            identity=plan.identity,
            batch_count=len(plan.batches),
            sample=plan.sample,
            started_at=campaign.assignment.started_at if campaign.assignment else None,
            finished_at=utcnow(),
        )
        await self._campaigns.set_sections(campaign_id, assignment=done)

    # ------------------------------------------------------------------- writeback

    async def writeback_progress(self, who: Caller, campaign: Campaign) -> WritebackProgress | None:
        assignment = campaign.assignment
        if assignment is None or assignment.status != "completed":
            return None
        try:
            job = await self._downstream.writeback_job(who.token, who.workspace_id, assignment.job_id)
        except ServiceCallError as exc:
            if exc.status == 404:  # writeback hasn't consumed the first batch yet
                return WritebackProgress(status="pending", total=assignment.total)
            raise
        return WritebackProgress(**job.current.model_dump(), previous_runs=job.previous_runs)

    async def retrigger_writeback(self, who: Caller, campaign: Campaign) -> WritebackJob:
        if campaign.assignment is None or campaign.assignment.status != "completed":
            raise ApiError(409, "not_assigned", "Assign variants first.")
        # One key per click: retries (or a lost response) can't start a second run.
        key = uuid.uuid4().hex
        return await self._downstream.retrigger_writeback(who.token, who.workspace_id, campaign.assignment.job_id, key)

    # -------------------------------------------------------------------- template

    async def generate_template(self, who: Caller, campaign: Campaign) -> TemplateSection:
        """Validate the variants and save the generated template (not yet in Iterable)."""
        generated = await self._downstream.generate_template(who.token, who.workspace_id, template_spec(campaign))
        template = TemplateSection(status="generated", name=generated.name, content_hash=generated.content_hash)
        await self._campaigns.set_sections(campaign.id, template=template)
        return template

    async def publish_template(self, who: Caller, campaign: Campaign) -> TemplateSection:
        """Create (or update) the campaign's template in the connection's Iterable project."""
        if campaign.template is None:
            raise ApiError(409, "not_generated", "Generate the template first.")
        published = await self._downstream.publish_template(
            who.token, who.workspace_id, campaign.connection_id, template_spec(campaign)
        )
        template = campaign.template.model_copy(
            update={
                "status": "published",
                "iterable_template_id": published.template_id,
                "content_hash": published.content_hash,
                "published_at": utcnow(),
            }
        )
        await self._campaigns.set_sections(campaign.id, template=template)
        return template

    async def preview_template(self, who: Caller, campaign: Campaign, variant: str) -> VariantPreview:
        """The saved template rendered for a sample profile assigned `variant`."""
        if campaign.template is None:
            raise ApiError(409, "not_generated", "Generate the template first.")
        previews = await self._downstream.preview_template(who.token, who.workspace_id, campaign.key, PREVIEW_PROFILE)
        for preview in previews:
            if preview.variant == variant:
                return preview
        raise ApiError(404, "no_such_variant", f"The template has no variant {variant!r}.")

    # ---------------------------------------------------------------- sandbox send

    async def sandbox_send(self, who: Caller, campaign: Campaign, options: SendBody) -> SandboxSendSummary:
        """Play Iterable's part: render the published template for every list member and
        post the engagement webhooks (duplicates and reordering as Iterable may do)."""
        if not self._downstream.has_sandbox:
            raise ApiError(409, "no_sandbox", "No Iterable sandbox is configured: send from Iterable.")
        template, sync = campaign.template, campaign.sync
        if template is None or template.status != "published" or template.iterable_template_id is None:
            raise ApiError(409, "not_published", "Publish the template first.")
        assert sync is not None  # a published template comes after a completed sync
        pid = await self._sandbox_project(template.iterable_template_id)
        cid = iterable_campaign_id(campaign.id)
        # Record the mapping before any event can arrive, so none goes unattributed.
        sending = SendSection(iterable_campaign_id=cid, status="sending", sandbox_project_id=pid, at=utcnow())
        await self._campaigns.set_sections(campaign.id, send=sending)
        rates = options.rates or demo_rates(campaign)
        body: dict[str, Any] = {
            "templateId": template.iterable_template_id,
            "listId": sync.list_id,
            "campaignId": cid,
            "campaignName": campaign.name,
            "campaignKey": campaign.key,
            "engagement": {"default": rates.get(campaign.control, DEMO_RATES[0]), "variants": rates},
            "seed": options.seed,
            "concurrency": 16,
            "duplicates_rate": options.duplicates_rate,
            "reorder": options.reorder,
        }
        webhook = await self._webhook_target(who, campaign.connection_id)
        if webhook:
            body["webhook"] = webhook
        summary = await self._downstream.sandbox_send(pid, body)
        sent = sending.model_copy(
            update={
                "status": "sent",
                "at": utcnow(),
                "recipients": summary.recipients,
                "sent": summary.sent,
                "skipped": summary.skipped,
                "events": summary.events,
                "deliveries": summary.deliveries,
            }
        )
        await self._campaigns.set_sections(campaign.id, send=sent)
        return summary

    async def sandbox_send_records(self, campaign: Campaign, send_id: str | None) -> list[SendRecord]:
        """Which branch each recipient of this campaign's sandbox send rendered (the
        latest send's records when the sandbox names it)."""
        campaign = await self._campaigns.get_by_id(campaign.id) or campaign
        send = campaign.send
        if send is None or send.sandbox_project_id is None:
            return []
        records = await self._downstream.sandbox_send_records(send.sandbox_project_id, send.iterable_campaign_id)
        return [r for r in records if send_id is None or r.sendId == send_id]

    async def _sandbox_project(self, template_id: int) -> int:
        """Template ids are global in the sandbox (as in Iterable), so the project that
        holds the published template is the connection's project."""
        for project_id in await self._downstream.sandbox_project_ids():
            if await self._downstream.sandbox_has_template(project_id, template_id):
                return project_id
        raise ApiError(404, "sandbox_project_not_found", "The published template is not in any sandbox project.")

    async def _webhook_target(self, who: Caller, connection_id: str) -> dict[str, Any] | None:
        """Post the events to this campaign's connection (its webhook URL and secret), not
        whatever webhooks the sandbox project has. Members can't read the URL: then the
        project's own system webhooks are used."""
        try:
            connection = await self._downstream.connection(who.token, who.workspace_id, connection_id)
        except ServiceCallError:
            return None
        target: dict[str, Any] = {"url": connection.webhook_url, "authType": "NoAuth"}
        if connection.webhook_secret_hint:
            credentials = await self._downstream.webhook_credentials(connection_id)
            if credentials is not None:
                # Basic, as a marketer sets up both kinds: engagement events (system
                # webhooks) carry the secret bare, conversions (journey webhooks) as the
                # RFC 7617 password. A custom header, if the connection names one, too.
                secret, header = credentials
                target.update(authType="Basic", token=secret, password=secret)
                if header:
                    target["headers"] = {header: secret}
        return target
