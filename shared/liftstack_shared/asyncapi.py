"""The AsyncAPI document for every liftstack topic, from the same pydantic models
and topic catalogue the services use. Regenerate with

    .venv/bin/python -m liftstack_shared.asyncapi > docs/asyncapi.json

A test checks the committed file is current, so it never drifts from the code.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from liftstack_shared import messages as m
from liftstack_shared import topics as t

# Which model travels on which topic. `audience.members` carries two kinds of
# message, told apart by their `kind` field.
TOPIC_MESSAGES: dict[t.Topic, object] = {
    t.CAMPAIGN_ASSIGNMENTS: m.AssignmentBatch,
    t.ENGAGEMENT_EVENTS: m.EngagementEvent,
    t.CONNECTION_CHANGED: m.ConnectionChanged,
    t.AUDIENCE_MEMBERS: m.AudienceMembersBatch | m.AudienceSyncCompleted,
    t.AUDIENCE_PROGRESS: m.AudienceSyncProgress,
    t.INGEST_OBSERVATIONS: m.IngestObservation,
    t.WRITEBACK_DEADLETTER: m.DeadLetter,
    t.ENGAGEMENT_DEADLETTER: m.DeadLetter,
    t.CONNECTION_CHANGED_DEADLETTER: m.DeadLetter,
    t.AUDIENCE_MEMBERS_DEADLETTER: m.DeadLetter,
}


def specification() -> AsyncAPI:
    broker = KafkaBroker("kafka:9092", description="liftstack's Kafka cluster")
    for topic, model in TOPIC_MESSAGES.items():
        broker.publisher(
            topic.name,
            title=topic.name,
            description=f"{topic.doc} Key: {topic.key}. Partitions: {topic.partitions}.",
            schema=model,
        )
    return AsyncAPI(
        broker,
        title="liftstack topics",
        version="1",
        description="Every Kafka topic liftstack uses, its message schema and its key.",
    )


def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(specification().to_specification().to_json())
    return doc


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
