"""HTTP API of the templates service.

Routes live under /v1/workspaces/{workspace_id}/templates and need a user JWT whose
workspace is the one in the path (otherwise 404). Owners and Admins generate and
publish; Members may look and preview.

- POST .../generate  TemplateSpec -> GeneratedTemplate (validated, saved)
- POST .../publish   {connection_id, template, force} -> PublishResult
- POST .../preview   {template | campaign_key, profile} -> one rendering per variant
- GET  ...?campaign_key=  the saved spec, generated source and where it is published
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, model_validator
from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_shared.auth import Principal, principal_from_request, require_manager
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import (
    ConnectionNotFound,
    ConnectionsServiceCredentials,
    CredentialsSource,
    CredentialsUnavailable,
    IterableCredentials,
)
from liftstack_shared.errors import ApiError
from liftstack_shared.handlebars import HandlebarsError, HandlebarsRenderer
from liftstack_shared.http import (
    EXCEPTION_HANDLERS,
    Endpoint,
    json_response,
    parse_body,
    service_middleware,
    standard_routes,
)
from liftstack_shared.iterable import (
    IterableAuthError,
    IterableClient,
    IterableError,
    IterableRateLimited,
    IterableUnavailable,
)
from liftstack_shared.mongo import database, make_mongo_client, mongo_ready
from liftstack_templates.generate import (
    ASSIGNMENTS_FIELD,
    ContentError,
    GeneratedTemplate,
    TemplateSpec,
    client_template_id,
    generate,
)
from liftstack_templates.publish import ClientFactory, Publisher, PublishResult
from liftstack_templates.settings import TemplatesSettings
from liftstack_templates.store import TemplateRecord, TemplateStore

log = logging.getLogger(__name__)

BASE = "/v1/workspaces/{workspace_id}/templates"
TAGS = ["templates"]


class PublishRequest(BaseModel):
    connection_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")
    template: TemplateSpec
    force: bool = Field(default=False, description="Write even if the content is unchanged")


class PreviewRequest(BaseModel):
    template: TemplateSpec | None = Field(default=None, description="Preview this spec")
    campaign_key: str | None = Field(default=None, description="Or the saved one")
    profile: dict[str, Any] = Field(default_factory=dict, description="Sample profile fields")

    @model_validator(mode="after")
    def _one_source(self) -> PreviewRequest:
        if (self.template is None) == (self.campaign_key is None):
            raise ValueError("give either template or campaign_key")
        return self


class VariantPreview(BaseModel):
    variant: str | None = Field(description="The assignment rendered; None: no assignment")
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    error: str | None = Field(default=None, description="Why this recipient's send would fail")


class PreviewResponse(BaseModel):
    campaign_key: str
    content_hash: str
    previews: list[VariantPreview]


ENDPOINTS = [
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


@dataclass
class _State:
    renderer: HandlebarsRenderer | None = None
    store: TemplateStore | None = None
    publisher: Publisher | None = None


def create_app(
    settings: TemplatesSettings,
    *,
    credentials: CredentialsSource | None = None,
    iterable_clients: ClientFactory | None = None,
    mongo: AsyncMongoClient | None = None,
) -> Starlette:
    """`credentials`: where connection credentials come from (default: the connections
    service). `iterable_clients`: builds the Iterable client for a connection (default:
    from settings, which may point at the sandbox)."""
    state = _State()
    mongo_client = mongo or make_mongo_client(settings)
    creds_source = credentials or ConnectionsServiceCredentials(ConnectionsClient(settings))

    def default_clients(creds: IterableCredentials) -> IterableClient:
        return IterableClient.from_settings(settings, creds.api_key, creds.region)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = TemplateStore(database(mongo_client, settings))
        await store.ensure_indexes()
        async with HandlebarsRenderer(settings.handlebars_dir) as renderer:
            state.renderer = renderer
            state.store = store
            state.publisher = Publisher(store, iterable_clients or default_clients)
            try:
                yield
            finally:
                await creds_source.aclose()
                if mongo is None:
                    await mongo_client.close()

    def ready() -> tuple[HandlebarsRenderer, TemplateStore, Publisher]:
        assert state.renderer and state.store and state.publisher, "lifespan not started"
        return state.renderer, state.store, state.publisher

    def caller(request: Request, manage: bool) -> Principal:
        who = principal_from_request(request, settings)
        if who.workspace_id != request.path_params["workspace_id"]:
            raise ApiError(404, "not_found", "Not found.")
        if manage:
            require_manager(who)
        return who

    async def body(request: Request, model: type[Any]) -> Any:
        return await parse_body(request, model, max_bytes=settings.max_body_bytes)

    async def generated_for(spec: TemplateSpec) -> GeneratedTemplate:
        renderer, _, _ = ready()
        try:
            return await generate(spec, renderer)
        except ContentError as exc:
            raise ApiError(
                422,
                "invalid_template",
                str(exc),
                extra={
                    "problems": [{"variant": p.variant, "part": p.part, "message": p.message} for p in exc.problems]
                },
            ) from None

    async def save(who: Principal, spec: TemplateSpec) -> TemplateRecord:
        _, store, _ = ready()
        generated = await generated_for(spec)
        return await store.save_generated(
            who.workspace_id,
            spec,
            generated,
            client_template_id(who.workspace_id, spec.campaign_key),
            who.user_id,
        )

    async def generate_route(request: Request) -> Response:
        who = caller(request, manage=True)
        record = await save(who, await body(request, TemplateSpec))
        return json_response(record.generated)

    async def publish_route(request: Request) -> Response:
        who = caller(request, manage=True)
        req: PublishRequest = await body(request, PublishRequest)
        creds = await credentials_for(who, req.connection_id)
        record = await save(who, req.template)
        _, _, publisher = ready()
        try:
            result = await publisher.publish(record, creds, force=req.force)
        except IterableAuthError as exc:
            # The key may have been replaced since it was cached: ask again next time.
            creds_source.invalidate(req.connection_id)
            raise ApiError(
                422,
                "iterable_auth",
                f"Iterable rejected the connection's API key: {exc.message}. Check the "
                "connection (a server-side key is needed to write templates).",
            ) from None
        except (IterableUnavailable, IterableRateLimited) as exc:
            raise ApiError(503, "iterable_unavailable", f"Iterable is unavailable: {exc}") from None
        except IterableError as exc:
            raise ApiError(502, "iterable_error", f"Iterable refused the template: {exc}") from None
        log.info(
            "campaign %r of workspace %s published to template %s (%s)",
            record.campaign_key,
            who.workspace_id,
            result.template_id,
            result.status,
        )
        return json_response(result)

    async def credentials_for(who: Principal, connection_id: str) -> IterableCredentials:
        try:
            return await creds_source.get(who.workspace_id, connection_id)
        except ConnectionNotFound:
            # Also another workspace's connection: the same answer, no probing.
            raise ApiError(404, "connection_not_found", "No such connection.", field="connection_id") from None
        except CredentialsUnavailable:
            raise ApiError(
                503, "connections_unavailable", "The connections service did not answer; try again."
            ) from None

    async def preview_route(request: Request) -> Response:
        who = caller(request, manage=False)
        req: PreviewRequest = await body(request, PreviewRequest)
        renderer, store, _ = ready()
        if req.template is not None:
            spec, generated = req.template, await generated_for(req.template)
        else:
            assert req.campaign_key is not None
            record = await store.get(who.workspace_id, req.campaign_key)
            if record is None:
                raise ApiError(404, "not_found", "No template saved for this campaign.", field="campaign_key")
            spec, generated = record.spec, record.generated
        assignments: list[str | None] = [spec.control]
        assignments += sorted(v.key for v in spec.variants if v.key != spec.control)
        assignments.append(None)
        previews = [await _preview(renderer, generated, req.profile, variant) for variant in assignments]
        return json_response(
            PreviewResponse(
                campaign_key=spec.campaign_key,
                content_hash=generated.content_hash,
                previews=previews,
            )
        )

    async def get_route(request: Request) -> Response:
        who = caller(request, manage=False)
        campaign_key = request.query_params.get("campaign_key")
        if not campaign_key:
            raise ApiError(400, "missing_parameter", "campaign_key is required.", field="campaign_key")
        _, store, _ = ready()
        record = await store.get(who.workspace_id, campaign_key)
        if record is None:
            raise ApiError(404, "not_found", "No template saved for this campaign.")
        return json_response(record)

    async def renderer_check() -> None:
        renderer, _, _ = ready()
        await renderer.parse("{{ok}}")

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "mongo": lambda: mongo_ready(mongo_client),
        "handlebars": renderer_check,
    }
    routes = [
        Route(BASE + "/generate", generate_route, methods=["POST"]),
        Route(BASE + "/publish", publish_route, methods=["POST"]),
        Route(BASE + "/preview", preview_route, methods=["POST"]),
        Route(BASE, get_route, methods=["GET"]),
        *standard_routes("templates", ENDPOINTS, checks),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, middleware=service_middleware(settings), exception_handlers=EXCEPTION_HANDLERS
    )


async def _preview(
    renderer: HandlebarsRenderer,
    generated: GeneratedTemplate,
    profile: dict[str, Any],
    variant: str | None,
) -> VariantPreview:
    context = copy.deepcopy(profile)
    assignments = context.get(ASSIGNMENTS_FIELD)
    assignments = dict(assignments) if isinstance(assignments, dict) else {}
    if variant is None:
        assignments.pop(generated.campaign_key, None)
    else:
        assignments[generated.campaign_key] = variant
    context[ASSIGNMENTS_FIELD] = assignments
    out = VariantPreview(variant=variant)
    try:
        out.subject = await renderer.render(generated.subject, context)
        out.preheader = await renderer.render(generated.preheader, context)
        out.html = await renderer.render(generated.html, context)
    except HandlebarsError as exc:
        out.error = str(exc)
    return out
