from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from liftstack_shared.bounds import Email, EventName, Int64, JsonObject, MessageId, Timestamp, Url, UserId
from liftstack_shared.messages.base import Message, utcnow


class EventType(StrEnum):
    """liftstack's normalised event types (Iterable's names map onto these)."""

    SEND = "send"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    SUBSCRIBE = "subscribe"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    SEND_SKIP = "send_skip"
    HOSTED_UNSUBSCRIBE_CLICK = "hosted_unsubscribe_click"
    CONVERSION = "conversion"


class EngagementEvent(Message):
    """`engagement.events`: one Iterable engagement event, normalised.

    `event_id` is derived from the content (Iterable sends no delivery id), so a
    retried webhook yields the same id and counting consumers dedupe on it.

    Every field is within `liftstack_shared.bounds` (the same bounds the webhook
    gateway parses with), so whatever validates is storable by every consumer.
    """

    event_id: str = Field(min_length=1, max_length=128)
    workspace_id: str = Field(min_length=1, max_length=128)
    connection_id: str = Field(min_length=1, max_length=128)
    event_type: EventType
    iterable_event_name: EventName
    email: Email | None = None
    user_id: UserId | None = None
    campaign_id: Int64 | None = None
    template_id: Int64 | None = None
    message_id: MessageId | None = None
    url: Url | None = None
    occurred_at: Timestamp
    received_at: Timestamp = Field(default_factory=utcnow)
    raw: JsonObject = Field(default_factory=dict)
