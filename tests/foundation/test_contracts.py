"""The message contracts and their published documentation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from liftstack_shared.asyncapi import TOPIC_MESSAGES, document
from liftstack_shared.messages import Assignment, AssignmentBatch
from liftstack_shared.topics import ALL_TOPICS

REPO = Path(__file__).resolve().parents[2]


def test_every_topic_has_a_documented_message():
    assert set(TOPIC_MESSAGES) == set(ALL_TOPICS)


def test_committed_asyncapi_document_is_current():
    committed = json.loads((REPO / "docs" / "asyncapi.json").read_text())
    assert committed == document(), (
        "docs/asyncapi.json is stale: run .venv/bin/python -m liftstack_shared.asyncapi > docs/asyncapi.json"
    )


def test_asyncapi_names_every_topic_and_key():
    doc = document()
    names = set(doc["channels"])
    for topic in ALL_TOPICS:
        assert topic.name in names
        channel = doc["channels"][topic.name]
        assert f"Key: {topic.key}" in json.dumps(doc["operations"]) + json.dumps(channel)


def test_assignment_needs_exactly_one_identity():
    assert Assignment(email="a@example.com", variant="A").recipient == "a@example.com"
    with pytest.raises(ValidationError):
        Assignment(email="a@example.com", user_id="u1", variant="A")
    with pytest.raises(ValidationError):
        Assignment(variant="A")


def test_batch_rejects_out_of_range_sequence_and_unknown_fields():
    base = dict(
        job_id="j",
        workspace_id="w",
        connection_id="c",
        campaign_key="k",
        batch_count=2,
        total_recipients=1,
        assignments=[{"email": "a@example.com", "variant": "A"}],
    )
    assert AssignmentBatch(batch_seq=1, **base).batch_seq == 1
    with pytest.raises(ValidationError):
        AssignmentBatch(batch_seq=2, **base)
    with pytest.raises(ValidationError):
        AssignmentBatch(batch_seq=0, surprise=True, **base)
