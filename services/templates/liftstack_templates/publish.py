"""Putting a generated template into the customer's Iterable project, touching no
other template.

Iterable's `templates/email/upsert` updates EVERY template that matches, and its spec
says in one place that it matches by clientTemplateId, in another by name. So:
- the first time, upsert with a clientTemplateId derived from (workspace, campaign)
  and a name equal to it (no template of the customer's can match either), look the
  new template up by clientTemplateId, and remember its templateId;
- from then on, and to set the real name and content, only `templates/email/update`
  by that templateId.
Iterable applies writes eventually: right after the upsert, getByClientTemplateId
may not list the new template yet, and email/get (and so update) may answer it as
unknown (404, or 400 for update) for a few seconds. Both are retried with bounded
backoff (`liftstack_shared.retry.backoff`: LOOKUP_ATTEMPTS tries, 0.2 s doubling,
about 7 s in all) before giving up.
Unchanged content (same hash as last published to the same template) makes no call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying

from liftstack_shared.credentials import IterableCredentials
from liftstack_shared.iterable import (
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    IterableBadRequest,
    IterableClient,
    IterableNotFound,
)
from liftstack_shared.retry import backoff
from liftstack_templates.generate import GeneratedTemplate
from liftstack_templates.models import PublishResult, PublishStatus, TemplateRecord
from liftstack_templates.store import TemplateStore

log = logging.getLogger(__name__)

ClientFactory = Callable[[IterableCredentials], IterableClient]
Sleep = Callable[[float], Awaitable[None]]

# Right after an upsert, getByClientTemplateId may not list the new template and
# email/get/update may not find it yet (eventual consistency): this many tries, waiting
# 0.2 s doubling (plus up to 0.2 s jitter) between them, about 7 s in all.
LOOKUP_ATTEMPTS = 6
LOOKUP_FIRST_S = 0.2
LOOKUP_MAX_S = 4.0
# What the tries add up to at most, for error messages.
LOOKUP_BOUND_S = sum(min(LOOKUP_FIRST_S * 2**i + LOOKUP_FIRST_S, LOOKUP_MAX_S) for i in range(LOOKUP_ATTEMPTS - 1))


class TemplateCreationFailed(Exception):
    """Iterable accepted the upsert but the template can't be found by its id."""


class _NotVisibleYet(Exception):
    """Iterable does not list, or let us read, a template just created (yet)."""


class Publisher:
    def __init__(self, store: TemplateStore, clients: ClientFactory, sleep: Sleep = asyncio.sleep) -> None:
        self._store = store
        self._clients = clients
        self._sleep = sleep
        # One publish per campaign at a time in this process, so two concurrent
        # first publishes can't both create a template. Per process: the templates
        # service runs as one instance (store.py).
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def publish(
        self, record: TemplateRecord, credentials: IterableCredentials, force: bool = False
    ) -> PublishResult:
        """Publish `record.generated` (already saved) to the connection's project."""
        key = (record.workspace_id, record.campaign_key)
        async with self._locks.setdefault(key, asyncio.Lock()):
            # Re-read under the lock: another publish may have just finished.
            current = await self._store.get(*key) or record
            return await self._publish(current, record.generated, credentials, force)

    async def _publish(
        self,
        record: TemplateRecord,
        generated: GeneratedTemplate,
        creds: IterableCredentials,
        force: bool,
    ) -> PublishResult:
        ours = record.template_id if record.connection_id == creds.connection_id else None

        def result(template_id: int, status: PublishStatus) -> PublishResult:
            return PublishResult(
                campaign_key=record.campaign_key,
                connection_id=creds.connection_id,
                template_id=template_id,
                client_template_id=record.client_template_id,
                status=status,
                content_hash=generated.content_hash,
            )

        if ours is not None and record.published_hash == generated.content_hash and not force:
            return result(ours, PublishStatus.UNCHANGED)

        async with self._clients(creds) as client:
            status = PublishStatus.UPDATED
            if ours is not None and not await self._update(client, ours, record, generated):
                log.warning(
                    "template %s of campaign %r is gone from Iterable; creating it again",
                    ours,
                    record.campaign_key,
                )
                ours = None
            if ours is None:
                ours, created = await self._find_or_create(client, record.client_template_id)
                await self._store.set_target(record.workspace_id, record.campaign_key, creds.connection_id, ours)
                status = PublishStatus.CREATED if created else PublishStatus.UPDATED
                if not await self._update_when_visible(client, ours, record, generated):
                    raise TemplateCreationFailed(
                        f"Iterable template {ours} was listed by getByClientTemplateId but"
                        f" could not be read or updated within {LOOKUP_BOUND_S:.0f}s"
                    )
        await self._store.mark_published(record.workspace_id, record.campaign_key, generated.content_hash)
        return result(ours, status)

    async def _update(
        self,
        client: IterableClient,
        template_id: int,
        record: TemplateRecord,
        generated: GeneratedTemplate,
    ) -> bool:
        """False when the template no longer exists (deleted in Iterable)."""
        update = EmailTemplateUpdate(
            templateId=template_id,
            clientTemplateId=record.client_template_id,
            name=generated.name,
            subject=generated.subject,
            preheaderText=generated.preheader,
            html=generated.html,
        )
        try:
            await client.update_email_template(update)
            return True
        except (IterableBadRequest, IterableNotFound):
            # Iterable answers an unknown templateId with 400 (or 404): tell that
            # apart from a body it rejects by asking for the template itself.
            if await self._exists(client, template_id):
                raise
            return False

    async def _update_when_visible(
        self,
        client: IterableClient,
        template_id: int,
        record: TemplateRecord,
        generated: GeneratedTemplate,
    ) -> bool:
        """`_update` of a template just created or found, retried (bounded) while
        Iterable does not let us read it yet."""
        try:
            async for attempt in self._lookup_retries():
                with attempt:
                    if not await self._update(client, template_id, record, generated):
                        raise _NotVisibleYet
                    retries = attempt.retry_state.attempt_number - 1
                    if retries:
                        log.info("template %s became readable after %d retries", template_id, retries)
                    return True
        except _NotVisibleYet:
            pass
        return False

    def _lookup_retries(self) -> AsyncRetrying:
        retrying = backoff(
            attempts=LOOKUP_ATTEMPTS, first_s=LOOKUP_FIRST_S, max_s=LOOKUP_MAX_S, retry_on=(_NotVisibleYet,)
        )
        return retrying.copy(sleep=self._sleep)

    @staticmethod
    async def _exists(client: IterableClient, template_id: int) -> bool:
        try:
            await client.get_email_template(template_id)
            return True
        except (IterableBadRequest, IterableNotFound):
            return False

    async def _find_or_create(self, client: IterableClient, client_template_id: str) -> tuple[int, bool]:
        """Our template's id, and whether it was created now. One may already exist
        when an earlier publish created it but stopped before remembering its id."""
        entries = await client.get_templates_by_client_template_id(client_template_id)
        if entries:
            return min(e.templateId for e in entries), False
        answer = await client.upsert_email_template(
            # Named after the clientTemplateId, which no customer template is, so an
            # upsert that matches by name can't hit one either.
            EmailTemplateUpsert(clientTemplateId=client_template_id, name=client_template_id)
        )
        try:
            async for attempt in self._lookup_retries():
                with attempt:
                    entries = await client.get_templates_by_client_template_id(client_template_id)
                    if not entries:
                        raise _NotVisibleYet
                    # Two processes racing may each have created one: all pick the lowest.
                    return min(e.templateId for e in entries), True
        except _NotVisibleYet:
            pass
        raise TemplateCreationFailed(
            f"Iterable created template(s) {answer.ids_in_msg() or '?'} for "
            f"{client_template_id} but getByClientTemplateId does not list them"
        )
