"""The `templates` collection: one document per (workspace, campaign) holding the
spec, the generated source and where it was published.

No transactions (FerretDB has none): every write is a single-document upsert keyed by
(workspace_id, campaign_key), which a unique index enforces.

FerretDB also rewrites a whole document on every update without checking it is
unchanged (liftstack_shared.mongo), so two overlapping updates of one campaign's
document could lose one entirely (a publish's `template_id` overwritten by a
concurrent re-generate's stale copy, or the new spec by a publish's). Every write of
a document therefore goes through this store's `SingleWriter`: one at a time per
campaign in this process. The templates service runs as ONE instance: this and the
publisher's per-campaign lock (publish.py) are per process.

Document fields:
    workspace_id, campaign_key, spec_json (the input, as JSON text: block names may
    hold dots, which field names should not), name, subject, preheader, html,
    content_hash, generated_at, generated_by, client_template_id,
    connection_id, template_id (the Iterable template we own, once known),
    published_hash, published_at (what that template last received)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from liftstack_shared.mongo import SingleWriter, is_duplicate_key
from liftstack_templates.generate import GeneratedTemplate, TemplateSpec
from liftstack_templates.models import TemplateRecord

COLLECTION = "templates"


def _now() -> datetime:
    return datetime.now(UTC)


class TemplateStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._col: AsyncCollection = db[COLLECTION]
        self._writer = SingleWriter()

    async def ensure_indexes(self) -> None:
        await self._col.create_index(
            [("workspace_id", ASCENDING), ("campaign_key", ASCENDING)],
            unique=True,
            name="workspace_campaign_unique",
        )

    async def get(self, workspace_id: str, campaign_key: str) -> TemplateRecord | None:
        doc = await self._col.find_one({"workspace_id": workspace_id, "campaign_key": campaign_key})
        return _record(doc) if doc else None

    async def save_generated(
        self,
        workspace_id: str,
        spec: TemplateSpec,
        generated: GeneratedTemplate,
        client_template_id: str,
        user_id: str | None,
    ) -> TemplateRecord:
        """Keep the spec and its generated source; where it is published is untouched."""
        changes: dict[str, Any] = {
            "spec_json": spec.model_dump_json(),
            "name": generated.name,
            "subject": generated.subject,
            "preheader": generated.preheader,
            "html": generated.html,
            "content_hash": generated.content_hash,
            "generated_at": _now(),
            "generated_by": user_id,
            "client_template_id": client_template_id,
        }
        await self._upsert(workspace_id, spec.campaign_key, changes)
        record = await self.get(workspace_id, spec.campaign_key)
        assert record is not None
        return record

    async def set_target(self, workspace_id: str, campaign_key: str, connection_id: str, template_id: int) -> None:
        """The Iterable template this campaign owns from now on. What it last received
        is unknown until `mark_published`."""
        await self._update(
            workspace_id,
            campaign_key,
            {
                "connection_id": connection_id,
                "template_id": template_id,
                "published_hash": None,
                "published_at": None,
            },
        )

    async def mark_published(self, workspace_id: str, campaign_key: str, content_hash: str) -> None:
        await self._update(
            workspace_id,
            campaign_key,
            {
                "published_hash": content_hash,
                "published_at": _now(),
            },
        )

    async def _upsert(self, workspace_id: str, campaign_key: str, changes: dict[str, Any]) -> None:
        key = {"workspace_id": workspace_id, "campaign_key": campaign_key}

        async def write() -> None:
            try:
                await self._col.update_one(key, {"$set": changes}, upsert=True)
            except (DuplicateKeyError, OperationFailure) as exc:
                if not is_duplicate_key(exc):
                    raise
                # Another process's upsert inserted the document first: now it exists.
                await self._col.update_one(key, {"$set": changes})

        await self._writer.run((workspace_id, campaign_key), write)

    async def _update(self, workspace_id: str, campaign_key: str, changes: dict[str, Any]) -> None:
        # Only after save_generated: a document without a spec must never appear.
        result = await self._writer.run(
            (workspace_id, campaign_key),
            lambda: self._col.update_one(
                {"workspace_id": workspace_id, "campaign_key": campaign_key}, {"$set": changes}
            ),
        )
        if result.matched_count != 1:
            raise LookupError(f"no template saved for campaign {campaign_key!r}")


def _record(doc: dict[str, Any]) -> TemplateRecord:
    return TemplateRecord(
        workspace_id=doc["workspace_id"],
        campaign_key=doc["campaign_key"],
        spec=TemplateSpec.model_validate_json(doc["spec_json"]),
        generated=GeneratedTemplate(
            campaign_key=doc["campaign_key"],
            name=doc["name"],
            subject=doc["subject"],
            preheader=doc["preheader"],
            html=doc["html"],
            content_hash=doc["content_hash"],
        ),
        generated_at=doc["generated_at"],
        generated_by=doc.get("generated_by"),
        client_template_id=doc["client_template_id"],
        connection_id=doc.get("connection_id"),
        template_id=doc.get("template_id"),
        published_hash=doc.get("published_hash"),
        published_at=doc.get("published_at"),
    )
