"""The templates service's use cases, independent of HTTP: generate (and save) a
campaign's template, publish it to a connection's Iterable project, preview it for a
sample profile, and read what is saved."""

from __future__ import annotations

import copy
import logging
from typing import Any

from liftstack_shared.auth import Principal
from liftstack_shared.credentials import (
    ConnectionNotFound,
    CredentialsSource,
    CredentialsUnavailable,
    IterableCredentials,
)
from liftstack_shared.errors import ApiError
from liftstack_shared.handlebars import HandlebarsError, HandlebarsRenderer
from liftstack_shared.iterable import IterableAuthError, IterableError, IterableRateLimited, IterableUnavailable
from liftstack_templates.generate import (
    ASSIGNMENTS_FIELD,
    ContentError,
    GeneratedTemplate,
    TemplateSpec,
    client_template_id,
    generate,
)
from liftstack_templates.models import (
    PreviewRequest,
    PreviewResponse,
    PublishRequest,
    PublishResult,
    TemplateRecord,
    VariantPreview,
)
from liftstack_templates.publish import Publisher
from liftstack_templates.store import TemplateStore

log = logging.getLogger(__name__)


def no_saved_template(field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", "No template saved for this campaign.", field=field)


class TemplateService:
    def __init__(
        self,
        store: TemplateStore,
        renderer: HandlebarsRenderer,
        publisher: Publisher,
        credentials: CredentialsSource,
    ) -> None:
        self._store = store
        self._renderer = renderer
        self._publisher = publisher
        self._credentials = credentials

    async def generate(self, who: Principal, spec: TemplateSpec) -> TemplateRecord:
        """Validate and generate the template, and save both spec and source."""
        generated = await self._generated(spec)
        return await self._store.save_generated(
            who.workspace_id,
            spec,
            generated,
            client_template_id(who.workspace_id, spec.campaign_key),
            who.user_id,
        )

    async def publish(self, who: Principal, request: PublishRequest) -> PublishResult:
        creds = await self._credentials_for(who, request.connection_id)
        record = await self.generate(who, request.template)
        try:
            result = await self._publisher.publish(record, creds, force=request.force)
        except IterableAuthError as exc:
            # The key may have been replaced since it was cached: ask again next time.
            self._credentials.invalidate(request.connection_id)
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
        return result

    async def preview(self, who: Principal, request: PreviewRequest) -> PreviewResponse:
        """One rendering per assignment (the control first, then the variants in key
        order) and one for a recipient with no assignment."""
        if request.template is not None:
            spec, generated = request.template, await self._generated(request.template)
        else:
            assert request.campaign_key is not None  # PreviewRequest wants one of them
            record = await self._store.get(who.workspace_id, request.campaign_key)
            if record is None:
                raise no_saved_template(field="campaign_key")
            spec, generated = record.spec, record.generated
        assignments: list[str | None] = [spec.control]
        assignments += sorted(v.key for v in spec.variants if v.key != spec.control)
        assignments.append(None)
        return PreviewResponse(
            campaign_key=spec.campaign_key,
            content_hash=generated.content_hash,
            previews=[await self._preview(generated, request.profile, variant) for variant in assignments],
        )

    async def get(self, who: Principal, campaign_key: str) -> TemplateRecord:
        record = await self._store.get(who.workspace_id, campaign_key)
        if record is None:
            raise no_saved_template()
        return record

    async def _generated(self, spec: TemplateSpec) -> GeneratedTemplate:
        try:
            return await generate(spec, self._renderer)
        except ContentError as exc:
            raise ApiError(
                422,
                "invalid_template",
                str(exc),
                extra={
                    "problems": [{"variant": p.variant, "part": p.part, "message": p.message} for p in exc.problems]
                },
            ) from None

    async def _credentials_for(self, who: Principal, connection_id: str) -> IterableCredentials:
        try:
            return await self._credentials.get(who.workspace_id, connection_id)
        except ConnectionNotFound:
            # Also another workspace's connection: the same answer, no probing.
            raise ApiError(404, "connection_not_found", "No such connection.", field="connection_id") from None
        except CredentialsUnavailable:
            raise ApiError(
                503, "connections_unavailable", "The connections service did not answer; try again."
            ) from None

    async def _preview(
        self, generated: GeneratedTemplate, profile: dict[str, Any], variant: str | None
    ) -> VariantPreview:
        """`generated` rendered for `profile` assigned `variant` (None: unassigned)."""
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
            out.subject = await self._renderer.render(generated.subject, context)
            out.preheader = await self._renderer.render(generated.preheader, context)
            out.html = await self._renderer.render(generated.html, context)
        except HandlebarsError as exc:
            out.error = str(exc)
        return out
