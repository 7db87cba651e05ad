"""HTTP entry: the experiments API, workspace-scoped, for user tokens.

Any role of the workspace may run the loop (Members build campaigns); the services
the loop calls apply their own role rules to the forwarded token (writeback's
re-trigger and templates' generate/publish want Owners and Admins). A path workspace
other than the token's, or a campaign of another workspace, answers 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_experiments.campaigns import Campaign, CampaignCreate, SyncSection, TemplateSection
from liftstack_experiments.downstream import SandboxSendSummary, VariantPreview, WritebackJob
from liftstack_experiments.loop import Caller, CampaignLoop
from liftstack_experiments.models import (
    AssignStarted,
    AudienceList,
    CampaignCreated,
    CampaignList,
    CampaignState,
    OverrideBody,
    PlanBody,
    SendBody,
    SyncBody,
)
from liftstack_experiments.readiness import Readiness
from liftstack_experiments.results import ResultsTable
from liftstack_experiments.service import ExperimentsService
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_experiments.stats import CampaignPlan
from liftstack_shared.auth import Role, workspace_caller
from liftstack_shared.errors import ApiError
from liftstack_shared.http import Endpoint, json_response, parse_body, parse_json, read_body


@dataclass(frozen=True)
class Deps:
    settings: ExperimentsSettings
    service: ExperimentsService
    loop: CampaignLoop


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def caller(request: Request) -> Caller:
    """The signed-in user of the path's workspace, with the token the loop forwards."""
    principal = workspace_caller(request, deps(request).settings, request.path_params["workspace_id"])
    token = request.headers["authorization"].partition(" ")[2].strip()
    return Caller(principal.workspace_id, principal.user_id, token)


async def campaign_of(request: Request) -> tuple[Caller, Campaign]:
    who = caller(request)
    return who, await deps(request).service.get(who, request.path_params["campaign_id"])


# ------------------------------------------------------------------ campaigns


async def list_campaigns(request: Request) -> Response:
    who = caller(request)
    return json_response(CampaignList(campaigns=await deps(request).service.list_campaigns(who)))


async def create_campaign(request: Request) -> Response:
    who = caller(request)
    body = await parse_body(request, CampaignCreate, deps(request).settings.max_body_bytes)
    campaign = await deps(request).service.create(who, body)
    return json_response(CampaignCreated(id=campaign.id, key=campaign.key), status=201)


async def get_campaign(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(await deps(request).service.state(who, campaign))


async def delete_campaign(request: Request) -> Response:
    who = caller(request)
    await deps(request).service.delete(who, request.path_params["campaign_id"])
    return Response(status_code=204)


async def plan_campaign(request: Request) -> Response:
    """The setup calculator (before a campaign exists): MDE and writeback time."""
    caller(request)
    body = await parse_body(request, PlanBody, deps(request).settings.max_body_bytes)
    return json_response(deps(request).service.plan(body))


# ----------------------------------------------------------------- loop steps


async def list_audiences(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(AudienceList(audiences=await deps(request).loop.list_audiences(who, campaign)))


async def start_sync(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    body = await parse_body(request, SyncBody, deps(request).settings.max_body_bytes)
    return json_response(await deps(request).loop.start_sync(who, campaign, body.list_id, body.list_name), 202)


async def start_assignment(request: Request) -> Response:
    _, campaign = await campaign_of(request)
    return json_response(AssignStarted(started=await deps(request).loop.start_assignment(campaign)), 202)


async def retrigger_writeback(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(await deps(request).loop.retrigger_writeback(who, campaign), 202)


async def generate_template(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(await deps(request).loop.generate_template(who, campaign))


async def publish_template(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(await deps(request).loop.publish_template(who, campaign))


async def preview_template(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(await deps(request).loop.preview_template(who, campaign, request.path_params["variant"]))


async def sandbox_send(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    # The body is optional: none means the demo's defaults.
    raw = await read_body(request, deps(request).settings.max_body_bytes)
    options = parse_json(raw, SendBody) if raw.strip() else SendBody()
    return json_response(await deps(request).service.sandbox_send(who, campaign, options))


async def get_readiness(request: Request) -> Response:
    who, campaign = await campaign_of(request)
    return json_response(await deps(request).service.readiness(who, campaign))


async def override_readiness(request: Request) -> Response:
    """Owners only: ready to send although a condition doesn't hold, with the reason."""
    principal = workspace_caller(request, deps(request).settings, request.path_params["workspace_id"])
    if principal.role != Role.OWNER:
        raise ApiError(403, "forbidden", "Only the workspace's Owners can override the readiness gate.")
    who, campaign = await campaign_of(request)
    body = await parse_body(request, OverrideBody, deps(request).settings.max_body_bytes)
    return json_response(await deps(request).service.override_readiness(who, campaign, body.reason))


async def get_results(request: Request) -> Response:
    _, campaign = await campaign_of(request)
    return json_response(await deps(request).service.results(campaign))


# ------------------------------------------------------------------- routing

WS = "/v1/workspaces/{workspace_id}"
CAMPAIGNS = WS + "/campaigns"
CAMPAIGN = CAMPAIGNS + "/{campaign_id}"

ROUTES: list[Route] = [
    Route(CAMPAIGNS, list_campaigns, methods=["GET"]),
    Route(CAMPAIGNS, create_campaign, methods=["POST"]),
    Route(WS + "/campaign-plan", plan_campaign, methods=["POST"]),
    Route(CAMPAIGN, get_campaign, methods=["GET"]),
    Route(CAMPAIGN, delete_campaign, methods=["DELETE"]),
    Route(CAMPAIGN + "/audiences", list_audiences, methods=["GET"]),
    Route(CAMPAIGN + "/sync", start_sync, methods=["POST"]),
    Route(CAMPAIGN + "/assign", start_assignment, methods=["POST"]),
    Route(CAMPAIGN + "/writeback/retrigger", retrigger_writeback, methods=["POST"]),
    Route(CAMPAIGN + "/template/generate", generate_template, methods=["POST"]),
    Route(CAMPAIGN + "/template/publish", publish_template, methods=["POST"]),
    Route(CAMPAIGN + "/template/preview/{variant}", preview_template, methods=["GET"]),
    Route(CAMPAIGN + "/send", sandbox_send, methods=["POST"]),
    Route(CAMPAIGN + "/readiness", get_readiness, methods=["GET"]),
    Route(CAMPAIGN + "/readiness/override", override_readiness, methods=["POST"]),
    Route(CAMPAIGN + "/results", get_results, methods=["GET"]),
]

TAGS = ["experiments"]
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", CAMPAIGNS, "The workspace's campaigns, newest first", response=CampaignList, tags=TAGS),
    Endpoint(
        "POST",
        CAMPAIGNS,
        "Create a campaign (409 key_taken if the workspace has its key)",
        request=CampaignCreate,
        response=CampaignCreated,
        status=201,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        WS + "/campaign-plan",
        "Setup calculator: minimum detectable effect per variant and writeback time at the Iterable budget",
        request=PlanBody,
        response=CampaignPlan,
        tags=TAGS,
    ),
    Endpoint("GET", CAMPAIGN, "A campaign and every step's state, refreshed", response=CampaignState, tags=TAGS),
    Endpoint("DELETE", CAMPAIGN, "Delete a campaign", status=204, tags=TAGS),
    Endpoint(
        "GET", CAMPAIGN + "/audiences", "The connection's Iterable lists and segments", response=AudienceList, tags=TAGS
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/sync",
        "Sync an audience (the audiences service); resets the assignment",
        request=SyncBody,
        response=SyncSection,
        status=202,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/assign",
        "Assign variants and publish them to campaign.assignments (in the background)",
        response=AssignStarted,
        status=202,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/writeback/retrigger",
        "Run the writeback job again (the writeback service; Owners and Admins)",
        response=WritebackJob,
        status=202,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/template/generate",
        "Generate the campaign's template (the templates service)",
        response=TemplateSection,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/template/publish",
        "Publish the template to the connection's Iterable project",
        response=TemplateSection,
        tags=TAGS,
    ),
    Endpoint(
        "GET",
        CAMPAIGN + "/template/preview/{variant}",
        "One variant rendered for a sample profile",
        response=VariantPreview,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/send",
        "Send from the Iterable sandbox (local stacks; body optional)",
        request=SendBody,
        response=SandboxSendSummary,
        tags=TAGS,
    ),
    Endpoint(
        "GET",
        CAMPAIGN + "/readiness",
        "The readiness gate: write coverage, writeback idle, Iterable read-back, settle time",
        response=Readiness,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        CAMPAIGN + "/readiness/override",
        "Owners: ready although a condition doesn't hold, with the reason (recorded)",
        request=OverrideBody,
        response=Readiness,
        tags=TAGS,
    ),
    Endpoint(
        "GET",
        CAMPAIGN + "/results",
        "Unique engagement per variant, lift over the control (fixed-horizon and always-valid, with a"
        " verdict), sample-ratio check",
        response=ResultsTable,
        tags=TAGS,
    ),
]
