"""The campaign loop, step by step, as the wizard (and `liftstack demo`) drives it:
audience sync (audiences) -> assignment (here) -> writeback (writeback) -> template
(templates) -> "send" (the Iterable sandbox) -> results (here).

Each step reads and writes one section of the campaign document; the services own
their progress and the console asks them for it (`refresh`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import datetime
from typing import Any

from liftstack_console import assigner
from liftstack_console.campaigns import Doc, utcnow
from liftstack_console.services import ServiceError
from liftstack_console.web import Console, User
from liftstack_shared.connections_client import ConnectionsClient

log = logging.getLogger(__name__)

# The sandbox send's simulated engagement, per variant position: the control first.
# Later variants do a little better, so the demo has lift to show.
DEMO_RATES: list[dict[str, float]] = [
    {"open": 0.30, "click": 0.060, "unsubscribe": 0.004, "conversion": 0.020},
    {"open": 0.36, "click": 0.085, "unsubscribe": 0.004, "conversion": 0.028},
    {"open": 0.33, "click": 0.070, "unsubscribe": 0.006, "conversion": 0.024},
    {"open": 0.28, "click": 0.050, "unsubscribe": 0.003, "conversion": 0.018},
]


def ws(who: User) -> str:
    return f"/v1/workspaces/{who.workspace_id}"


# ------------------------------------------------------------------------ audience


async def list_audiences(ctx: Console, who: User, connection_id: str) -> list[dict[str, Any]]:
    data = await ctx.services.call("audiences", "GET", f"{ws(who)}/connections/{connection_id}/audiences", who.token)
    return list(data["audiences"])


async def start_sync(ctx: Console, who: User, campaign: Doc, list_id: int, list_name: str | None) -> Doc:
    accepted = await ctx.services.call(
        "audiences",
        "POST",
        f"{ws(who)}/connections/{campaign['connection_id']}/audiences/{list_id}/sync",
        # No identity: the connection's project type rules how members are read.
        who.token,
        json={},
    )
    sync = {
        "id": accepted["sync_id"],
        "status": accepted["status"],
        "list_id": list_id,
        "list_name": list_name,
        "members": 0,
        "error": None,
        "requested_at": utcnow(),
    }
    # A new audience invalidates what came after it.
    await ctx.campaigns.set(campaign["_id"], sync=sync, assignment=None)
    return sync


async def refresh_sync(ctx: Console, who: User, campaign: Doc) -> Doc | None:
    sync = campaign.get("sync")
    if not sync or sync["status"] in ("completed", "failed"):
        return sync
    record = await ctx.services.call("audiences", "GET", f"{ws(who)}/audience-syncs/{sync['id']}", who.token)
    sync = {
        **sync,
        "status": record["status"],
        "members": record.get("members", 0),
        "invalid_skipped": record.get("invalid_skipped", 0),
        "duplicates_skipped": record.get("duplicates_skipped", 0),
        "error": (record.get("error") or {}).get("message"),
        "started_at": record.get("started_at"),
        "list_name": record.get("list_name") or sync.get("list_name"),
    }
    await ctx.campaigns.set(campaign["_id"], sync=sync)
    campaign["sync"] = sync
    return sync


# ------------------------------------------------------------------------ assignment


def job_id_for(campaign: Doc) -> str:
    # One writeback job per (campaign, audience sync): re-publishing after a console
    # restart yields the same job and batches, which writeback treats as duplicates.
    return f"{campaign['_id']}.{campaign['sync']['id'][:12]}"


async def start_assignment(ctx: Console, campaign: Doc) -> bool:
    """Claim the step (one run at a time) and run it in the background."""
    sync = campaign.get("sync") or {}
    if sync.get("status") != "completed":
        raise ServiceError(409, "audience_not_synced", "Sync the audience first.")
    claimed = await ctx.campaigns.set_if(
        campaign["_id"],
        {"assignment.status": {"$nin": ["running", "completed"]}},
        assignment={"status": "running", "job_id": job_id_for(campaign), "started_at": utcnow()},
    )
    if claimed:
        ctx.background(run_assignment(ctx, campaign["_id"]), f"assign-{campaign['_id']}")
    return claimed


async def run_assignment(ctx: Console, campaign_id: str) -> None:
    campaign = await ctx.campaigns.get_by_id(campaign_id)
    assert campaign is not None
    sync = campaign["sync"]
    try:
        since = sync.get("started_at") or sync.get("requested_at")
        if isinstance(since, str):
            since = datetime.fromisoformat(since)
        members = await assigner.read_sync_members(ctx.settings, sync["id"], since)
        plan = assigner.plan_assignments(
            job_id=job_id_for(campaign),
            workspace_id=campaign["workspace_id"],
            connection_id=campaign["connection_id"],
            campaign_key=campaign["key"],
            variants=[v["name"] for v in campaign["variants"]],
            weights=[v.get("weight", 1.0) for v in campaign["variants"]],
            members=members.members,
        )
        await assigner.publish_plan(ctx.settings, plan)
    except Exception as exc:  # the wizard shows why and offers a retry
        log.exception("assignment of campaign %s failed", campaign_id)
        await ctx.campaigns.set(
            campaign_id,
            assignment={
                "status": "failed",
                "job_id": job_id_for(campaign),
                "error": str(exc) or type(exc).__name__,
            },
        )
        return
    await ctx.campaigns.set(
        campaign_id,
        assignment={
            "status": "completed",
            "job_id": plan.job_id,
            "total": plan.total,
            "counts": plan.counts,
            "identity": plan.identity,
            "batch_count": len(plan.batches),
            "finished_at": utcnow(),
        },
    )


# ------------------------------------------------------------------------ writeback


async def writeback_progress(ctx: Console, who: User, campaign: Doc) -> dict[str, Any] | None:
    assignment = campaign.get("assignment") or {}
    if assignment.get("status") != "completed":
        return None
    try:
        job = await ctx.services.call("writeback", "GET", f"{ws(who)}/writeback/jobs/{assignment['job_id']}", who.token)
        # The current run's numbers, plus how many runs came before (re-triggers).
        return {**job["current"], "previous_runs": job.get("previous_runs", [])}
    except ServiceError as exc:
        if exc.status == 404:  # writeback hasn't consumed the first batch yet
            return {
                "status": "pending",
                "total": assignment.get("total", 0),
                "written": 0,
                "succeeded": 0,
                "failed": 0,
                "failed_by_reason": {},
            }
        raise


async def retrigger_writeback(ctx: Console, who: User, campaign: Doc) -> Any:
    job_id = (campaign.get("assignment") or {}).get("job_id")
    if not job_id:
        raise ServiceError(409, "not_assigned", "Assign variants first.")
    # One key per click: the retries below (or a lost response) can't start a
    # second run, writeback answers the run this key created.
    return await ctx.services.call(
        "writeback",
        "POST",
        f"{ws(who)}/writeback/jobs/{job_id}/retrigger",
        who.token,
        json={},
        retries=2,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )


# ------------------------------------------------------------------------ template


def template_spec(campaign: Doc) -> dict[str, Any]:
    return {
        "campaign_key": campaign["key"],
        "control": campaign["control"],
        "name": f"liftstack · {campaign['name']}",
        "variants": [
            {"key": v["name"], "subject": v["subject"], "preheader": v.get("preheader") or "", "html": v["html"]}
            for v in campaign["variants"]
        ],
    }


# A sample profile for previews (the demo list's members have a firstName).
PREVIEW_PROFILE = {"firstName": "Ann", "email": "ann@example.com"}


async def generate_template(ctx: Console, who: User, campaign: Doc) -> Doc:
    """Validate the variants and save the generated template (not yet in Iterable)."""
    generated = await ctx.services.call(
        "templates",
        "POST",
        f"{ws(who)}/templates/generate",
        who.token,
        json=template_spec(campaign),
        retries=3,
    )
    template = {
        "status": "generated",
        "content_hash": generated.get("content_hash"),
        "name": generated.get("name"),
        "iterable_template_id": None,
    }
    await ctx.campaigns.set(campaign["_id"], template=template)
    return template


async def publish_template(ctx: Console, who: User, campaign: Doc) -> Doc:
    """Create (or update) the campaign's template in the connection's Iterable project."""
    if not campaign.get("template"):
        raise ServiceError(409, "not_generated", "Generate the template first.")
    result = await ctx.services.call(
        "templates",
        "POST",
        f"{ws(who)}/templates/publish",
        who.token,
        json={"connection_id": campaign["connection_id"], "template": template_spec(campaign)},
        retries=3,  # idempotent: publishing by templateId, unchanged content is a no-op
    )
    template = {
        **campaign["template"],
        "status": "published",
        "iterable_template_id": int(result["template_id"]),
        "content_hash": result.get("content_hash"),
        "published_at": utcnow(),
    }
    await ctx.campaigns.set(campaign["_id"], template=template)
    return template


async def preview_template(ctx: Console, who: User, campaign: Doc, variant: str) -> dict[str, Any]:
    """The saved template rendered for a sample profile assigned `variant`."""
    if not campaign.get("template"):
        raise ServiceError(409, "not_generated", "Generate the template first.")
    result = await ctx.services.call(
        "templates",
        "POST",
        f"{ws(who)}/templates/preview",
        who.token,
        json={"campaign_key": campaign["key"], "profile": PREVIEW_PROFILE},
        retries=3,
    )
    for preview in result["previews"]:
        if preview.get("variant") == variant:
            return preview
    raise ServiceError(404, "no_such_variant", f"The template has no variant {variant!r}.")


# ------------------------------------------------------------------------ sandbox send


def iterable_campaign_id(campaign: Doc) -> int:
    """The Iterable campaignId the sandbox send uses: stable per liftstack campaign."""
    digest = hashlib.sha256(campaign["_id"].encode()).digest()
    return 100_000_000 + int.from_bytes(digest[:4], "big") % 900_000_000


async def _sandbox_project(ctx: Console, template_id: int) -> int:
    """Template ids are global in the sandbox (as in Iterable), so the project that
    holds the published template is the connection's project."""
    projects = await ctx.services.call("sandbox", "GET", "/_sandbox/projects")
    for project in projects["projects"]:
        try:
            await ctx.services.call("sandbox", "GET", f"/_sandbox/projects/{project['id']}/templates/{template_id}")
            return int(project["id"])
        except ServiceError as exc:
            if exc.status != 404:
                raise
    raise ServiceError(404, "sandbox_project_not_found", "The published template is not in any sandbox project.")


async def sandbox_send(
    ctx: Console,
    who: User,
    campaign: Doc,
    rates: dict[str, dict[str, float]] | None = None,
    seed: int = 0,
    duplicates_rate: float = 0.0,
    reorder: bool = False,
) -> dict[str, Any]:
    """Play Iterable's part: render the published template for every list member and
    post the engagement webhooks (duplicates and reordering as Iterable may do)."""
    if not ctx.settings.sandbox_url:
        raise ServiceError(409, "no_sandbox", "No Iterable sandbox is configured: send from Iterable.")
    template = campaign.get("template") or {}
    sync = campaign.get("sync") or {}
    if template.get("status") != "published":
        raise ServiceError(409, "not_published", "Publish the template first.")
    pid = await _sandbox_project(ctx, template["iterable_template_id"])
    cid = iterable_campaign_id(campaign)
    # Record the mapping before any event can arrive, so none goes unattributed.
    await ctx.campaigns.set(
        campaign["_id"],
        send={"iterable_campaign_id": cid, "status": "sending", "sandbox_project_id": pid, "at": utcnow()},
    )
    variants = [v["name"] for v in campaign["variants"]]
    rates = rates or {name: DEMO_RATES[i % len(DEMO_RATES)] for i, name in enumerate(variants)}
    body: dict[str, Any] = {
        "templateId": template["iterable_template_id"],
        "listId": sync["list_id"],
        "campaignId": cid,
        "campaignName": campaign["name"],
        "campaignKey": campaign["key"],
        "engagement": {"default": rates.get(campaign["control"], DEMO_RATES[0]), "variants": rates},
        "seed": seed,
        "concurrency": 16,
        "duplicates_rate": duplicates_rate,
        "reorder": reorder,
    }
    webhook = await _webhook_target(ctx, who, campaign["connection_id"])
    if webhook:
        body["webhook"] = webhook
    # The sandbox renders and delivers inside this request: minutes for a big list.
    summary = await ctx.services.call("sandbox", "POST", f"/_sandbox/projects/{pid}/send", json=body, timeout=900)
    await ctx.campaigns.set(
        campaign["_id"],
        send={
            "iterable_campaign_id": cid,
            "status": "sent",
            "sandbox_project_id": pid,
            "at": utcnow(),
            "recipients": summary.get("recipients"),
            "sent": summary.get("sent"),
            "skipped": summary.get("skipped"),
            "events": summary.get("events"),
            "deliveries": summary.get("deliveries"),
        },
    )
    return summary


async def _webhook_target(ctx: Console, who: User, connection_id: str) -> dict[str, Any] | None:
    """Post the events to this campaign's connection (its webhook URL and secret), not
    whatever webhooks the sandbox project has. Members can't read the URL: then the
    project's own system webhooks are used."""
    try:
        connection = await ctx.services.call("connections", "GET", f"{ws(who)}/connections/{connection_id}", who.token)
    except ServiceError:
        return None
    target: dict[str, Any] = {"url": connection["webhook_url"], "authType": "NoAuth"}
    if connection.get("webhook_secret_hint"):
        client = ConnectionsClient(ctx.settings)
        try:
            internal = await client.get(connection_id)
        finally:
            await client.aclose()
        if internal.webhook_secrets:
            # Basic, as a marketer sets up both kinds: engagement events (system
            # webhooks) carry the secret bare, conversions (journey webhooks) as the
            # RFC 7617 password. A custom header, if the connection names one, too.
            secret = internal.webhook_secrets[0].get_secret_value()
            target.update(authType="Basic", token=secret, password=secret)
            if internal.webhook_header:
                target["headers"] = {internal.webhook_header: secret}
    return target
