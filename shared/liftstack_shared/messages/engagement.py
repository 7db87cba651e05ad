from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

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
    """

    event_id: str
    workspace_id: str
    connection_id: str
    event_type: EventType
    iterable_event_name: str
    email: str | None = None
    user_id: str | None = None
    campaign_id: int | None = None
    template_id: int | None = None
    message_id: str | None = None
    url: str | None = None
    occurred_at: datetime
    received_at: datetime = Field(default_factory=utcnow)
    raw: dict[str, Any] = Field(default_factory=dict)
