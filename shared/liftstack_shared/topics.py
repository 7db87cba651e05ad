"""The Kafka topic catalogue: every topic, its message, its key, in one place.

Keys are chosen on purpose:
- `campaign.assignments` is keyed by connection id, so all batches for one Iterable
  project land on one partition and one writeback consumer owns that project's rate
  budget (see README, "Scaling writeback").
- `engagement.events` is keyed by connection id + recipient, so one recipient's events
  stay in order while different recipients spread over partitions.
- `audience.progress` is keyed by sync id so the latest state of one sync is ordered.
- `connection.changed` is keyed by connection id (ordered per connection).
- `audience.members` is keyed by sync id so a sync's batches and its completion
  message stay in order for the assignment engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    key: str
    doc: str


CAMPAIGN_ASSIGNMENTS = Topic(
    "campaign.assignments",
    6,
    "connection_id",
    "Batches of (recipient, variant) to write into Iterable profiles.",
)
ENGAGEMENT_EVENTS = Topic(
    "engagement.events",
    6,
    "connection_id:recipient",
    "Normalised Iterable engagement events (opens, clicks, ...).",
)
CONNECTION_CHANGED = Topic(
    "connection.changed",
    3,
    "connection_id",
    "A connection was created, updated, tested or deleted.",
)
AUDIENCE_MEMBERS = Topic(
    "audience.members",
    6,
    "sync_id",
    "Members of a synced Iterable list, in batches, then a completion message.",
)
AUDIENCE_PROGRESS = Topic("audience.progress", 3, "sync_id", "Audience sync progress snapshots.")
INGEST_OBSERVATIONS = Topic(
    "ingest.observations",
    3,
    "connection_id",
    "What the webhook gateway saw per request (received/filtered/rejected), for the Events page read model.",
)

# One dead-letter topic per consumer, named after the topic it consumes.
WRITEBACK_DEADLETTER = Topic(
    "campaign.assignments.deadletter",
    1,
    "connection_id",
    "Assignment batches the writeback consumer could not process, with the reason.",
)
ENGAGEMENT_DEADLETTER = Topic(
    "engagement.events.deadletter",
    1,
    "connection_id",
    "Engagement events the counting consumers could not process, with the reason.",
)

CONNECTION_CHANGED_DEADLETTER = Topic(
    "connection.changed.deadletter",
    1,
    "connection_id",
    "connection.changed messages a cache-invalidation listener could not process.",
)
AUDIENCE_MEMBERS_DEADLETTER = Topic(
    "audience.members.deadletter",
    1,
    "sync_id",
    "audience.members messages the assignment engine could not read, with the reason.",
)
# Dead-letter topics, for `liftstack deadletters list|replay`.
DEADLETTER_TOPICS: tuple[Topic, ...] = (
    WRITEBACK_DEADLETTER,
    ENGAGEMENT_DEADLETTER,
    CONNECTION_CHANGED_DEADLETTER,
    AUDIENCE_MEMBERS_DEADLETTER,
)

ALL_TOPICS: tuple[Topic, ...] = (
    CAMPAIGN_ASSIGNMENTS,
    ENGAGEMENT_EVENTS,
    CONNECTION_CHANGED,
    AUDIENCE_MEMBERS,
    AUDIENCE_PROGRESS,
    INGEST_OBSERVATIONS,
    WRITEBACK_DEADLETTER,
    ENGAGEMENT_DEADLETTER,
    CONNECTION_CHANGED_DEADLETTER,
    AUDIENCE_MEMBERS_DEADLETTER,
)
