"""The HTTP bodies of ingest's API: what a webhook is and is answered with, and what
the Events page endpoints return."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Outcome = Literal["published", "filtered", "unknown", "rejected", "failed_downstream"]
Accepted = Literal["published", "unknown", "filtered"]


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

    status: Accepted
    event_id: str


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
