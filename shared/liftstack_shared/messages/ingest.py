from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from liftstack_shared.bounds import EventName, Timestamp
from liftstack_shared.messages.base import Message, utcnow


class IngestOutcome(StrEnum):
    PUBLISHED = "published"  # normalised and acknowledged by Kafka
    FILTERED = "filtered"  # known type the connection doesn't process
    UNKNOWN = "unknown"  # event name liftstack doesn't know
    REJECTED = "rejected"  # bad secret, bad body, ...


class IngestObservation(Message):
    """`ingest.observations`: what the gateway did with one webhook request; feeds
    the Events page (counts per type and outcome, last received)."""

    workspace_id: str = Field(min_length=1, max_length=128)
    connection_id: str = Field(min_length=1, max_length=128)
    event_name: EventName | None = None
    outcome: IngestOutcome
    reason: str | None = Field(default=None, max_length=128)
    event_id: str | None = Field(default=None, max_length=128)
    at: Timestamp = Field(default_factory=utcnow)
