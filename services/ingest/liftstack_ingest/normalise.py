"""Iterable webhook payload -> `EngagementEvent`.

Iterable posts one JSON object per request: `{"email", "userId"?, "eventName",
"dataFields": {...}}`. Journey webhooks (purchases, custom events) have a body the
customer writes; we read the same field names from `dataFields` or the top level.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.messages import EngagementEvent, EventType

# Iterable event name (compared case-insensitively) -> liftstack event type. Names
# not here (push, SMS, in-app, anything new) are "unknown": counted, not published.
ITERABLE_EVENT_TYPES: dict[str, EventType] = {
    name.lower(): event_type
    for name, event_type in {
        "emailSend": EventType.SEND,
        "emailOpen": EventType.OPEN,
        "emailClick": EventType.CLICK,
        "emailUnSubscribe": EventType.UNSUBSCRIBE,
        "emailSubscribe": EventType.SUBSCRIBE,
        "emailBounce": EventType.BOUNCE,
        "emailComplaint": EventType.COMPLAINT,
        "emailSendSkip": EventType.SEND_SKIP,
        "hostedUnsubscribeClick": EventType.HOSTED_UNSUBSCRIBE_CLICK,
        # Conversions arrive through journey webhooks.
        "purchase": EventType.CONVERSION,
        "customEvent": EventType.CONVERSION,
    }.items()
}

# Fields that may differ between Iterable's deliveries of one event (its internal
# bookkeeping), so they are left out of the content-derived event id.
VOLATILE_FIELDS = frozenset({"itblInternal"})

_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S.%f %z")


class BadPayload(Exception):
    """The body is not an event we can take; `code` goes into the 400 answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Normalised:
    event_name: str
    event_id: str
    # None for event names liftstack doesn't know.
    event_type: EventType | None
    email: str | None
    user_id: str | None
    key: bytes

    def event(
        self, payload: dict[str, Any], connection: InternalConnection, received_at: datetime
    ) -> EngagementEvent:
        assert self.event_type is not None
        fields = _data_fields(payload)
        return EngagementEvent(
            event_id=self.event_id,
            workspace_id=connection.workspace_id,
            connection_id=connection.connection_id,
            event_type=self.event_type,
            iterable_event_name=self.event_name,
            email=self.email,
            user_id=self.user_id,
            campaign_id=_as_int(_field(payload, fields, "campaignId")),
            template_id=_as_int(_field(payload, fields, "templateId")),
            message_id=_as_str(_field(payload, fields, "messageId")),
            url=_as_str(_field(payload, fields, "url") or _field(payload, fields, "linkUrl")),
            # Journey webhooks may omit createdAt: fall back to when we received it.
            occurred_at=parse_iterable_time(_field(payload, fields, "createdAt")) or received_at,
            received_at=received_at,
            raw=payload,
        )


def parse_body(body: bytes) -> dict[str, Any]:
    """JSON object or `BadPayload` (NaN/Infinity are not JSON and are refused)."""
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise BadPayload("invalid_json", "Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BadPayload("invalid_payload", "Request body must be one JSON object.")
    return data


def normalise(payload: dict[str, Any], connection_id: str) -> Normalised:
    name = payload.get("eventName")
    if not isinstance(name, str) or not name.strip():
        raise BadPayload("missing_event_name", "eventName is required.")
    fields = _data_fields(payload)
    email = _as_str(_field(payload, fields, "email"))
    user_id = _as_str(_field(payload, fields, "userId"))
    if not email and not user_id:
        raise BadPayload("missing_user", "email or userId is required.")
    recipient = email.lower() if email else f"userId:{user_id}"
    return Normalised(
        event_name=name.strip(),
        event_id=event_id(connection_id, payload),
        event_type=ITERABLE_EVENT_TYPES.get(name.strip().lower()),
        email=email,
        user_id=user_id,
        key=f"{connection_id}:{recipient}".encode(),
    )


def event_id(connection_id: str, payload: dict[str, Any]) -> str:
    """`ev_` + 24 hex chars of sha256 over the connection and the payload without
    volatile fields. Iterable sends no delivery id, so a retried delivery must hash
    to the same id; 24 chars stays under the 32-hex run that log redaction scrubs."""
    stable = _without_volatile(payload)
    canonical = json.dumps(
        {"c": connection_id, "p": stable}, sort_keys=True, separators=(",", ":"),
        ensure_ascii=False,
    )
    return "ev_" + hashlib.sha256(canonical.encode()).hexdigest()[:24]


def parse_iterable_time(value: Any) -> datetime | None:
    """Iterable's "2016-12-02 18:51:45 +00:00" (also with fractions), ISO 8601, or
    epoch seconds/milliseconds; None if absent or unreadable. Always UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    parsed: datetime | None = None
    for fmt in _TIME_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _data_fields(payload: dict[str, Any]) -> dict[str, Any]:
    fields = payload.get("dataFields")
    return fields if isinstance(fields, dict) else {}


def _field(payload: dict[str, Any], fields: dict[str, Any], name: str) -> Any:
    value = payload.get(name)
    return value if value not in (None, "") else fields.get(name)


def _as_str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        text = str(value).strip()
        return text or None
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
