"""One recipient identity (`liftstack_shared.recipients.recipient_key`) for assignment,
planning, attribution and ingest's event key.

The bug it fixes: results recomputed a recipient's variant from the event's email
as Iterable sent it, while ingest lowercased it for the Kafka key and Iterable itself
matches emails case-insensitively. A member listed as `Ann.Lee0@Example.com` was
assigned on that spelling; an event for `ann.lee0@example.com` (how Iterable reports
it) hashed to the other variant, so its opens were counted under a variant the
recipient never received, and the two spellings counted as two recipients.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.campaigns import AssignmentSection, Campaign, Variant
from liftstack_experiments.plan import plan_assignments
from liftstack_experiments.results import attribute
from liftstack_ingest.normalise import normalise
from liftstack_shared.messages import AudienceMember, EngagementEvent, EventType
from liftstack_shared.recipients import recipient_key

# Spelled like this, the hash puts it in B; lowercased, in A (found by search).
MIXED = "Ann.Lee0@Example.com"


def _campaign(identity: str = "email") -> Campaign:
    now = datetime.now(UTC)
    return Campaign(
        id="cmp_1",
        workspace_id="ws",
        key="spring",
        name="Spring",
        connection_id="c1",
        variants=[Variant(name="A", subject="a", html="a"), Variant(name="B", subject="b", html="b")],
        control="A",
        created_at=now,
        updated_at=now,
        created_by="u",
        assignment=AssignmentSection(status="completed", job_id="j", identity=identity),
    )


def _event(email: str | None, user_id: str | None = None) -> EngagementEvent:
    return EngagementEvent(
        event_id=f"e-{email}-{user_id}",
        workspace_id="ws",
        connection_id="c1",
        event_type=EventType.OPEN,
        iterable_event_name="emailOpen",
        email=email,
        user_id=user_id,
        occurred_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    "email,user_id,identity,expected",
    [
        ("Ann@Example.COM", None, "email", "ann@example.com"),
        (" ann@example.com ", "u-1", "email", "ann@example.com"),
        (None, "Alice@Corp", "email", "userId:Alice@Corp"),  # userIds keep their case
        ("x@placeholder.email", "u-1", "user_id", "userId:u-1"),
        ("ann@example.com", None, "user_id", "ann@example.com"),
        ("ann@example.com", "u-1", "mixed", "ann@example.com"),
        (None, None, "email", None),
        ("", "", "user_id", None),
    ],
)
def test_recipient_key(email, user_id, identity, expected):
    assert recipient_key(email, user_id, identity) == expected


def test_the_spelling_of_an_email_would_change_its_variant():
    """The premise: the hash itself is case-sensitive, so every caller must agree."""
    assert assign_variant("spring", MIXED, ["A", "B"]) != assign_variant("spring", MIXED.lower(), ["A", "B"])


def test_a_mixed_case_member_and_its_lowercase_events_are_one_recipient_in_one_variant():
    campaign = _campaign()
    plan = plan_assignments(
        job_id="j",
        workspace_id="ws",
        connection_id="c1",
        campaign_key=campaign.key,
        variants=campaign.variant_names,
        weights=campaign.weights,
        members=[AudienceMember(email=MIXED), AudienceMember(email=MIXED.lower())],
    )
    [assigned] = plan.batches[0].assignments  # one recipient, however spelled
    assert assigned.email == MIXED  # written to the profile as the list spelled it
    for spelling in (MIXED, MIXED.lower(), MIXED.upper()):
        attribution = attribute(campaign, _event(spelling))
        assert attribution is not None
        assert attribution.variant == assigned.variant, spelling
        assert attribution.engaged_id("open") == f"cmp_1|open|{MIXED.lower()}"  # counted once


def test_user_id_campaigns_attribute_by_user_id_despite_the_placeholder_email():
    campaign = _campaign("user_id")
    attribution = attribute(campaign, _event("0f3a@placeholder.email", "alice@corp"))
    assert attribution is not None and attribution.recipient == "userId:alice@corp"
    assert attribution.variant == assign_variant("spring", "userId:alice@corp", ["A", "B"])


def test_ingest_keys_events_by_the_same_recipient():
    payload = {"eventName": "emailOpen", "email": MIXED, "createdAt": "2024-01-01 00:00:00 +00:00"}
    assert normalise(payload, "c1").key == f"c1:{recipient_key(MIXED, None)}".encode()
