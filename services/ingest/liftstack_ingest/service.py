"""Ingest's use cases, called by `api.py` (and the app's lifespan):

- `WebhookService`: one Iterable webhook in, at most one event out. Order of checks:
  connection (404) -> secret (403, before the body is read) -> content type (415) ->
  size (413, read by the handler) -> JSON within `liftstack_shared.bounds` and
  required fields (400, with a named code) -> event name known? (else counted
  "unknown", 200) -> type processed by the connection? (else counted "filtered", 200)
  -> publish and wait for Kafka's ack (else 503, so Iterable retries). Every outcome
  but a publish is observed on `ingest.observations` for the Events page.
- `EventsPage`: a connection's recent events and counts, and the read model's upkeep.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from liftstack_ingest import events, metrics
from liftstack_ingest.lookup import ConnectionLookup, ConnectionNotFound
from liftstack_ingest.models import Accepted, EventsList, EventsSummary, WebhookAccepted
from liftstack_ingest.normalise import BadPayload, normalise, parse_body
from liftstack_ingest.publisher import EventPublisher, KafkaUnavailable
from liftstack_ingest.settings import IngestSettings
from liftstack_ingest.store import EventsStore
from liftstack_ingest.verify import Verdict, verify
from liftstack_shared import bounds
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.errors import ApiError
from liftstack_shared.messages import IngestObservation, IngestOutcome

log = logging.getLogger(__name__)

# Tokens are URL-safe random strings; anything else can't be one, and must not reach
# the lookup (it becomes part of an internal URL path).
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


class WebhookRejected(Exception):
    """A webhook answered with an error. `reason` labels the rejection metric and the
    Events page's count; `code` is the answer's error code."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        code: str | None = None,
        event_name: str | None = None,
        retry: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.code = code or ("unavailable" if status == 503 else reason)
        self.event_name = event_name
        self.retry = retry  # answered with Retry-After: Iterable should send it again


class WebhookService:
    def __init__(self, settings: IngestSettings, connections: ConnectionLookup, publisher: EventPublisher) -> None:
        self.max_body_bytes = settings.webhook_max_body_bytes
        self._connections = connections
        self._publisher = publisher

    async def connection(self, token: str) -> InternalConnection:
        """The connection behind a webhook URL. A rejection here is counted but not
        observed: there is no connection to show it under."""
        # The token is a credential-like capability: never log it.
        try:
            if not TOKEN_RE.fullmatch(token):
                raise ConnectionNotFound("malformed token")
            connection = await self._connections.by_webhook_token(token)
        except ConnectionNotFound:
            metrics.REJECTED.labels("unknown_connection").inc()
            raise WebhookRejected(
                404, "unknown_connection", "No connection has this webhook URL.", code="not_found"
            ) from None
        except httpx.HTTPError as exc:
            log.warning("connection lookup failed: %s", type(exc).__name__)
            metrics.REJECTED.labels("connections_unavailable").inc()
            raise WebhookRejected(503, "connections_unavailable", "Try again later.", retry=True) from None
        metrics.RECEIVED.inc()
        return connection

    def admit(self, connection: InternalConnection, headers: Mapping[str, str]) -> None:
        """The checks before the body is read: the secret (403), the content type (415)."""
        verdict = verify(headers, connection.webhook_secrets, connection.webhook_header)
        if verdict is not Verdict.OK:
            raise WebhookRejected(403, verdict.value, verdict.message)
        if not json_content_type(headers.get("content-type")):
            raise WebhookRejected(
                415, "unsupported_media_type", "Send the webhook as JSON (Content-Type: application/json)."
            )

    async def take(self, connection: InternalConnection, body: bytes) -> WebhookAccepted:
        """Parse, normalise and filter the body; publish the event and wait for Kafka's ack."""
        received_at = datetime.now(UTC)
        event_name: str | None = None
        try:
            payload = parse_body(body)
            event_name = observable_name(payload.get("eventName"))
            item = normalise(payload, connection.connection_id)
        except BadPayload as exc:
            raise WebhookRejected(400, exc.code, exc.message, event_name=event_name) from None

        if item.event_type is None:
            metrics.UNKNOWN.inc()
            return self._dropped(connection, item.event_name, IngestOutcome.UNKNOWN, item.event_id, received_at)
        if item.event_type.value not in connection.event_types:
            metrics.FILTERED.labels(item.event_type.value).inc()
            return self._dropped(connection, item.event_name, IngestOutcome.FILTERED, item.event_id, received_at)
        try:
            event = item.event(payload, connection, received_at)
        except ValidationError as exc:
            # parse_body and normalise enforce the contract's bounds, so this means
            # they disagree with it: refuse the event rather than publish a poison.
            log.error("normalised event breaks its contract: %s", exc.errors()[0]["loc"])
            raise WebhookRejected(
                400, "invalid_payload", "The event is outside liftstack's bounds.", event_name=item.event_name
            ) from None
        try:
            await self._publisher.publish_event(event, item.key)
        except KafkaUnavailable:
            raise WebhookRejected(
                503, "kafka_unavailable", "Try again later.", event_name=item.event_name, retry=True
            ) from None
        metrics.PUBLISHED.labels(item.event_type.value).inc()
        return WebhookAccepted(status="published", event_id=item.event_id)

    def rejected(self, connection: InternalConnection, rejection: WebhookRejected) -> None:
        """Count a rejection of a known connection's webhook, and show it on its Events page."""
        metrics.REJECTED.labels(rejection.reason).inc()
        self._observe(connection, rejection.event_name, IngestOutcome.REJECTED, None, None, rejection.reason)

    def _dropped(
        self,
        connection: InternalConnection,
        event_name: str,
        outcome: IngestOutcome,
        event_id: str,
        received_at: datetime,
    ) -> WebhookAccepted:
        self._observe(connection, event_name, outcome, event_id, received_at)
        status: Accepted = "unknown" if outcome is IngestOutcome.UNKNOWN else "filtered"
        return WebhookAccepted(status=status, event_id=event_id)

    def _observe(
        self,
        connection: InternalConnection,
        event_name: str | None,
        outcome: IngestOutcome,
        event_id: str | None,
        at: datetime | None,
        reason: str | None = None,
    ) -> None:
        self._publisher.observe(
            IngestObservation(
                workspace_id=connection.workspace_id,
                connection_id=connection.connection_id,
                event_name=event_name,
                outcome=outcome,
                reason=reason,
                event_id=event_id,
                at=at or datetime.now(UTC),
            )
        )


def json_content_type(header: str | None) -> bool:
    """Absent (lenient: some senders omit it), application/json, or a +json type."""
    if header is None or not header.strip():
        return True
    media_type = header.split(";", 1)[0].strip().lower()
    return media_type in ("application/json", "text/json") or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def observable_name(value: object) -> str | None:
    """The event name to count a rejected request under, if it is a usable one."""
    if not isinstance(value, str):
        return None
    name = value.strip()
    return name if 0 < len(name) <= bounds.MAX_EVENT_NAME_LENGTH else None


class EventsPage:
    def __init__(self, connections: ConnectionLookup, store: EventsStore) -> None:
        self._connections = connections
        self._store = store

    async def connection(self, connection_id: str) -> InternalConnection:
        try:
            return await self._connections.get(connection_id)
        except ConnectionNotFound:
            raise ApiError(404, "not_found", "No such connection.") from None
        except httpx.HTTPError:
            raise ApiError(503, "unavailable", "Connections are unavailable; try again.") from None

    async def recent(self, connection_id: str, limit: int, cursor: str | None, outcome: str | None) -> EventsList:
        """A page of the connection's recent events, newest first."""
        try:
            docs, next_cursor = await self._store.recent(connection_id, limit, cursor, outcome)
        except ValueError:
            raise ApiError(400, "invalid_parameter", "cursor is not valid.", "cursor") from None
        return EventsList(connection_id=connection_id, items=[events.item(d) for d in docs], next_cursor=next_cursor)

    async def summary(self, connection: InternalConnection) -> EventsSummary:
        """Counts per window, the last-received time and the summary's status."""
        connection_id = connection.connection_id
        counters = await self._store.window_counts(connection_id)
        windows = [events.window(name, counters[name]) for name, _, _ in events.WINDOWS]
        return EventsSummary(
            connection_id=connection_id,
            status=events.status(windows),
            last_received_at=await self._store.last_received(connection_id),
            processed_event_types=list(connection.event_types),
            windows=windows,
        )

    async def maintain(self, interval_s: float) -> None:
        """Indexes once, then pruning forever (FerretDB has no TTL indexes). Run as a task."""
        indexed = False
        while True:
            try:
                if not indexed:
                    await self._store.ensure_indexes()
                    indexed = True
                await self._store.prune()
            except PyMongoError as exc:
                log.warning("read model maintenance failed: %s", type(exc).__name__)
            await asyncio.sleep(interval_s if indexed else 5.0)
