"""Results: count engagement per campaign and variant from `engagement.events`.

The counter is a plain consumer (group `console-results`) that commits offsets only
after a batch is written, so a crash re-delivers and the writes must be idempotent.
Two single-document, idempotent writes per event (FerretDB: no transactions):

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

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError
from pymongo import ASCENDING, InsertOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from liftstack_shared.messages import DeadLetter, EngagementEvent, EventType
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS
from liftstack_console.assign import assign_variant
from liftstack_console.campaigns import CampaignStore, Doc
from liftstack_console.stats import Lift, lift_over_control, rate, sample_ratio_check

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
        engaged: list[InsertOne[dict[str, Any]]] = []
        events: list[InsertOne] = []
        for event, campaign in rows:
            doc: dict[str, Any] = {
                "_id": event.event_id, "connection_id": event.connection_id,
                "type": str(event.event_type), "email": event.email, "user_id": event.user_id,
                "iterable_campaign_id": event.campaign_id, "occurred_at": event.occurred_at,
                "campaign_id": None, "variant": None,
            }
            if campaign is not None:
                recipient = recipient_for(campaign, event)
                if recipient is not None:
                    variant = variant_for(campaign, recipient)
                    doc.update(campaign_id=campaign["_id"], variant=variant)
                    # Insert-if-absent by a natural id (a plain insert whose duplicate-key
                    # error is ignored): the first event of a recipient and type wins,
                    # and on FerretDB an insert is far cheaper than an upsert.
                    engaged.append(InsertOne({
                        "_id": f"{campaign['_id']}|{event.event_type}|{recipient}",
                        "campaign_id": campaign["_id"], "variant": variant,
                        "type": str(event.event_type), "recipient": recipient,
                        "first_at": event.occurred_at,
                    }))
            events.append(InsertOne(doc))
        # Engaged first: if we crash before the event ids are stored, the re-delivered
        # batch repeats these inserts harmlessly.
        await _insert_new(self.engaged, engaged)
        await _insert_new(self.events, events)

    async def counts(self, campaign_id: str) -> dict[tuple[str, str], int]:
        """(variant, type) -> unique recipients."""
        out: dict[tuple[str, str], int] = {}
        pipeline = [
            {"$match": {"campaign_id": campaign_id}},
            {"$group": {"_id": {"v": "$variant", "t": "$type"}, "n": {"$sum": 1}}},
        ]
        async for row in await self.engaged.aggregate(pipeline):
            out[(row["_id"]["v"], row["_id"]["t"])] = row["n"]
        return out

    async def event_total(self, campaign_id: str) -> int:
        return await self.events.count_documents({"campaign_id": campaign_id})


async def _insert_new(collection: Any, inserts: list[InsertOne[dict[str, Any]]]) -> None:
    if not inserts:
        return
    try:
        await collection.bulk_write(inserts, ordered=False)
    except BulkWriteError as exc:
        # Duplicate ids (code 11000) are the dedupe working; anything else isn't.
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
            raise


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


class ResultsConsumer:
    """Consumes `engagement.events` until stopped; commit after write."""

    def __init__(self, settings: CommonSettings, group_id: str, store: ResultsStore,
                 campaigns: CampaignStore) -> None:
        self._settings = settings
        self._group = settings.topic(group_id)
        self._store = store
        self._lookup = CampaignLookup(campaigns)
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="results-consumer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep counting after a broker/db outage
                log.exception("results consumer failed; restarting in 2s")
                await asyncio.sleep(2)

    async def _consume(self) -> None:
        topic = self._settings.topic(ENGAGEMENT_EVENTS.name)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self._settings.kafka_bootstrap, group_id=self._group,
            enable_auto_commit=False, auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await consumer.start()
        await producer.start()
        try:
            while True:
                # Small batches: FerretDB on SQLite has one writer per database, so short
                # writes keep the other services' writes from timing out (SQLITE_BUSY).
                records = await consumer.getmany(timeout_ms=1000, max_records=100)
                if not records:
                    continue
                rows: list[tuple[EngagementEvent, Doc | None]] = []
                for tp, messages in records.items():
                    for message in messages:
                        try:
                            event = EngagementEvent.model_validate_json(message.value)
                        except ValidationError as exc:
                            await self._dead_letter(producer, message, tp.partition, exc)
                            continue
                        rows.append((event, await self._lookup.find(event)))
                await self._write(rows)
                await consumer.commit()
                self.processed += len(rows)
        finally:
            await consumer.stop()
            await producer.stop()

    async def _write(self, rows: list[tuple[EngagementEvent, Doc | None]]) -> None:
        """Retry the same batch until it is written: the writes are idempotent, and
        retrying here (not restarting the consumer) avoids a group rebalance."""
        for attempt in range(1_000_000):
            try:
                await self._store.write(rows)
                return
            except PyMongoError as exc:
                delay = min(5.0, 0.2 * 2**attempt)
                log.warning("results write failed (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)

    async def _dead_letter(self, producer: AIOKafkaProducer, message: Any, partition: int,
                           exc: ValidationError) -> None:
        letter = DeadLetter(
            source_topic=message.topic, partition=partition, offset=message.offset,
            key=message.key.decode(errors="replace") if message.key else None,
            consumer=self._group, reason=f"invalid EngagementEvent: {exc.errors()[0]['msg']}",
            payload=(message.value or b"").decode(errors="replace"),
        )
        await producer.send_and_wait(
            self._settings.topic(ENGAGEMENT_DEADLETTER.name), letter.to_bytes(),
            key=message.key,
        )


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
    base_of = sends_of if any(sends_of.values()) else {
        name: int(assigned.get(name, 0)) for name in sends_of
    }
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
                lift = lift_over_control(
                    n, base_of[name], counts.get((control, event_type), 0), base_of[control]
                )
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
                "name": row.name, "control": row.is_control, "assigned": row.assigned,
                "metrics": {
                    t: {"count": c.count, "rate": c.rate, "lift": lift(c.lift)}
                    for t, c in row.cells.items()
                },
            }
            for row in table.rows
        ],
    }
