"""The experiments service's use cases besides the loop's steps (loop.py):
campaigns (create, list, read one of the caller's workspace, delete), each
campaign's state refreshed from the services that own its steps, the results table,
and recording engagement events (the results consumer's work)."""

from __future__ import annotations

import time

from liftstack_experiments.campaigns import Campaign, CampaignCreate, ReadinessOverride, current_step, demo_rates
from liftstack_experiments.downstream import SandboxSendSummary
from liftstack_experiments.iterable_probe import ReadBackProbe
from liftstack_experiments.loop import Caller, CampaignLoop
from liftstack_experiments.models import (
    CampaignState,
    CampaignSummary,
    PlanBody,
    SendBody,
    VariantSummary,
    WritebackProgress,
)
from liftstack_experiments.readiness import RUNNING, ReadBack, Readiness, WritebackFacts, evaluate
from liftstack_experiments.results import ResultsTable, attribute, exposure_of, results_table
from liftstack_experiments.stats import CampaignPlan, plan_campaign
from liftstack_experiments.store import CampaignStore, KeyTaken, ResultsStore, utcnow
from liftstack_shared.errors import ApiError
from liftstack_shared.messages import EngagementEvent
from liftstack_shared.service_calls import ServiceCallError


class CampaignLookup:
    """Iterable (connection, campaignId, templateId) -> campaign, cached briefly, so a
    burst of events costs one query per campaign rather than one per event."""

    def __init__(self, campaigns: CampaignStore, ttl_s: float = 5.0) -> None:
        self._campaigns = campaigns
        self._ttl = ttl_s
        self._cache: dict[tuple[str, int | None, int | None], tuple[float, Campaign | None]] = {}

    async def find(self, event: EngagementEvent) -> Campaign | None:
        key = (event.connection_id, event.campaign_id, event.template_id)
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        campaign = await self._campaigns.by_iterable_ids(*key)
        self._cache[key] = (time.monotonic() + self._ttl, campaign)
        return campaign


class ExperimentsService:
    def __init__(
        self,
        campaigns: CampaignStore,
        results: ResultsStore,
        loop: CampaignLoop,
        profiles_per_second: float,
        probe: ReadBackProbe | None = None,
        settle_s: float = 600.0,
    ) -> None:
        self._campaigns = campaigns
        self._probe = probe
        self._settle_s = settle_s
        self._profiles_per_second = profiles_per_second
        self._results = results
        self._loop = loop
        self._lookup = CampaignLookup(campaigns)

    # ------------------------------------------------------------------ campaigns

    async def create(self, who: Caller, body: CampaignCreate) -> Campaign:
        try:
            return await self._campaigns.create(who.workspace_id, who.user_id, body)
        except KeyTaken:
            raise ApiError(409, "key_taken", f"A campaign with key {body.key!r} already exists.", "key") from None

    async def list_campaigns(self, who: Caller) -> list[CampaignSummary]:
        return [
            CampaignSummary(
                id=c.id,
                name=c.name,
                key=c.key,
                connection_id=c.connection_id,
                variants=c.variant_names,
                list_name=c.sync.list_name if c.sync else None,
                created_at=c.created_at,
            )
            for c in await self._campaigns.in_workspace(who.workspace_id)
        ]

    async def get(self, who: Caller, campaign_id: str) -> Campaign:
        """One campaign of the caller's workspace; 404 for any other."""
        campaign = await self._campaigns.get(who.workspace_id, campaign_id)
        if campaign is None:
            raise ApiError(404, "not_found", "No such campaign in this workspace.")
        return campaign

    async def delete(self, who: Caller, campaign_id: str) -> None:
        if not await self._campaigns.delete(who.workspace_id, campaign_id):
            raise ApiError(404, "not_found", "No such campaign in this workspace.")

    async def state(self, who: Caller, campaign: Campaign) -> CampaignState:
        """Every step's state, refreshed from the services that own them."""
        campaign = await self._loop.refresh_sync(who, campaign)
        # The assignment may have finished in the background since the campaign was read.
        campaign = await self._campaigns.get_by_id(campaign.id) or campaign
        writeback: WritebackProgress | None = None
        writeback_error = None
        try:
            writeback = await self._loop.writeback_progress(who, campaign)
        except ServiceCallError as exc:
            writeback_error = exc.message
        return CampaignState(
            id=campaign.id,
            name=campaign.name,
            key=campaign.key,
            connection_id=campaign.connection_id,
            control=campaign.control,
            variants=[
                VariantSummary(name=v.name, weight=v.weight, subject=v.subject, preheader=v.preheader)
                for v in campaign.variants
            ],
            created_at=campaign.created_at,
            step=current_step(campaign, writeback.status if writeback else None),
            sync=campaign.sync,
            assignment=campaign.assignment,
            writeback=writeback,
            writeback_error=writeback_error,
            template=campaign.template,
            send=campaign.send,
            sandbox_rates=demo_rates(campaign) if self._loop.has_sandbox else None,
        )

    # ------------------------------------------------------------------ readiness

    async def readiness(self, who: Caller, campaign: Campaign) -> Readiness:
        """Whether the campaign may be sent (readiness.py): the writeback run now, and
        once no run is in progress, the sampled profiles read back from Iterable."""
        read_back: ReadBack | None = None
        try:
            run = await self._loop.writeback_progress(who, campaign)
        except ServiceCallError as exc:
            facts = None
            read_back = ReadBack(sampled=0, matched=0, error=f"writeback progress unavailable: {exc.message}")
        else:
            facts = (
                WritebackFacts(status=run.status, succeeded=run.succeeded, finished_at=run.finished_at) if run else None
            )
            read_back = None
            if run and run.status not in RUNNING and self._probe is not None:
                read_back = await self._probe.read_back(campaign, f"{run.run}|{run.finished_at}")
        return evaluate(campaign, facts, read_back, utcnow(), self._settle_s)

    async def override_readiness(self, who: Caller, campaign: Campaign, reason: str) -> Readiness:
        """An Owner's "ready anyway" (the API checks the role), kept with who and why."""
        override = ReadinessOverride(by=who.user_id, reason=reason, at=utcnow())
        await self._campaigns.set_sections(campaign.id, readiness_override=override)
        return await self.readiness(who, campaign.model_copy(update={"readiness_override": override}))

    # -------------------------------------------------------------------- results

    async def results(self, campaign: Campaign) -> ResultsTable:
        counts = await self._results.counts(campaign.id)
        exposure = await self._results.exposure(campaign.id)
        not_written = (
            await self._results.counts_of(campaign.id, exposure.not_written_recipients)
            if exposure and exposure.not_written_recipients
            else {}
        )
        return results_table(campaign, counts, await self._results.event_total(campaign.id), exposure, not_written)

    async def sandbox_send(self, who: Caller, campaign: Campaign, options: SendBody) -> SandboxSendSummary:
        """The sandbox's send, then its record of which branch each recipient got (so
        results count exposures, not assignments)."""
        summary = await self._loop.sandbox_send(who, campaign, options)
        records = await self._loop.sandbox_send_records(campaign, summary.sendId)
        await self._results.save_exposure(campaign.id, exposure_of(campaign, records))
        return summary

    def plan(self, body: PlanBody) -> CampaignPlan:
        """The setup calculator: what a campaign of this size can detect, how long its
        writeback takes at the project's Iterable budget."""
        names = [v.name for v in body.variants]
        return plan_campaign(
            audience=body.audience,
            baseline_rate=body.baseline_rate,
            variants=names,
            weights=[v.weight for v in body.variants],
            control=body.control or names[0],
            profiles_per_second=self._profiles_per_second,
            expected_lift=body.expected_lift,
        )

    async def record_events(self, events: list[EngagementEvent]) -> None:
        """Store each event once and count it for its campaign's variant (idempotent:
        re-delivered and re-sent events change nothing)."""
        rows = []
        for event in events:
            campaign = await self._lookup.find(event)
            rows.append((event, attribute(campaign, event) if campaign else None))
        await self._results.write(rows)
