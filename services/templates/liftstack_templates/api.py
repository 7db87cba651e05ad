"""HTTP entry of the templates service.

Routes live under /v1/workspaces/{workspace_id}/templates and need a user JWT whose
workspace is the one in the path (otherwise 404). Owners and Admins generate and
publish; Members may look and preview.

- POST .../generate  TemplateSpec -> GeneratedTemplate (validated, saved)
- POST .../publish   {connection_id, template, force} -> PublishResult
- POST .../preview   {template | campaign_key, profile} -> one rendering per variant
- GET  ...?campaign_key=  the saved spec, generated source and where it is published
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, cast

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_shared.auth import Principal, workspace_caller
from liftstack_shared.errors import ApiError
from liftstack_shared.http import Endpoint, json_response, parse_body
from liftstack_templates.generate import GeneratedTemplate, TemplateSpec
from liftstack_templates.models import PreviewRequest, PreviewResponse, PublishRequest, PublishResult, TemplateRecord
from liftstack_templates.service import TemplateService
from liftstack_templates.settings import TemplatesSettings

BASE = "/v1/workspaces/{workspace_id}/templates"
TAGS = ["templates"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Deps:
    """What the handlers need; built by app.py."""

    settings: TemplatesSettings
    service: TemplateService


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def _caller(request: Request, manage: bool) -> Principal:
    return workspace_caller(request, deps(request).settings, request.path_params["workspace_id"], manage=manage)


async def _body(request: Request, model: type[M]) -> M:
    return await parse_body(request, model, max_bytes=deps(request).settings.max_body_bytes)


async def generate_template(request: Request) -> Response:
    who = _caller(request, manage=True)
    record = await deps(request).service.generate(who, await _body(request, TemplateSpec))
    return json_response(record.generated)


async def publish_template(request: Request) -> Response:
    who = _caller(request, manage=True)
    return json_response(await deps(request).service.publish(who, await _body(request, PublishRequest)))


async def preview_template(request: Request) -> Response:
    who = _caller(request, manage=False)
    return json_response(await deps(request).service.preview(who, await _body(request, PreviewRequest)))


async def get_template(request: Request) -> Response:
    who = _caller(request, manage=False)
    campaign_key = request.query_params.get("campaign_key")
    if not campaign_key:
        raise ApiError(400, "missing_parameter", "campaign_key is required.", field="campaign_key")
    return json_response(await deps(request).service.get(who, campaign_key))


ROUTES: list[Route] = [
    Route(BASE + "/generate", generate_template, methods=["POST"]),
    Route(BASE + "/publish", publish_template, methods=["POST"]),
    Route(BASE + "/preview", preview_template, methods=["POST"]),
    Route(BASE, get_template, methods=["GET"]),
]

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        BASE + "/generate",
        "Validate a campaign's variants and generate its template (Owner/Admin)",
        request=TemplateSpec,
        response=GeneratedTemplate,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        BASE + "/publish",
        "Generate and create/update the campaign's Iterable template (Owner/Admin)",
        request=PublishRequest,
        response=PublishResult,
        tags=TAGS,
    ),
    Endpoint(
        "POST",
        BASE + "/preview",
        "Render the generated template for a sample profile, once per variant and once unassigned",
        request=PreviewRequest,
        response=PreviewResponse,
        tags=TAGS,
    ),
    Endpoint(
        "GET",
        BASE,
        "The saved template of ?campaign_key=",
        response=TemplateRecord,
        tags=TAGS,
        query={"campaign_key": ({"type": "string"}, True)},
    ),
]
