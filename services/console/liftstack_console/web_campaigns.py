"""Campaigns: the list, the new-campaign form, the wizard and results, plus the JSON
API that the wizard's JavaScript and `liftstack demo` both drive."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from liftstack_console import loop
from liftstack_console.campaigns import CampaignCreate, Doc, KeyTaken
from liftstack_console.results import METRICS, results_table, table_json
from liftstack_console.services import ServiceError
from liftstack_console.web import Console, User, console, json_body, json_value, page, user, validated
from liftstack_console.web_integrations import list_connections

DONE_WRITEBACK = ("completed", "completed_with_failures")


async def _campaign(request: Request) -> tuple[Console, User, Doc]:
    ctx, who = console(request), user(request)
    doc = await ctx.campaigns.get(who.workspace_id, request.path_params["campaign_id"])
    if doc is None:
        raise ServiceError(404, "not_found", "No such campaign in this workspace.")
    return ctx, who, doc


async def state(ctx: Console, who: User, campaign: Doc) -> dict[str, Any]:
    """Every step's status, refreshed from the services that own them."""
    sync = await loop.refresh_sync(ctx, who, campaign)
    campaign = await ctx.campaigns.get_by_id(campaign["_id"]) or campaign
    writeback = None
    writeback_error = None
    try:
        writeback = await loop.writeback_progress(ctx, who, campaign)
    except ServiceError as exc:
        writeback_error = exc.message
    assignment = campaign.get("assignment") or None
    template = campaign.get("template") or None
    send = campaign.get("send") or None
    if not sync or sync["status"] != "completed":
        step = "audience"
    elif not assignment or assignment["status"] != "completed":
        step = "assign"
    elif not writeback or writeback.get("status") not in DONE_WRITEBACK:
        step = "writeback"
    elif not template or template.get("status") != "published":
        step = "template"
    elif not send or send.get("status") != "sent":
        step = "send"
    else:
        step = "results"
    return {
        "id": campaign["_id"],
        "name": campaign["name"],
        "key": campaign["key"],
        "connection_id": campaign["connection_id"],
        "control": campaign["control"],
        "variants": [{"name": v["name"], "weight": v.get("weight", 1.0)} for v in campaign["variants"]],
        "step": step,
        "sync": sync,
        "assignment": assignment,
        "writeback": writeback,
        "writeback_error": writeback_error,
        "template": template,
        "send": send,
    }


def _encode(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def json_ok(value: Any, status: int = 200) -> Response:
    return JSONResponse(_encode(value), status_code=status)


# ------------------------------------------------------------------------ pages


async def campaigns_page(request: Request) -> Response:
    ctx, who = console(request), user(request)
    campaigns = await ctx.campaigns.list(who.workspace_id)
    return page(request, "campaigns.html", section="campaigns", campaigns=campaigns)


async def new_campaign_page(request: Request) -> Response:
    try:
        connections, error = await list_connections(request), None
    except ServiceError as exc:
        connections, error = [], exc.message
    return page(request, "campaign_new.html", section="campaigns", connections=connections, error=error)


async def campaign_page(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    current = await state(ctx, who, campaign)
    campaign = await ctx.campaigns.get_by_id(campaign["_id"]) or campaign
    connections = {c["id"]: c for c in await _safe_connections(request)}
    table = await results_table(ctx.results, campaign) if current["send"] else None
    return page(
        request,
        "campaign.html",
        section="campaigns",
        campaign=campaign,
        s=current,
        connection=connections.get(campaign["connection_id"]),
        table=table,
        metrics=METRICS,
        sandbox=bool(ctx.settings.sandbox_url),
        rates=loop.DEMO_RATES,
    )


async def results_page(request: Request) -> Response:
    ctx, _who, campaign = await _campaign(request)
    table = await results_table(ctx.results, campaign)
    name = "_results.html" if request.query_params.get("partial") else "results.html"
    return page(request, name, section="campaigns", campaign=campaign, table=table, metrics=METRICS)


async def preview_page(request: Request) -> Response:
    """One variant's rendered email, for the wizard's preview iframe."""
    ctx, who, campaign = await _campaign(request)
    preview = await loop.preview_template(ctx, who, campaign, request.path_params["variant"])
    return HTMLResponse(preview.get("html", ""), headers={"Content-Security-Policy": "script-src 'none'"})


async def _safe_connections(request: Request) -> list[dict[str, Any]]:
    try:
        return await list_connections(request)
    except ServiceError:
        return []


# ------------------------------------------------------------------------ JSON API


async def api_list(request: Request) -> Response:
    ctx, who = console(request), user(request)
    return json_ok(
        {
            "campaigns": [
                {"id": c["_id"], "name": c["name"], "key": c["key"], "connection_id": c["connection_id"]}
                for c in await ctx.campaigns.list(who.workspace_id)
            ]
        }
    )


async def api_create(request: Request) -> Response:
    ctx, who = console(request), user(request)
    body: CampaignCreate = await json_body(request, CampaignCreate)
    try:
        doc = await ctx.campaigns.create(who.workspace_id, who.principal.user_id, body)
    except KeyTaken:
        raise ServiceError(409, "key_taken", f"A campaign with key {body.key!r} already exists.", "key") from None
    return json_ok({"id": doc["_id"], "key": doc["key"]}, status=201)


async def api_state(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    return json_ok(await state(ctx, who, campaign))


async def api_audiences(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    return json_ok({"audiences": await loop.list_audiences(ctx, who, campaign["connection_id"])})


class SyncBody(BaseModel):
    list_id: int
    list_name: str | None = None


async def api_sync(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    body: SyncBody = await json_body(request, SyncBody)
    return json_ok(await loop.start_sync(ctx, who, campaign, body.list_id, body.list_name), 202)


async def api_assign(request: Request) -> Response:
    ctx, _who, campaign = await _campaign(request)
    started = await loop.start_assignment(ctx, campaign)
    return json_ok({"started": started}, 202)


async def api_retrigger(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    return json_ok(await loop.retrigger_writeback(ctx, who, campaign) or {}, 202)


async def api_generate(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    return json_ok(await loop.generate_template(ctx, who, campaign))


async def api_publish(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    return json_ok(await loop.publish_template(ctx, who, campaign))


async def api_preview(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    return json_ok(await loop.preview_template(ctx, who, campaign, request.path_params["variant"]))


class SendBody(BaseModel):
    rates: dict[str, dict[str, float]] | None = None
    seed: int = Field(default=0, ge=0)
    duplicates_rate: float = Field(default=0.0, ge=0, le=1)
    reorder: bool = False


async def api_send(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    raw = await json_value(request)
    body = validated(SendBody, raw) if raw is not None else SendBody()
    return json_ok(
        await loop.sandbox_send(ctx, who, campaign, body.rates, body.seed, body.duplicates_rate, body.reorder)
    )


async def api_results(request: Request) -> Response:
    ctx, _who, campaign = await _campaign(request)
    return json_ok(table_json(await results_table(ctx.results, campaign)))


async def api_delete(request: Request) -> Response:
    ctx, who, campaign = await _campaign(request)
    await ctx.campaigns.delete(who.workspace_id, campaign["_id"])
    return Response(status_code=204)


async def root(request: Request) -> Response:
    return RedirectResponse("/campaigns", status_code=303)


C = "/api/campaigns/{campaign_id}"
routes = [
    Route("/", root, methods=["GET"]),
    Route("/campaigns", campaigns_page, methods=["GET"]),
    Route("/campaigns/new", new_campaign_page, methods=["GET"]),
    Route("/campaigns/{campaign_id}", campaign_page, methods=["GET"]),
    Route("/campaigns/{campaign_id}/results", results_page, methods=["GET"]),
    Route("/campaigns/{campaign_id}/preview/{variant}", preview_page, methods=["GET"]),
    Route("/api/campaigns", api_list, methods=["GET"]),
    Route("/api/campaigns", api_create, methods=["POST"]),
    Route(C, api_state, methods=["GET"]),
    Route(C, api_delete, methods=["DELETE"]),
    Route(C + "/audiences", api_audiences, methods=["GET"]),
    Route(C + "/sync", api_sync, methods=["POST"]),
    Route(C + "/assign", api_assign, methods=["POST"]),
    Route(C + "/writeback/retrigger", api_retrigger, methods=["POST"]),
    Route(C + "/template/generate", api_generate, methods=["POST"]),
    Route(C + "/template/publish", api_publish, methods=["POST"]),
    Route(C + "/template/preview/{variant}", api_preview, methods=["GET"]),
    Route(C + "/send", api_send, methods=["POST"]),
    Route(C + "/results", api_results, methods=["GET"]),
]
