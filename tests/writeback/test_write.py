"""Assignments end to end: Kafka -> writeback -> the Iterable sandbox, with exact
counts in MongoDB."""

from __future__ import annotations

from liftstack_shared.messages import Assignment
from tests.writeback.conftest import Env, emails, make_batches


async def test_writes_variant_and_keeps_other_campaigns_assignments(env: Env) -> None:
    # Profiles that already carry another campaign's assignment and other fields.
    env.sandbox.put_users(
        env.project,
        [
            {"email": "user0@example.com", "dataFields": {"lf_assignments": {"winter-promo": "C"}, "firstName": "Ada"}},
            {"email": "user1@example.com", "dataFields": {"lf_assignments": {"winter-promo": "A"}}},
            {"userId": "u-42", "email": "u42@example.com", "dataFields": {"lf_assignments": {"winter-promo": "B"}}},
        ],
    )
    assignments = emails(25) + [Assignment(user_id="u-42", variant="B")]
    batches = make_batches(assignments, batch_size=10, campaign_key="spring-sale")
    job_id = batches[0].job_id
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, job_id)

    assert summary.status == "completed"
    assert (summary.written, summary.succeeded, summary.failed) == (26, 26, 0)
    assert summary.batches_done == 3
    user0 = env.sandbox.user(env.project, "user0@example.com")
    assert user0["dataFields"]["lf_assignments"] == {"winter-promo": "C", "spring-sale": "A"}
    assert user0["dataFields"]["firstName"] == "Ada"
    assert env.sandbox.user(env.project, "user1@example.com")["dataFields"]["lf_assignments"] == {
        "winter-promo": "A",
        "spring-sale": "B",
    }
    assert env.sandbox.user(env.project, "u-42")["dataFields"]["lf_assignments"] == {
        "winter-promo": "B",
        "spring-sale": "B",
    }
    # New profiles get just this campaign's key.
    assert env.sandbox.user(env.project, "user7@example.com")["dataFields"] == {"lf_assignments": {"spring-sale": "B"}}
    # One request per batch of 10 (well under 1,000 users and 4 MB).
    assert sum(env.sandbox.stats(env.project)["users/bulkUpdate"].values()) == 3


async def test_large_batch_is_packed_into_requests_of_at_most_1000_users(env: Env) -> None:
    env.sandbox.configure(env.project, rate_limits=False)
    batches = make_batches(emails(2500, prefix="big"), batch_size=2500)
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    assert (summary.written, summary.succeeded, summary.failed) == (2500, 2500, 0)
    assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {200: 3}
    assert env.sandbox.user(env.project, "big2499@example.com")["dataFields"]["lf_assignments"] == {"spring-sale": "B"}


async def test_partial_failures_are_counted_per_user_with_reasons(env: Env) -> None:
    env.sandbox.put_users(env.project, [{"email": "gone@example.com", "dataFields": {}}])
    env.sandbox.forget(env.project, "gone@example.com")
    assignments = [
        *emails(8),
        Assignment(email="not-an-email", variant="A"),
        Assignment(email="gone@example.com", variant="B"),
        Assignment(user_id="nobody-has-this-id", variant="A"),  # email-based project
    ]
    batches = make_batches(assignments, batch_size=4)
    job_id = batches[0].job_id
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, job_id)

    assert summary.status == "completed_with_failures"
    assert summary.written == summary.succeeded + summary.failed == 11
    assert summary.succeeded == 8
    # Iterable names an unknown userId only in the deprecated invalidUserIds list.
    assert summary.failed_by_reason == {"invalid": 2, "forgotten": 1}
    failures = []
    for seq in range(len(batches)):
        failures += await svc.store.failures_of(job_id, 1, seq)
    assert sorted(failures) == sorted(
        [
            ("not-an-email", "invalid"),
            ("gone@example.com", "forgotten"),
            ("userId:nobody-has-this-id", "invalid"),
        ]
    )
    # Nothing bulkUpdate reports is resubmitted: one request per batch.
    assert sum(env.sandbox.stats(env.project)["users/bulkUpdate"].values()) == len(batches)
    # The forgotten user was not written; the others were.
    assert env.sandbox.user(env.project, "user3@example.com")["dataFields"]["lf_assignments"] == {"spring-sale": "B"}


async def test_a_dropped_lf_assignments_field_fails_those_users(env: Env) -> None:
    """Iterable drops fields past the project's field limit (filteredOutFields) and
    counts the user as a success; the template would then render the control for
    them. Such users fail with `field_dropped`."""
    env.sandbox.put_users(
        env.project,
        [
            {"email": "user0@example.com", "dataFields": {"lf_assignments": {"winter-promo": "C"}}},
        ],
    )
    # lf_assignments and lf_assignments.winter-promo exist: no room for a new key.
    env.sandbox.configure(env.project, field_limit=2)
    batches = make_batches(emails(6), batch_size=3, campaign_key="spring-sale")
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    assert summary.status == "failed"
    assert (summary.written, summary.succeeded, summary.failed) == (6, 0, 6)
    assert summary.failed_by_reason == {"field_dropped": 6}
    assert await svc.store.failures_of(batches[0].job_id, 1, 0) == [
        ("user0@example.com", "field_dropped"),
        ("user1@example.com", "field_dropped"),
        ("user2@example.com", "field_dropped"),
    ]
    assert env.sandbox.user(env.project, "user0@example.com")["dataFields"]["lf_assignments"] == {"winter-promo": "C"}


async def test_fail_count_without_named_users_is_surfaced(env: Env) -> None:
    env.sandbox.faults(env.project, bulk_unnamed_failures=True)
    assignments = [
        *emails(3),
        Assignment(user_id="nobody-1", variant="A"),
        Assignment(user_id="nobody-2", variant="B"),
    ]  # email-based project: fail
    batches = make_batches(assignments, batch_size=5)
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    # Which users failed is unknown, but that two did is not dropped.
    assert summary.unattributed_failures == 2
    assert summary.status == "completed_with_failures"
    # The wizard's view of the run (the saved summary once final) says so too.
    header = await svc.service.job(env.workspace_id, batches[0].job_id)
    assert header is not None
    assert [run.unattributed_failures for run in await svc.service.runs(header)] == [2]


async def test_user_id_project_members_with_at_signs_are_written_by_user_id(env: Env) -> None:
    """In a userID-based project, `alice@corp` and `bob@corp.example` are userIds:
    bulkUpdate must name them as `userId` (the project refuses unknown emails, and
    `alice@corp` is no email at all)."""
    env.project = env.sandbox.create_project(identity="userId")
    env.key = env.sandbox.create_key(env.project)
    env.credentials.add(
        workspace_id=env.workspace_id, connection_id=env.connection_id, api_key=env.key, project_type="userId"
    )
    env.sandbox.put_users(env.project, [{"userId": "bob@corp.example", "dataFields": {"team": "ops"}}])
    assignments = [Assignment(user_id="alice@corp", variant="A"), Assignment(user_id="bob@corp.example", variant="B")]
    batches = make_batches(assignments, batch_size=10)
    svc = await env.instance()
    await env.publish(batches)

    summary = await env.wait_run(svc, batches[0].job_id)

    assert (summary.status, summary.succeeded, summary.failed) == ("completed", 2, 0)
    alice = env.sandbox.user(env.project, "alice@corp")
    bob = env.sandbox.user(env.project, "bob@corp.example")
    # Created by userId: only Iterable's placeholder email, never "alice@corp".
    assert alice["userId"] == "alice@corp" and alice["email"].endswith("@placeholder.email")
    assert alice["dataFields"]["lf_assignments"] == {"spring-sale": "A"}
    assert bob["dataFields"] == {"team": "ops", "lf_assignments": {"spring-sale": "B"}}
