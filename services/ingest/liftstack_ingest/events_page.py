"""The Events page: the consumer that keeps the read model, and its HTTP API.

The consumer runs on the shared consumer runtime (`liftstack_shared.consumer`): it
reads `engagement.events` (published events), `ingest.observations` (filtered,
unknown and rejected requests) and `engagement.events.deadletter` (what any consumer
of events could not process: shown as "failed downstream" with the reason) in
batches, in one consumer group, writes the batch to MongoDB and only then commits
the offsets. A message that breaks its contract, or that storage refuses after the
runtime's retries, goes to `engagement.events.deadletter` with the reason; an outage
of MongoDB or Kafka pauses the consumer (backoff) and dead-letters nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any, Literal

import httpx
from aiokafka import ConsumerRecord
from pydantic import BaseModel
from pymongo.errors import PyMongoError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_ingest import metrics
from liftstack_ingest.lookup import ConnectionLookup, ConnectionNotFound
from liftstack_ingest.read_model import FAILED_DOWNSTREAM, OUTCOMES, WINDOWS, Entry, ReadModel
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.auth import principal_from_request, require_manager
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.consumer import ConsumerRuntime, Delivery, RetryPolicy
from liftstack_shared.errors import ApiError
from liftstack_shared.http import Endpoint, json_response
from liftstack_shared.messages import DeadLetter, EngagementEvent, IngestObservation, IngestOutcome
from liftstack_shared.topics import ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS, INGEST_OBSERVATIONS

log = logging.getLogger(__name__)

CONSUMER_NAME = "ingest.events-page"

# ---------------------------------------------------------------------- consumer


def events_page_consumer(
    settings: IngestSettings,
    store: ReadModel,
    *,
    group_id: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
) -> ConsumerRuntime[Entry | None]:
    events_topic = settings.topic(ENGAGEMENT_EVENTS.name)
    deadletter_topic = settings.topic(ENGAGEMENT_DEADLETTER.name)

    def decode(record: ConsumerRecord[Any, Any]) -> Entry | None:
        return to_entry(record, events_topic, deadletter_topic)

    async def apply_batch(deliveries: list[Delivery[Entry | None]]) -> None:
        entries = [d.message for d in deliveries if d.message is not None]
        result = await store.apply(entries)
        metrics.READ_MODEL_EVENTS.labels("counted").inc(result.counted)
        metrics.READ_MODEL_EVENTS.labels("duplicate").inc(result.duplicates)

    return ConsumerRuntime(
        name=CONSUMER_NAME,
        bootstrap=settings.kafka_bootstrap,
        topics=[events_topic, settings.topic(INGEST_OBSERVATIONS.name), deadletter_topic],
        group_id=group_id or settings.topic(CONSUMER_NAME),
        decode=decode,
        handle=apply_batch,
        dead_letter_topic=deadletter_topic,
        policy=policy,
        max_batch=settings.events_consumer_batch,
        fetch_timeout_ms=200,
    )


def to_entry(record: ConsumerRecord[Any, Any], events_topic: str, deadletter_topic: str = "") -> Entry | None:
    """Raises ValidationError/ValueError for a message that breaks its contract."""
    claim = f"{record.topic}:{record.partition}:{record.offset}"
    if record.value is None:
        raise ValueError("empty message")
    if record.topic == deadletter_topic:
        return _failed_downstream(record, deadletter_topic)
    if record.topic == events_topic:
        event = EngagementEvent.model_validate_json(record.value)
        return Entry(
            doc_id=event.event_id,
            claim=claim,
            connection_id=event.connection_id,
            workspace_id=event.workspace_id,
            outcome=IngestOutcome.PUBLISHED.value,
            at=event.received_at,
            event_name=event.iterable_event_name,
            details={
                "event_type": event.event_type.value,
                "email": event.email,
                "user_id": event.user_id,
                "campaign_id": event.campaign_id,
                "template_id": event.template_id,
                "message_id": event.message_id,
                "url": event.url,
                "occurred_at": event.occurred_at,
            },
        )
    observation = IngestObservation.model_validate_json(record.value)
    if observation.outcome is IngestOutcome.PUBLISHED:
        return None  # published events are counted from engagement.events itself
    # Accepted events dedupe on their event id; rejected requests are each counted
    # once (by where they sit in Kafka), since none of them was stored.
    event_id = observation.event_id
    return Entry(
        doc_id=event_id if event_id and observation.outcome is not IngestOutcome.REJECTED else f"obs:{claim}",
        claim=claim,
        connection_id=observation.connection_id,
        workspace_id=observation.workspace_id,
        outcome=observation.outcome.value,
        at=observation.at,
        event_name=observation.event_name,
        reason=observation.reason,
    )


def _failed_downstream(record: ConsumerRecord[Any, Any], deadletter_topic: str) -> Entry | None:
    """A dead letter of an events consumer, as a "failed downstream" entry of the
    connection it belongs to. Never raises: a bad record on the dead-letter topic is
    skipped, not dead-lettered again (that would feed this consumer its own output)."""
    try:
        letter = DeadLetter.model_validate_json(record.value)
    except ValueError:
        log.warning("skipping an unreadable dead letter at %s[%d]@%d", record.topic, record.partition, record.offset)
        return None
    if letter.source_topic == deadletter_topic:
        return None
    try:
        original = json.loads(letter.payload)
    except ValueError:
        original = None
    fields = original if isinstance(original, dict) else {}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) and len(value) <= 200 else None

    # engagement.events is keyed "connection:recipient", ingest.observations by connection.
    connection_id = text("connection_id") or (letter.key.split(":", 1)[0] if letter.key else None)
    if not connection_id:
        return None  # not attributable to a connection: the metric and the CLI show it
    return Entry(
        doc_id=f"dl:{letter.consumer}:{letter.source_id}",  # insert-once per consumer and message
        claim=f"{record.topic}:{record.partition}:{record.offset}",
        connection_id=connection_id,
        workspace_id=text("workspace_id") or "",
        outcome=FAILED_DOWNSTREAM,
        at=letter.at,
        event_name=text("iterable_event_name") or text("event_name"),
        reason=f"{letter.consumer}: {letter.reason}"[:300],
        details={
            "event_id": text("event_id"),
            "event_type": text("event_type"),
            "email": text("email"),
            "consumer": letter.consumer,
            "reason_class": letter.reason_class,
        },
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

Outcome = Literal["published", "filtered", "unknown", "rejected", "failed_downstream"]


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
    # Messages a consumer downstream (this page's, the results') could not process
    # and dead-lettered; not part of `totals` (an event that failed was still received
    # once, or never readable at all).
    failed_downstream: int = 0
    failed_downstream_by_reason: dict[str, int] = {}


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
    Endpoint(
        "GET",
        EVENTS_PATH,
        "Recent webhook events of a connection, newest first "
        "(query: limit<=200, cursor, outcome; failed_downstream: dead-lettered by a "
        "consumer, with the reason).",
        response=EventsList,
        tags=["events"],
        query={
            "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, False),
            "cursor": ({"type": "string"}, False),
            "outcome": ({"type": "string", "enum": [*OUTCOMES, FAILED_DOWNSTREAM]}, False),
        },
    ),
    Endpoint(
        "GET",
        SUMMARY_PATH,
        "Webhook event counts per type and outcome (last hour, 24 h, 7 d) and the last-received time.",
        response=EventsSummary,
        tags=["events"],
    ),
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
        if outcome is not None and outcome not in (*OUTCOMES, FAILED_DOWNSTREAM):
            raise ApiError(
                400,
                "invalid_parameter",
                f"outcome must be one of {', '.join((*OUTCOMES, FAILED_DOWNSTREAM))}.",
                "outcome",
            )
        try:
            docs, next_cursor = await self._store.recent(connection_id, limit, params.get("cursor") or None, outcome)
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
    if doc_id.startswith("dl:"):
        event_id = doc.get("event_id")
    else:
        event_id = None if doc_id.startswith("obs:") else doc_id
    return EventItem(
        event_id=event_id,
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
    failed: dict[str, int] = {}
    for doc in docs:
        n = int(doc.get("count", 0))
        outcome = doc.get("outcome", "")
        if outcome == FAILED_DOWNSTREAM:
            reason = doc.get("reason") or "unknown"
            failed[reason] = failed.get(reason, 0) + n
            continue
        if outcome not in OUTCOMES:
            continue
        event_name = doc.get("event_name") or "(none)"
        for counts in (totals, by_name.setdefault(event_name, OutcomeCounts())):
            counts.received += n
            setattr(counts, outcome, getattr(counts, outcome) + n)
        if outcome == "rejected":
            reason = doc.get("reason") or "unknown"
            reasons[reason] = reasons.get(reason, 0) + n
    return WindowCounts(
        window=name,
        totals=totals,
        by_event_name=by_name,
        rejected_by_reason=reasons,
        failed_downstream=sum(failed.values()),
        failed_downstream_by_reason=failed,
    )
