from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from liftstack_shared.messages.base import Message, utcnow


class IngestOutcome(StrEnum):
    PUBLISHED = "published"  # normalised and acknowledged by Kafka
    FILTERED = "filtered"  # known type the connection doesn't process
    UNKNOWN = "unknown"  # event name liftstack doesn't know
    REJECTED = "rejected"  # bad secret, bad body, ...


class IngestObservation(Message):
    """`ingest.observations`: what the gateway did with one webhook request; feeds
    the Events page (counts per type and outcome, last received)."""

    workspace_id: str
    connection_id: str
    event_name: str | None = None
    outcome: IngestOutcome
    reason: str | None = None
    event_id: str | None = None
    at: datetime = Field(default_factory=utcnow)
