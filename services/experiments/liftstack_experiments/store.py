"""All of the experiments service's MongoDB access, in its own database
(`ExperimentsSettings.experiments_db`).

FerretDB's rules (liftstack_shared.mongo): no transactions, and concurrent updates
of one document don't combine reliably. So a campaign is written one section at a
time with one `$set`, and results are insert-once documents that counts are derived
from (no counters).

- `campaigns`: one document per campaign (campaigns.py), `_id` = campaign id.
- `result_events`: `_id` = event id; dedupes re-delivered and re-sent webhooks
  (ingest derives the id from the content) and keeps the raw facts.
- `result_engaged`: `_id` = campaign|type|recipient; one document per unique
  recipient and event type. Counts are aggregations over it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from liftstack_experiments.campaigns import Campaign, CampaignCreate
from liftstack_experiments.results import Attribution, Exposure
from liftstack_shared.messages import EngagementEvent
from liftstack_shared.mongo import insert_once, is_duplicate_key

Doc = dict[str, Any]


class KeyTaken(Exception):
    """A campaign of the workspace already has this key."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _campaign(doc: Doc | None) -> Campaign | None:
    if doc is None:
        return None
    return Campaign.model_validate({**doc, "id": doc["_id"]})


def _section(value: BaseModel | None) -> Doc | None:
    return None if value is None else value.model_dump()


class CampaignStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._col = db["campaigns"]

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

    async def create(self, workspace_id: str, user_id: str, body: CampaignCreate) -> Campaign:
        now = utcnow()
        campaign = Campaign(
            id="cmp_" + secrets.token_hex(6),
            workspace_id=workspace_id,
            key=body.key,
            name=body.name,
            connection_id=body.connection_id,
            variants=body.variants,
            control=body.control or body.variants[0].name,
            readiness_threshold=body.readiness_threshold,
            created_at=now,
            updated_at=now,
            created_by=user_id,
        )
        doc = campaign.model_dump(exclude={"id"})
        try:
            await self._col.insert_one({"_id": campaign.id, **doc})
        except (DuplicateKeyError, OperationFailure) as exc:
            if is_duplicate_key(exc):
                raise KeyTaken(body.key) from None
            raise
        return campaign

    async def get(self, workspace_id: str, campaign_id: str) -> Campaign | None:
        return _campaign(await self._col.find_one({"_id": campaign_id, "workspace_id": workspace_id}))

    async def get_by_id(self, campaign_id: str) -> Campaign | None:
        return _campaign(await self._col.find_one({"_id": campaign_id}))

    async def in_workspace(self, workspace_id: str) -> list[Campaign]:
        cursor = self._col.find({"workspace_id": workspace_id}).sort("created_at", -1)
        return [Campaign.model_validate({**doc, "id": doc["_id"]}) async for doc in cursor]

    async def set_sections(self, campaign_id: str, **sections: BaseModel | None) -> None:
        """Replace whole sections (`sync=...`, `assignment=...`) of one campaign."""
        values = {name: _section(value) for name, value in sections.items()}
        await self._col.update_one({"_id": campaign_id}, {"$set": {**values, "updated_at": utcnow()}})

    async def claim_assignment(self, campaign_id: str, running: BaseModel) -> bool:
        """Set the assignment section to `running` unless it is running or done
        already, so two clicks don't start two runs. (One writer per campaign in
        practice: a duplicate run would publish the same job id, which writeback
        dedupes.)"""
        result = await self._col.update_one(
            {"_id": campaign_id, "assignment.status": {"$nin": ["running", "completed"]}},
            {"$set": {"assignment": _section(running), "updated_at": utcnow()}},
        )
        return result.matched_count == 1

    async def delete(self, workspace_id: str, campaign_id: str) -> bool:
        result = await self._col.delete_one({"_id": campaign_id, "workspace_id": workspace_id})
        return result.deleted_count == 1

    async def by_iterable_ids(
        self, connection_id: str, campaign_id: int | None, template_id: int | None
    ) -> Campaign | None:
        """The liftstack campaign an Iterable event belongs to: by the Iterable campaign
        the sandbox send created, else by the template liftstack published (what a
        real Iterable campaign built on that template reports)."""
        if campaign_id is not None:
            doc = await self._col.find_one({"connection_id": connection_id, "send.iterable_campaign_id": campaign_id})
            if doc:
                return _campaign(doc)
        if template_id is not None:
            return _campaign(
                await self._col.find_one({"connection_id": connection_id, "template.iterable_template_id": template_id})
            )
        return None


class ResultsStore:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.events = db["result_events"]
        self.engaged = db["result_engaged"]
        self.exposures = db["result_exposures"]
        self.not_written = db["result_not_written"]

    async def ensure_indexes(self) -> None:
        await self.engaged.create_index(
            [("campaign_id", ASCENDING), ("variant", ASCENDING), ("type", ASCENDING)],
            name="campaign_variant_type",
        )
        await self.events.create_index([("campaign_id", ASCENDING)], name="campaign")
        await self.not_written.create_index([("campaign_id", ASCENDING)], name="campaign")

    async def write(self, rows: list[tuple[EngagementEvent, Attribution | None]]) -> None:
        """Store each event once, and each attributed one as "this recipient did this"."""
        engaged: list[Doc] = []
        events: list[Doc] = []
        for event, attribution in rows:
            event_type = str(event.event_type)
            events.append(
                {
                    "_id": event.event_id,
                    "connection_id": event.connection_id,
                    "type": event_type,
                    "email": event.email,
                    "user_id": event.user_id,
                    "iterable_campaign_id": event.campaign_id,
                    "occurred_at": event.occurred_at,
                    "campaign_id": attribution.campaign_id if attribution else None,
                    "variant": attribution.variant if attribution else None,
                }
            )
            if attribution is not None:
                # Insert-once by a natural id: the first event of a recipient and type
                # wins, and on FerretDB an insert is far cheaper than an upsert.
                engaged.append(
                    {
                        "_id": attribution.engaged_id(event_type),
                        "campaign_id": attribution.campaign_id,
                        "variant": attribution.variant,
                        "type": event_type,
                        "recipient": attribution.recipient,
                        "first_at": event.occurred_at,
                    }
                )
        # Engaged first: if we crash before the event ids are stored, the re-delivered
        # batch repeats these inserts harmlessly. A re-sent event (same event_id) finds
        # its `result_events` document and its `result_engaged` one: counted once.
        await insert_once(self.engaged, engaged)
        await insert_once(self.events, events)

    async def counts(self, campaign_id: str) -> dict[tuple[str, str], int]:
        """(variant, type) -> unique recipients."""
        out: dict[tuple[str, str], int] = {}
        pipeline: list[Doc] = [
            {"$match": {"campaign_id": campaign_id}},
            {"$group": {"_id": {"v": "$variant", "t": "$type"}, "n": {"$sum": 1}}},
        ]
        async for row in await self.engaged.aggregate(pipeline):
            out[(row["_id"]["v"], row["_id"]["t"])] = row["n"]
        return out

    async def save_exposure(self, campaign_id: str, exposure: Exposure) -> None:
        """The latest send's record of who received what: the counts in one document
        (`_id` = campaign), the not-written recipients one document each. Written
        before the counts, so a reader sees either the old counts or complete
        recipients for the new ones."""
        await self.not_written.delete_many({"campaign_id": campaign_id})
        await insert_once(
            self.not_written,
            [
                {"_id": f"{campaign_id}|{recipient}", "campaign_id": campaign_id, "recipient": recipient}
                for recipient in exposure.not_written_recipients
            ],
        )
        await self.exposures.replace_one(
            {"_id": campaign_id},
            {"_id": campaign_id, **exposure.model_dump(), "at": datetime.now(UTC)},
            upsert=True,
        )

    async def exposure(self, campaign_id: str) -> Exposure | None:
        doc = await self.exposures.find_one({"_id": campaign_id})
        if doc is None:
            return None
        recipients = [d["recipient"] async for d in self.not_written.find({"campaign_id": campaign_id})]
        return Exposure(exposed=doc["exposed"], not_written=doc["not_written"], not_written_recipients=recipients)

    async def counts_of(self, campaign_id: str, recipients: list[str]) -> dict[tuple[str, str], int]:
        """(variant, type) -> unique recipients, of these recipients only."""
        out: dict[tuple[str, str], int] = {}
        for start in range(0, len(recipients), 1000):
            pipeline: list[Doc] = [
                {"$match": {"campaign_id": campaign_id, "recipient": {"$in": recipients[start : start + 1000]}}},
                {"$group": {"_id": {"v": "$variant", "t": "$type"}, "n": {"$sum": 1}}},
            ]
            async for row in await self.engaged.aggregate(pipeline):
                key = (row["_id"]["v"], row["_id"]["t"])
                out[key] = out.get(key, 0) + row["n"]
        return out

    async def event_total(self, campaign_id: str) -> int:
        return await self.events.count_documents({"campaign_id": campaign_id})
