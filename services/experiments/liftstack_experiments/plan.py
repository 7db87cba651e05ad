"""Planning an assignment: split a sync's members with the deterministic hash
(assign.py) and cut the writeback job into `AssignmentBatch`es. Pure.

Each unique recipient (`liftstack_shared.recipients.recipient_key`: emails
case-insensitively, else `userId:<id>`) is assigned once, on that key; results
recompute the variant from the same key, so they agree by construction.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from liftstack_experiments.assign import assign_variant
from liftstack_shared.messages import Assignment, AssignmentBatch, AudienceMember
from liftstack_shared.recipients import Identity, recipient_key

BATCH_SIZE = 1000


@dataclass(frozen=True)
class AssignmentPlan:
    job_id: str
    batches: list[AssignmentBatch]
    counts: dict[str, int]
    total: int
    identity: Identity  # how results recompute the variant
    # Recipients whose profiles the readiness gate reads back from Iterable.
    sample: list[str] = field(default_factory=list)


def plan_assignments(
    *,
    job_id: str,
    workspace_id: str,
    connection_id: str,
    campaign_key: str,
    variants: list[str],
    weights: list[float],
    members: list[AudienceMember],
) -> AssignmentPlan:
    assignments: list[Assignment] = []
    seen: set[str] = set()
    for member in members:
        # Email when the member has one, else userId (Iterable's bulkUpdate takes one).
        key = recipient_key(member.email, member.user_id)
        if key is None or key in seen:
            continue
        seen.add(key)
        variant = assign_variant(campaign_key, key, variants, weights)
        if member.email:
            assignments.append(Assignment(email=member.email, variant=variant))
        else:
            assignments.append(Assignment(user_id=member.user_id, variant=variant))
    counts = Counter(a.variant for a in assignments)
    kinds = {"email" if a.email else "user_id" for a in assignments}
    identity: Identity = "mixed" if len(kinds) > 1 else ("user_id" if kinds == {"user_id"} else "email")
    chunks = [assignments[i : i + BATCH_SIZE] for i in range(0, len(assignments), BATCH_SIZE)]
    chunks = chunks or [[]]  # an empty audience is still a (complete) job
    batches = [
        AssignmentBatch(
            job_id=job_id,
            workspace_id=workspace_id,
            connection_id=connection_id,
            campaign_key=campaign_key,
            batch_seq=seq,
            batch_count=len(chunks),
            total_recipients=len(assignments),
            assignments=chunk,
        )
        for seq, chunk in enumerate(chunks)
    ]
    return AssignmentPlan(
        job_id,
        batches,
        {v: counts.get(v, 0) for v in variants},
        len(assignments),
        identity,
        read_back_sample(job_id, seen),
    )


READ_BACK_SAMPLE = 20


def read_back_sample(job_id: str, recipients: set[str], size: int = READ_BACK_SAMPLE) -> list[str]:
    """A random-looking but reproducible sample: the recipients whose hash with the
    job id is smallest (every recipient equally likely; the same job, the same sample)."""
    return sorted(recipients, key=lambda r: hashlib.sha256(f"{job_id}|{r}".encode()).digest())[:size]
