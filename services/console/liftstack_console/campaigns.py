"""Campaigns: the console's own MongoDB documents, one per campaign.

A campaign document holds what the marketer set up and how far the loop got:

    _id, workspace_id, key (unique per workspace; the `lf_assignments.<key>` property),
    name, connection_id, list_id, list_name,
    variants: [{name, subject, preheader, html, weight}], control (a variant name),
    sync: {id, status, members, error}                      audience sync (audiences)
    assignment: {status, job_id, total, counts, identity, batch_count, error}
    template: {id, iterable_template_id, status, error}     templates service
    send: {iterable_campaign_id, sent, at}                  the sandbox's "send"
    created_at, updated_at, created_by

Every write is one document (FerretDB has no transactions): `$set` of one section.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

Doc = dict[str, Any]
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    subject: str = Field(min_length=1, max_length=300)
    preheader: str = Field(default="", max_length=300)
    html: str = Field(min_length=1, max_length=200_000)
    weight: float = Field(default=1.0, gt=0, le=1000)


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    key: str = Field(description="Lowercase letters, digits and _; the profile property key.")
    connection_id: str = Field(min_length=1)
    variants: list[Variant] = Field(min_length=2, max_length=10)
    control: str | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        value = value.strip()
        if not KEY_RE.fullmatch(value):
            raise ValueError("use 1-64 lowercase letters, digits or _ (starting with a letter or digit)")
        return value

    @model_validator(mode="after")
    def _variants(self) -> CampaignCreate:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if self.control is None:
            self.control = names[0]
        if self.control not in names:
            raise ValueError("control must be one of the variants")
        return self


class KeyTaken(Exception):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


class CampaignStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._col = db["console_campaigns"]

    async def ensure_indexes(self) -> None:
        await self._col.create_index(
            [("workspace_id", ASCENDING), ("key", ASCENDING)], unique=True, name="ws_key_unique"
        )
        await self._col.create_index(
            [("connection_id", ASCENDING), ("send.iterable_campaign_id", ASCENDING)],
            name="conn_iterable_campaign",
        )
        await self._col.create_index(
            [("connection_id", ASCENDING), ("template.iterable_template_id", ASCENDING)],
            name="conn_iterable_template",
        )

    async def create(self, workspace_id: str, user_id: str, body: CampaignCreate) -> Doc:
        now = utcnow()
        doc: Doc = {
            "_id": "cmp_" + secrets.token_hex(6),
            "workspace_id": workspace_id,
            "key": body.key,
            "name": body.name,
            "connection_id": body.connection_id,
            "variants": [v.model_dump() for v in body.variants],
            "control": body.control,
            "created_at": now,
            "updated_at": now,
            "created_by": user_id,
        }
        try:
            await self._col.insert_one(doc)
        except (DuplicateKeyError, OperationFailure) as exc:
            if isinstance(exc, DuplicateKeyError) or "UNIQUE" in str(exc):
                raise KeyTaken(body.key) from None
            raise
        return doc

    async def get(self, workspace_id: str, campaign_id: str) -> Doc | None:
        return await self._col.find_one({"_id": campaign_id, "workspace_id": workspace_id})

    async def get_by_id(self, campaign_id: str) -> Doc | None:
        return await self._col.find_one({"_id": campaign_id})

    async def list(self, workspace_id: str) -> list[Doc]:
        cursor = self._col.find({"workspace_id": workspace_id}).sort("created_at", -1)
        return [doc async for doc in cursor]

    async def set(self, campaign_id: str, **sections: Any) -> None:
        """Replace whole sections (`sync=...`, `assignment=...`) of one campaign."""
        await self._col.update_one({"_id": campaign_id}, {"$set": {**sections, "updated_at": utcnow()}})

    async def set_if(self, campaign_id: str, condition: Doc, **sections: Any) -> bool:
        """Conditional write: only when `condition` still holds (no lost updates)."""
        result = await self._col.update_one(
            {"_id": campaign_id, **condition}, {"$set": {**sections, "updated_at": utcnow()}}
        )
        return result.matched_count == 1

    async def delete(self, workspace_id: str, campaign_id: str) -> bool:
        result = await self._col.delete_one({"_id": campaign_id, "workspace_id": workspace_id})
        return result.deleted_count == 1

    async def by_iterable_ids(self, connection_id: str, campaign_id: int | None, template_id: int | None) -> Doc | None:
        """The liftstack campaign an Iterable event belongs to: by the Iterable campaign
        the sandbox send created, else by the template liftstack published (what a
        real Iterable campaign built on that template reports)."""
        if campaign_id is not None:
            doc = await self._col.find_one({"connection_id": connection_id, "send.iterable_campaign_id": campaign_id})
            if doc:
                return doc
        if template_id is not None:
            return await self._col.find_one(
                {"connection_id": connection_id, "template.iterable_template_id": template_id}
            )
        return None
