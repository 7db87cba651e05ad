"""Versioned pydantic contracts for every Kafka message (see `topics.py` for keys).

A consumer validates with the model of its topic; anything that fails validation goes
to that consumer's dead-letter topic with the reason. Adding optional fields is a
compatible change; anything else bumps `schema_version`.
"""

from liftstack_shared.messages.assignments import Assignment, AssignmentBatch
from liftstack_shared.messages.audience import (
    AudienceMember,
    AudienceMembersBatch,
    AudienceSyncCompleted,
    AudienceSyncProgress,
)
from liftstack_shared.messages.base import Message, utcnow
from liftstack_shared.messages.connections import ConnectionChanged
from liftstack_shared.messages.deadletter import DeadLetter
from liftstack_shared.messages.engagement import EngagementEvent, EventType
from liftstack_shared.messages.ingest import IngestObservation, IngestOutcome

__all__ = [
    "Assignment",
    "AssignmentBatch",
    "AudienceMember",
    "AudienceMembersBatch",
    "AudienceSyncCompleted",
    "AudienceSyncProgress",
    "ConnectionChanged",
    "DeadLetter",
    "EngagementEvent",
    "EventType",
    "IngestObservation",
    "IngestOutcome",
    "Message",
    "utcnow",
]
