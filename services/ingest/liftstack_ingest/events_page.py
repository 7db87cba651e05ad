"""The Events page: the consumer that keeps the read model, and its HTTP API.

The consumer reads `engagement.events` (published events) and `ingest.observations`
(filtered, unknown and rejected requests) in batches, in one consumer group, writes
the batch to MongoDB and only then commits the offsets. A message that isn't a valid
contract goes to `engagement.events.deadletter` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, Literal

import httpx
from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ValidationError
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_ingest import metrics
from liftstack_ingest.lookup import ConnectionLookup, ConnectionNotFound
from liftstack_ingest.read_model import OUTCOMES, WINDOWS, Entry, ReadModel
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.auth import principal_from_request, require_manager
from liftstack_shared.errors import ApiError
from liftstack_shared.http import Endpoint, json_response
from liftstack_shared.messages import DeadLetter, EngagementEvent, IngestObservation, IngestOutcome
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS

log = logging.getLogger(__name__)

CONSUMER_NAME = "ingest.events-page"
MONGO_RETRY_DELAY_S = 1.0

# ---------------------------------------------------------------------- consumer


def register_consumer(broker: KafkaBroker, settings: IngestSettings, store: ReadModel) -> None:
    events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
    observations_topic = settings.topic(INGEST_OBSERVATIONS.name)
    deadletter_topic = settings.topic(ENGAGEMENT_DEADLETTER.name)

    async def keep_raw(message: Any) -> None:
        # Validation is ours (so bad messages can be dead-lettered); stop FastStream
        # from decoding bodies itself, which fails the whole batch on one bad message.
        return None

    @broker.subscriber(
        events_topic, observations_topic,
        group_id=settings.topic(CONSUMER_NAME),
        batch=True, max_records=settings.events_consumer_batch, batch_timeout_ms=200,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,  # commit after the write; rewind on error
        decoder=keep_raw,
    )
    async def apply_batch(message: KafkaMessage) -> None:
        raw = message.raw_message
        records: tuple[ConsumerRecord[Any, Any], ...] = raw if isinstance(raw, tuple) else (raw,)
        entries: list[Entry] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                entry = to_entry(record, events_topic)
            except (ValidationError, ValueError) as exc:
                dead.append(_dead_letter(record, _reason(exc)))
                continue
            if entry is not None:
                entries.append(entry)
        try:
            result = await store.apply(entries)
        except PyMongoError as exc:
            log.warning("read model write failed (%s); batch will be retried", type(exc).__name__)
            await asyncio.sleep(MONGO_RETRY_DELAY_S)  # don't spin while Mongo is away
            raise
        for letter in dead:
            await broker.publish(
                letter, deadletter_topic, key=letter.key.encode() if letter.key else None
            )
        metrics.READ_MODEL_EVENTS.labels("counted").inc(result.counted)
        metrics.READ_MODEL_EVENTS.labels("duplicate").inc(result.duplicates)
        metrics.READ_MODEL_EVENTS.labels("deadlettered").inc(len(dead))


def to_entry(record: ConsumerRecord[Any, Any], events_topic: str) -> Entry | None:
    """Raises ValidationError/ValueError for a message that breaks its contract."""
    claim = f"{record.topic}:{record.partition}:{record.offset}"
    if record.value is None:
        raise ValueError("empty message")
    if record.topic == events_topic:
        event = EngagementEvent.model_validate_json(record.value)
        return Entry(
            doc_id=event.event_id, claim=claim, connection_id=event.connection_id,
            workspace_id=event.workspace_id, outcome=IngestOutcome.PUBLISHED.value,
            at=event.received_at, event_name=event.iterable_event_name,
            details={
                "event_type": event.event_type.value, "email": event.email,
                "user_id": event.user_id, "campaign_id": event.campaign_id,
                "template_id": event.template_id, "message_id": event.message_id,
                "url": event.url, "occurred_at": event.occurred_at,
            },
        )
    observation = IngestObservation.model_validate_json(record.value)
    if observation.outcome is IngestOutcome.PUBLISHED:
        return None  # published events are counted from engagement.events itself
    # Accepted events dedupe on their event id; rejected requests are each counted
    # once (by where they sit in Kafka), since none of them was stored.
    deduped = observation.event_id and observation.outcome is not IngestOutcome.REJECTED
    return Entry(
        doc_id=observation.event_id if deduped else f"obs:{claim}",  # type: ignore[arg-type]
        claim=claim, connection_id=observation.connection_id,
        workspace_id=observation.workspace_id, outcome=observation.outcome.value,
        at=observation.at, event_name=observation.event_name, reason=observation.reason,
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        # Never the input value: it may carry personal data.
        return f"schema: {where}: {first['msg']} ({exc.error_count()} error(s))"
    return f"invalid: {exc}"


def _dead_letter(record: ConsumerRecord[Any, Any], reason: str) -> DeadLetter:
    key = record.key.decode("utf-8", "replace") if isinstance(record.key, bytes) else None
    value = record.value if isinstance(record.value, bytes) else b""
    return DeadLetter(
        source_topic=record.topic, partition=record.partition, offset=record.offset, key=key,
        consumer=CONSUMER_NAME, reason=reason, payload=value.decode("utf-8", "replace"),
    )


async def maintain(store: ReadModel, interval_s: float) -> None:
    """Indexes once, then pruning forever (FerretDB has no TTL indexes)."""
    indexed = False
    while True:
        try:
            if not indexed:
                await store.ensure_indexes()
                indexed = True
            await store.prune()
        except PyMongoError as exc:
            log.warning("read model maintenance failed: %s", type(exc).__name__)
        await asyncio.sleep(interval_s if indexed else 5.0)


# ---------------------------------------------------------------------- HTTP

Outcome = Literal["published", "filtered", "unknown", "rejected"]


class EventItem(BaseModel):
    event_id: str | None
    event_name: str | None
    event_type: str | None = None
    outcome: Outcome
    reason: str | None = None
    email: str | None = None
    user_id: str | None = None
    campaign_id: int | None = None
    template_id: int | None = None
    message_id: str | None = None
    url: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime


class EventsList(BaseModel):
    connection_id: str
    items: list[EventItem]
    next_cursor: str | None


class OutcomeCounts(BaseModel):
    received: int = 0
    published: int = 0
    filtered: int = 0
    unknown: int = 0
    rejected: int = 0


class WindowCounts(BaseModel):
    window: str
    totals: OutcomeCounts
    by_event_name: dict[str, OutcomeCounts]
    rejected_by_reason: dict[str, int]


class EventsSummary(BaseModel):
    connection_id: str
    # Over the last 24 h: "no_events": nothing received; "none_processed": events
    # arrive but none was published (wrong types, unknown names, or all rejected).
    status: Literal["no_events", "none_processed", "receiving"]
    last_received_at: datetime | None
    processed_event_types: list[str]
    windows: list[WindowCounts]


EVENTS_PATH = "/v1/connections/{connection_id}/events"
SUMMARY_PATH = "/v1/connections/{connection_id}/events/summary"
MAX_PAGE = 200

ENDPOINTS = [
    Endpoint("GET", EVENTS_PATH, "Recent webhook events of a connection, newest first "
             "(query: limit<=200, cursor, outcome).", response=EventsList, tags=["events"],
             query={
                 "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, False),
                 "cursor": ({"type": "string"}, False),
                 "outcome": ({"type": "string", "enum": list(OUTCOMES)}, False),
             }),
    Endpoint("GET", SUMMARY_PATH, "Webhook event counts per type and outcome (last hour, "
             "24 h, 7 d) and the last-received time.", response=EventsSummary, tags=["events"]),
]


class EventsPageApi:
    def __init__(self, settings: IngestSettings, connections: ConnectionLookup, store: ReadModel) -> None:
        self._settings = settings
        self._connections = connections
        self._store = store

    def routes(self) -> list[Route]:
        return [
            Route(EVENTS_PATH, self.list_events, methods=["GET"]),
            Route(SUMMARY_PATH, self.summary, methods=["GET"]),
        ]

    async def list_events(self, request: Request) -> Response:
        connection_id = (await self._authorise(request)).connection_id
        params = request.query_params
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            raise ApiError(400, "invalid_parameter", "limit must be an integer.", "limit") from None
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, "invalid_parameter", f"limit must be 1..{MAX_PAGE}.", "limit")
        outcome = params.get("outcome") or None
        if outcome is not None and outcome not in OUTCOMES:
            raise ApiError(400, "invalid_parameter", f"outcome must be one of {', '.join(OUTCOMES)}.", "outcome")
        try:
            docs, next_cursor = await self._store.recent(
                connection_id, limit, params.get("cursor") or None, outcome
            )
        except ValueError:
            raise ApiError(400, "invalid_parameter", "cursor is not valid.", "cursor") from None
        items = [_item(doc) for doc in docs]
        return json_response(EventsList(connection_id=connection_id, items=items, next_cursor=next_cursor))

    async def summary(self, request: Request) -> Response:
        connection = await self._authorise(request)
        connection_id = connection.connection_id
        buckets = await self._store.window_counts(connection_id)
        windows = [_window(name, buckets[name]) for name, _, _ in WINDOWS]
        by_name = {w.window: w for w in windows}
        if by_name["24h"].totals.received == 0:
            status = "no_events"
        elif by_name["24h"].totals.published == 0:
            status = "none_processed"
        else:
            status = "receiving"
        return json_response(
            EventsSummary(
                connection_id=connection_id,
                status=status,
                last_received_at=await self._store.last_received(connection_id),
                processed_event_types=list(connection.event_types),
                windows=windows,
            )
        )

    async def _authorise(self, request: Request) -> InternalConnection:
        """Owners/Admins of the connection's workspace; anyone else gets 404 for
        another workspace's connection (its existence is not disclosed)."""
        principal = principal_from_request(request, self._settings)
        require_manager(principal)
        connection_id = request.path_params["connection_id"]
        try:
            connection = await self._connections.get(connection_id)
        except ConnectionNotFound:
            raise ApiError(404, "not_found", "No such connection.") from None
        except httpx.HTTPError:
            raise ApiError(503, "unavailable", "Connections are unavailable; try again.") from None
        if connection.workspace_id != principal.workspace_id:
            raise ApiError(404, "not_found", "No such connection.")
        return connection


def _item(doc: dict[str, Any]) -> EventItem:
    doc_id = str(doc["_id"])
    return EventItem(
        event_id=None if doc_id.startswith("obs:") else doc_id,
        event_name=doc.get("event_name"),
        event_type=doc.get("event_type"),
        outcome=doc["outcome"],
        reason=doc.get("reason"),
        email=doc.get("email"),
        user_id=doc.get("user_id"),
        campaign_id=doc.get("campaign_id"),
        template_id=doc.get("template_id"),
        message_id=doc.get("message_id"),
        url=doc.get("url"),
        occurred_at=doc.get("occurred_at"),
        received_at=doc["received_at"],
    )


def _window(name: str, docs: list[dict[str, Any]]) -> WindowCounts:
    totals = OutcomeCounts()
    by_name: dict[str, OutcomeCounts] = {}
    reasons: dict[str, int] = {}
    for doc in docs:
        n = int(doc.get("count", 0))
        outcome = doc.get("outcome", "")
        if outcome not in OUTCOMES:
            continue
        event_name = doc.get("event_name") or "(none)"
        for counts in (totals, by_name.setdefault(event_name, OutcomeCounts())):
            counts.received += n
            setattr(counts, outcome, getattr(counts, outcome) + n)
        if outcome == "rejected":
            reason = doc.get("reason") or "unknown"
            reasons[reason] = reasons.get(reason, 0) + n
    return WindowCounts(window=name, totals=totals, by_event_name=by_name, rejected_by_reason=reasons)
