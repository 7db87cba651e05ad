"""`POST /webhooks/iterable/{token}`: one Iterable webhook in, at most one event out.

Order of checks: connection (404) -> secret (403, before the body is read) ->
content type (415) -> size (413) -> JSON within `liftstack_shared.bounds` and
required fields (400, with a named code) -> event name known? (else counted
"unknown", 200) -> type processed by the connection? (else counted "filtered", 200)
-> publish and wait for Kafka's ack (else 503, so Iterable retries).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from liftstack_ingest import metrics
from liftstack_ingest.lookup import ConnectionLookup, ConnectionNotFound
from liftstack_ingest.normalise import BadPayload, normalise, parse_body
from liftstack_ingest.publisher import EventPublisher, KafkaUnavailable
from liftstack_ingest.settings import IngestSettings
from liftstack_ingest.verify import Verdict, verify
from liftstack_shared import bounds
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.errors import ApiError
from liftstack_shared.http import BodyTooLarge, read_body
from liftstack_shared.messages import IngestObservation, IngestOutcome

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/iterable/{token}"
# Tokens are URL-safe random strings; anything else can't be one, and must not reach
# the lookup (it becomes part of an internal URL path).
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
RETRY_AFTER_S = "5"


class IterableWebhook(BaseModel):
    """What Iterable posts (documentation of the body; the gateway parses it itself,
    within `liftstack_shared.bounds`). Other fields are kept in the event's `raw`."""

    model_config = ConfigDict(extra="allow")

    eventName: str
    email: str | None = None
    userId: str | None = None
    dataFields: dict[str, Any] = {}


class WebhookAccepted(BaseModel):
    """A 200 answer: the webhook was taken (published, or counted and dropped)."""

    status: Literal["published", "unknown", "filtered"]
    event_id: str


class WebhookGateway:
    def __init__(self, settings: IngestSettings, connections: ConnectionLookup, publisher: EventPublisher) -> None:
        self._settings = settings
        self._connections = connections
        self._publisher = publisher

    async def handle(self, request: Request) -> Response:
        # The token is a credential-like capability: never log it.
        token = request.path_params["token"]
        if not TOKEN_RE.fullmatch(token):
            metrics.REJECTED.labels("unknown_connection").inc()
            return _error(404, "not_found", "No connection has this webhook URL.")
        try:
            connection = await self._connections.by_webhook_token(token)
        except ConnectionNotFound:
            metrics.REJECTED.labels("unknown_connection").inc()
            return _error(404, "not_found", "No connection has this webhook URL.")
        except httpx.HTTPError as exc:
            log.warning("connection lookup failed: %s", type(exc).__name__)
            metrics.REJECTED.labels("connections_unavailable").inc()
            return _error(503, "unavailable", "Try again later.", retry=True)
        metrics.RECEIVED.inc()

        verdict = verify(request.headers, connection.webhook_secrets, connection.webhook_header)
        if verdict is not Verdict.OK:
            return self._reject(connection, 403, verdict.value, verdict.message)

        if not _json_content_type(request.headers.get("content-type")):
            return self._reject(
                connection,
                415,
                "unsupported_media_type",
                "Send the webhook as JSON (Content-Type: application/json).",
            )
        try:
            body = await read_body(request, self._settings.webhook_max_body_bytes)
        except BodyTooLarge as exc:
            return self._reject(connection, 413, exc.code, exc.message)

        received_at = datetime.now(UTC)
        event_name: str | None = None
        try:
            payload = parse_body(body)
            event_name = _observable_name(payload.get("eventName"))
            item = normalise(payload, connection.connection_id)
        except BadPayload as exc:
            return self._reject(connection, 400, exc.code, exc.message, event_name)

        if item.event_type is None:
            metrics.UNKNOWN.inc()
            self._observe(connection, item.event_name, IngestOutcome.UNKNOWN, item.event_id, received_at)
            return _accepted("unknown", item.event_id)
        if item.event_type.value not in connection.event_types:
            metrics.FILTERED.labels(item.event_type.value).inc()
            self._observe(connection, item.event_name, IngestOutcome.FILTERED, item.event_id, received_at)
            return _accepted("filtered", item.event_id)

        try:
            event = item.event(payload, connection, received_at)
        except ValidationError as exc:
            # parse_body and normalise enforce the contract's bounds, so this means
            # they disagree with it: refuse the event rather than publish a poison.
            log.error("normalised event breaks its contract: %s", exc.errors()[0]["loc"])
            return self._reject(
                connection,
                400,
                "invalid_payload",
                "The event is outside liftstack's bounds.",
                item.event_name,
            )
        try:
            await self._publisher.publish_event(event, item.key)
        except KafkaUnavailable:
            return self._reject(
                connection,
                503,
                "kafka_unavailable",
                "Try again later.",
                item.event_name,
                retry=True,
            )
        metrics.PUBLISHED.labels(item.event_type.value).inc()
        return _accepted("published", item.event_id)

    def _reject(
        self,
        connection: InternalConnection,
        status: int,
        reason: str,
        message: str,
        event_name: str | None = None,
        retry: bool = False,
    ) -> Response:
        metrics.REJECTED.labels(reason).inc()
        self._observe(connection, event_name, IngestOutcome.REJECTED, None, None, reason)
        code = "unavailable" if status == 503 else reason
        return _error(status, code, message, retry=retry)

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


def _json_content_type(header: str | None) -> bool:
    """Absent (lenient: some senders omit it), application/json, or a +json type."""
    if header is None or not header.strip():
        return True
    media_type = header.split(";", 1)[0].strip().lower()
    return media_type in ("application/json", "text/json") or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _observable_name(value: object) -> str | None:
    """The event name to count a rejected request under, if it is a usable one."""
    if not isinstance(value, str):
        return None
    name = value.strip()
    return name if 0 < len(name) <= bounds.MAX_EVENT_NAME_LENGTH else None


def _accepted(status: Literal["published", "unknown", "filtered"], event_id: str) -> Response:
    return JSONResponse(WebhookAccepted(status=status, event_id=event_id).model_dump(), status_code=200)


def _error(status: int, code: str, message: str, retry: bool = False) -> Response:
    headers = {"Retry-After": RETRY_AFTER_S} if retry else None
    return JSONResponse(ApiError(status, code, message).body(), status_code=status, headers=headers)
