"""Iterable webhook payload -> `EngagementEvent`.

Iterable posts one JSON object per request: `{"email", "userId"?, "eventName",
"dataFields": {...}}`. Journey webhooks (purchases, custom events) have a body the
customer writes; we read the same field names from `dataFields` or the top level.

Everything is parsed against `liftstack_shared.bounds` (the same bounds the
`EngagementEvent` contract enforces): what passes here is storable by every
consumer, what doesn't is a `BadPayload` with a named code (a 400).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from liftstack_shared import bounds
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.messages import EngagementEvent, EventType
from liftstack_shared.recipients import recipient_key

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
# The first two formats' common shape ("2016-12-02 18:51:45 +00:00", fractions of up
# to 6 digits, offset with or without the colon), parsed without strptime.
_ITERABLE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?"
    r" ([+-])([0-9]{2}):?([0-9]{2})",
    re.ASCII,
)
# Epoch numbers above this are milliseconds (1e11 s is the year 5138).
_MILLIS_FROM = 1e11
_INT64_TEXT = re.compile(r"-?[0-9]{1,19}")
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]{1,19}(\.[0-9]{1,9})?")


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
    campaign_id: int | None = None
    template_id: int | None = None
    message_id: str | None = None
    url: str | None = None
    occurred_at: datetime | None = None

    def event(self, payload: dict[str, Any], connection: InternalConnection, received_at: datetime) -> EngagementEvent:
        assert self.event_type is not None
        # The contract enforces the same bounds as the parsing above; a failure here
        # is a bug on our side, not a bad request.
        return EngagementEvent(
            event_id=self.event_id,
            workspace_id=connection.workspace_id,
            connection_id=connection.connection_id,
            event_type=self.event_type,
            iterable_event_name=self.event_name,
            email=self.email,
            user_id=self.user_id,
            campaign_id=self.campaign_id,
            template_id=self.template_id,
            message_id=self.message_id,
            url=self.url,
            # Journey webhooks may omit createdAt: fall back to when we received it.
            occurred_at=self.occurred_at or received_at,
            received_at=received_at,
            raw=payload,
        )


def parse_body(body: bytes) -> dict[str, Any]:
    """A JSON object within `liftstack_shared.bounds`, or `BadPayload` (codes:
    invalid_encoding, invalid_json, invalid_payload, too_deep, duplicate_key,
    number_out_of_range, invalid_string, string_too_long, invalid_key,
    too_many_items)."""
    try:
        return bounds.parse_json_object(body)
    except bounds.OutOfBounds as exc:
        raise BadPayload(exc.code, exc.message) from None


def normalise(payload: dict[str, Any], connection_id: str) -> Normalised:
    """The fields liftstack uses, each checked against its bound. `payload` must
    come from `parse_body` (so it is already within the generic bounds)."""
    name = payload.get("eventName")
    if not isinstance(name, str) or not name.strip():
        raise BadPayload("missing_event_name", "eventName is required.")
    name = name.strip()
    if len(name) > bounds.MAX_EVENT_NAME_LENGTH:
        raise BadPayload("invalid_event_name", f"eventName is over {bounds.MAX_EVENT_NAME_LENGTH} characters.")
    fields = _data_fields(payload)
    email = _text(payload, fields, "email", bounds.MAX_EMAIL_LENGTH)
    user_id = _text(payload, fields, "userId", bounds.MAX_USER_ID_LENGTH)
    if not email and not user_id:
        raise BadPayload("missing_user", "email or userId is required.")
    recipient = recipient_key(email, user_id)
    return Normalised(
        event_name=name,
        event_id=event_id(connection_id, payload),
        event_type=ITERABLE_EVENT_TYPES.get(name.lower()),
        email=email,
        user_id=user_id,
        key=f"{connection_id}:{recipient}".encode(),
        campaign_id=_id(payload, fields, "campaignId"),
        template_id=_id(payload, fields, "templateId"),
        message_id=_text(payload, fields, "messageId", bounds.MAX_MESSAGE_ID_LENGTH),
        url=_text(payload, fields, "url", bounds.MAX_URL_LENGTH)
        or _text(payload, fields, "linkUrl", bounds.MAX_URL_LENGTH),
        occurred_at=_created_at(_field(payload, fields, "createdAt")),
    )


def event_id(connection_id: str, payload: dict[str, Any]) -> str:
    """`ev_` + 24 hex chars of sha256 over the connection and the payload without
    volatile fields. Iterable sends no delivery id, so a retried delivery must hash
    to the same id; 24 chars stays under the 32-hex run that log redaction scrubs."""
    floats: list[float] = []
    stable = _without_volatile(payload, floats)
    document = {"c": connection_id, "p": stable}
    if floats:
        # The stdlib's float text ("1e+16") differs from orjson's ("1e16"); the id
        # must not change with the serialiser, so floats keep the original one.
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    else:
        # Byte for byte what the json.dumps above gives for ints, strings and
        # literals (tests/ingest/test_normalise.py checks), several times faster.
        canonical = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return "ev_" + hashlib.sha256(canonical).hexdigest()[:24]


def parse_iterable_time(value: Any) -> datetime | None:
    """Iterable's "2016-12-02 18:51:45 +00:00" (also with fractions), ISO 8601, or
    epoch seconds/milliseconds; None if absent or unreadable. Always UTC."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return _from_epoch(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return _from_epoch(float(text))
    fast = _ITERABLE_TIME.fullmatch(text)
    if fast and (quick := _from_iterable_time(fast)) is not None:
        return quick  # Iterable's own format, without strptime's cost
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
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 shifted by its offset
        return None


def _from_iterable_time(match: re.Match[str]) -> datetime | None:
    """None for anything unusual (an offset of 24 h or more, a bad date): the
    strptime path then gives its exact answer."""
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if int(off_h) > 23 or int(off_m) > 59:
        return None
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), int((fraction or "0").ljust(6, "0"))
        )
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        return (local - offset if sign == "+" else local + offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # day 31 of April, or shifted past year 1/9999
        return None


def _from_epoch(value: float) -> datetime | None:
    seconds = value / 1000 if abs(value) > _MILLIS_FROM else value
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _created_at(value: Any) -> datetime | None:
    """None when absent; BadPayload when present but unreadable or out of range."""
    if value is None or value == "":
        return None
    parsed = parse_iterable_time(value)
    if parsed is None:
        raise BadPayload(
            "invalid_created_at",
            'createdAt is not a time ("2016-12-02 18:51:45 +00:00", ISO 8601 or epoch seconds/milliseconds).',
        )
    try:
        return bounds.check_timestamp(parsed)
    except bounds.OutOfBounds as exc:
        raise BadPayload("invalid_created_at", exc.message) from None


def _data_fields(payload: dict[str, Any]) -> dict[str, Any]:
    fields = payload.get("dataFields")
    return fields if isinstance(fields, dict) else {}


def _field(payload: dict[str, Any], fields: dict[str, Any], name: str) -> Any:
    value = payload.get(name)
    return value if value not in (None, "") else fields.get(name)


def _text(payload: dict[str, Any], fields: dict[str, Any], name: str, max_length: int) -> str | None:
    """A string (or integer) field, stripped; None if absent or not text;
    BadPayload if longer than its bound."""
    value = _field(payload, fields, name)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()  # ints are int64 (parse_body), so str() is cheap
    if len(text) > max_length:
        raise BadPayload(f"invalid_{_snake(name)}", f"{name} is over {max_length} characters.")
    return text or None


def _id(payload: dict[str, Any], fields: dict[str, Any], name: str) -> int | None:
    """An Iterable id: a 64-bit integer, or a string of one. Absent or not a number
    -> None; a number outside 64 bits -> BadPayload."""
    value = _field(payload, fields, name)
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _INT64_TEXT.fullmatch(value.strip()):
        value = int(value.strip())
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        raise BadPayload(f"invalid_{_snake(name)}", f"{name} is outside the 64-bit range.")
    if not isinstance(value, int):
        return None
    try:
        return bounds.check_int64(value)
    except bounds.OutOfBounds:
        raise BadPayload(f"invalid_{_snake(name)}", f"{name} is outside the 64-bit range.") from None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _without_volatile(value: Any, floats: list[float]) -> Any:
    """`value` without VOLATILE_FIELDS at any level; floats found are appended to `floats`."""
    if isinstance(value, dict):
        return {k: _without_volatile(v, floats) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [_without_volatile(v, floats) for v in value]
    if isinstance(value, float):
        floats.append(value)
    return value
