"""Results: count engagement per campaign and variant from `engagement.events`.

The counter runs on the shared consumer runtime (`liftstack_shared.consumer`, group
`console-results`): offsets are committed only after a batch is written or its poison
message dead-lettered (to `engagement.events.deadletter`), so a crash re-delivers and
the writes must be idempotent. Two insert-once writes per event
(`liftstack_shared.mongo.insert_once`; FerretDB: no transactions):

1. `console_events`, `_id` = event id: dedupes re-delivered and retried webhooks
   (ingest derives the id from the content) and keeps the raw facts;
2. `console_engaged`, `_id` = campaign|type|recipient, `$setOnInsert`: one document
   per unique recipient and event type. Counts are `count_documents` over it, so
   there are no counters that a crash could leave half-incremented.

Attribution: the event's Iterable campaignId (or templateId) maps to the liftstack
campaign; the recipient's variant is recomputed with the same deterministic hash the
assignment used (assign.py), from the same identity (email, or `userId:<id>` for
userId audiences). Nothing per recipient has to be stored at assignment time, and
the answer is the variant that was written into the profile.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from liftstack_console.assign import assign_variant
from liftstack_console.campaigns import CampaignStore, Doc
from liftstack_console.stats import Lift, lift_over_control, rate, sample_ratio_check
from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy
from liftstack_shared.messages import EngagementEvent, EventType
from liftstack_shared.mongo import insert_once
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS

log = logging.getLogger(__name__)

# What the results table shows, in order; rates are per send.
METRICS: tuple[tuple[EventType, str], ...] = (
    (EventType.SEND, "Sends"),
    (EventType.OPEN, "Unique opens"),
    (EventType.CLICK, "Unique clicks"),
    (EventType.CONVERSION, "Conversions"),
    (EventType.UNSUBSCRIBE, "Unsubscribes"),
)


def recipient_for(campaign: Doc, event: EngagementEvent) -> str | None:
    identity = (campaign.get("assignment") or {}).get("identity", "email")
    if identity == "user_id" and event.user_id:
        return f"userId:{event.user_id}"
    if event.email:
        return event.email
    return f"userId:{event.user_id}" if event.user_id else None


def variant_for(campaign: Doc, recipient: str) -> str:
    names = [v["name"] for v in campaign["variants"]]
    weights = [v.get("weight", 1.0) for v in campaign["variants"]]
    return assign_variant(campaign["key"], recipient, names, weights)


class ResultsStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.events = db["console_events"]
        self.engaged = db["console_engaged"]

    async def ensure_indexes(self) -> None:
        await self.engaged.create_index(
            [("campaign_id", ASCENDING), ("variant", ASCENDING), ("type", ASCENDING)],
            name="campaign_variant_type",
        )
        await self.events.create_index([("campaign_id", ASCENDING)], name="campaign")

    async def write(self, rows: list[tuple[EngagementEvent, Doc | None]]) -> None:
        engaged: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for event, campaign in rows:
            doc: dict[str, Any] = {
                "_id": event.event_id,
                "connection_id": event.connection_id,
                "type": str(event.event_type),
                "email": event.email,
                "user_id": event.user_id,
                "iterable_campaign_id": event.campaign_id,
                "occurred_at": event.occurred_at,
                "campaign_id": None,
                "variant": None,
            }
            if campaign is not None:
                recipient = recipient_for(campaign, event)
                if recipient is not None:
                    variant = variant_for(campaign, recipient)
                    doc.update(campaign_id=campaign["_id"], variant=variant)
                    # Insert-once by a natural id: the first event of a recipient and
                    # type wins, and on FerretDB an insert is far cheaper than an upsert.
                    engaged.append(
                        {
                            "_id": f"{campaign['_id']}|{event.event_type}|{recipient}",
                            "campaign_id": campaign["_id"],
                            "variant": variant,
                            "type": str(event.event_type),
                            "recipient": recipient,
                            "first_at": event.occurred_at,
                        }
                    )
            events.append(doc)
        # Engaged first: if we crash before the event ids are stored, the re-delivered
        # batch repeats these inserts harmlessly. A re-sent event (same event_id) finds
        # its `console_events` document and its `console_engaged` one: counted once.
        await insert_once(self.engaged, engaged)
        await insert_once(self.events, events)

    async def counts(self, campaign_id: str) -> dict[tuple[str, str], int]:
        """(variant, type) -> unique recipients."""
        out: dict[tuple[str, str], int] = {}
        pipeline: list[dict[str, Any]] = [
            {"$match": {"campaign_id": campaign_id}},
            {"$group": {"_id": {"v": "$variant", "t": "$type"}, "n": {"$sum": 1}}},
        ]
        async for row in await self.engaged.aggregate(pipeline):
            out[(row["_id"]["v"], row["_id"]["t"])] = row["n"]
        return out

    async def event_total(self, campaign_id: str) -> int:
        return await self.events.count_documents({"campaign_id": campaign_id})


class CampaignLookup:
    """Iterable (connection, campaignId, templateId) -> campaign doc, cached briefly,
    so a burst of events costs one query per campaign rather than one per event."""

    def __init__(self, campaigns: CampaignStore, ttl_s: float = 5.0) -> None:
        self._campaigns = campaigns
        self._ttl = ttl_s
        self._cache: dict[tuple[str, int | None, int | None], tuple[float, Doc | None]] = {}

    async def find(self, event: EngagementEvent) -> Doc | None:
        key = (event.connection_id, event.campaign_id, event.template_id)
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        doc = await self._campaigns.by_iterable_ids(*key)
        self._cache[key] = (time.monotonic() + self._ttl, doc)
        return doc


CONSUMER_NAME = "console.results"


def decode_event(record: ConsumerRecord[Any, Any]) -> EngagementEvent:
    return EngagementEvent.model_validate_json(record.value or b"")


class ResultsConsumer:
    """Consumes `engagement.events` on the shared runtime until stopped."""

    def __init__(
        self,
        settings: CommonSettings,
        group_id: str,
        store: ResultsStore,
        campaigns: CampaignStore,
        policy: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._store = store
        self._lookup = CampaignLookup(campaigns)
        self.runtime: ConsumerRuntime[EngagementEvent] = ConsumerRuntime(
            name=CONSUMER_NAME,
            bootstrap=settings.kafka_bootstrap,
            topics=[settings.topic(ENGAGEMENT_EVENTS.name)],
            group_id=settings.topic(group_id),
            decode=decode_event,
            handle=self._handle,
            dead_letter_topic=settings.topic(ENGAGEMENT_DEADLETTER.name),
            policy=policy,
            # Small batches: FerretDB on SQLite has one writer per database, so short
            # writes keep the other services' writes from timing out (SQLITE_BUSY).
            max_batch=100,
            fetch_timeout_ms=1000,
        )

    @property
    def processed(self) -> int:
        return self.runtime.stats.processed

    def start(self) -> None:
        self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()

    async def _handle(self, deliveries: list[Delivery[EngagementEvent]]) -> None:
        rows = [(d.message, await self._lookup.find(d.message)) for d in deliveries]
        await self._store.write(rows)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Cell:
    count: int
    rate: float | None
    lift: Lift | None  # None for the control and for sends


@dataclass(frozen=True)
class VariantRow:
    name: str
    is_control: bool
    assigned: int
    cells: dict[str, Cell]  # EventType value -> cell


@dataclass(frozen=True)
class ResultsTable:
    rows: list[VariantRow]
    srm_basis: str  # "sends" or "assigned"
    srm_p: float
    srm_mismatch: bool
    events: int


async def results_table(store: ResultsStore, campaign: Doc) -> ResultsTable:
    counts = await store.counts(campaign["_id"])
    assigned = (campaign.get("assignment") or {}).get("counts") or {}
    control = campaign["control"]
    sends_of = {v["name"]: counts.get((v["name"], EventType.SEND), 0) for v in campaign["variants"]}
    # Rates are per send; before any send event arrives, per assigned recipient.
    base_of = sends_of if any(sends_of.values()) else {name: int(assigned.get(name, 0)) for name in sends_of}
    rows: list[VariantRow] = []
    for variant in campaign["variants"]:
        name = variant["name"]
        cells: dict[str, Cell] = {}
        for event_type, _label in METRICS:
            n = counts.get((name, event_type), 0)
            if event_type == EventType.SEND:
                cells[event_type] = Cell(n, None, None)
                continue
            lift = None
            if name != control:
                lift = lift_over_control(n, base_of[name], counts.get((control, event_type), 0), base_of[control])
            cells[event_type] = Cell(n, rate(n, base_of[name]), lift)
        rows.append(VariantRow(name, name == control, int(assigned.get(name, 0)), cells))
    basis = "sends" if any(sends_of.values()) else "assigned"
    observed = [base_of[v["name"]] for v in campaign["variants"]]
    srm = sample_ratio_check(observed, [v.get("weight", 1.0) for v in campaign["variants"]])
    return ResultsTable(rows, basis, srm.p_value, srm.mismatch, await store.event_total(campaign["_id"]))


def table_json(table: ResultsTable) -> dict[str, Any]:
    def lift(value: Lift | None) -> dict[str, float | None] | None:
        return None if value is None else {"lift": value.lift, "low": value.low, "high": value.high}

    return {
        "srm": {"basis": table.srm_basis, "p_value": table.srm_p, "mismatch": table.srm_mismatch},
        "events": table.events,
        "variants": [
            {
                "name": row.name,
                "control": row.is_control,
                "assigned": row.assigned,
                "metrics": {t: {"count": c.count, "rate": c.rate, "lift": lift(c.lift)} for t, c in row.cells.items()},
            }
            for row in table.rows
        ],
    }
