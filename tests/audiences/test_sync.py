"""Audience syncs end to end: sandbox getUsers -> service -> real Kafka and Mongo."""

from __future__ import annotations

import asyncio
from collections import Counter

from liftstack_sandbox import lists as sandbox_lists
from tests.audiences.conftest import members_of, read_progress, read_sync


async def test_small_list_is_published_with_completion_and_progress(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "VIP", ["ada@example.com", "grace@example.com", "linus@example.com"])
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            record = await svc.wait(http, sync_id)

    assert record["status"] == "completed", record
    assert record["members"] == 3 and record["invalid_skipped"] == 0
    assert record["duplicates_skipped"] == 0 and record["batches"] == 1
    assert record["list_name"] == "VIP" and record["list_type"] == "list"
    assert record["started_at"] and record["finished_at"] and record["error"] is None

    batches, completions = await read_sync(svc.settings, sync_id)
    assert sorted(members_of(batches)) == ["ada@example.com", "grace@example.com", "linus@example.com"]
    assert [b["batch_seq"] for b in batches] == [0]
    assert batches[0]["workspace_id"] == svc.workspace_id
    assert batches[0]["connection_id"] == svc.connection_id and batches[0]["list_id"] == list_id
    [done] = completions
    assert (done["member_count"], done["batch_count"]) == (3, 1)
    assert (done["invalid_skipped"], done["duplicates_skipped"]) == (0, 0)

    statuses = [m["status"] for m in await read_progress(svc.settings, sync_id)]
    assert statuses[0] == "pending" and "running" in statuses and statuses[-1] == "completed"


async def test_invalid_and_duplicate_lines_are_counted_and_skipped(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Newsletter", generate=1_000)
    sandbox.faults(project, stream_invalid_every=7, stream_duplicate_every=5, seed=42)
    # What the sandbox will stream, line by line (the client drops blank lines).
    p = sandbox.project(project)
    body = b"".join(sandbox_lists.stream_lines(p, p.lists[list_id], False, 1000, p.config.faults.model_copy())).decode()
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    genuine = {f"user{i}@example.com" for i in range(1_000)}
    expected_invalid = sum(1 for line in lines if line not in genuine)
    expected_duplicates = sum(1 for line in lines if line in genuine) - len(genuine)
    assert expected_invalid > 50 and expected_duplicates > 100  # the faults are really on

    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            record = await svc.wait(http, sync_id)

    assert record["status"] == "completed", record
    assert record["members"] == 1_000
    assert record["invalid_skipped"] == expected_invalid
    assert record["duplicates_skipped"] == expected_duplicates
    batches, [done] = await read_sync(svc.settings, sync_id)
    published = members_of(batches)
    assert len(published) == len(set(published)) == 1_000 and set(published) == genuine
    assert done["member_count"] == 1_000 and done["batch_count"] == len(batches) == 10
    assert done["invalid_skipped"] == expected_invalid
    assert done["duplicates_skipped"] == expected_duplicates


async def test_user_ids_and_case_insensitive_email_duplicates(make_service, sandbox):
    project = sandbox.create_project(identity="hybrid")
    list_id = sandbox.create_list(project, "Mixed", ["ada@example.com", "u-42", "u 43"])
    # Iterable stores emails lowercase: the same address in another case is the same
    # profile (case-insensitive de-duplication of lines is covered in test_units).
    assert sandbox.add_members(project, list_id, ["Ada@Example.com"]) == 0
    with make_service() as svc:
        svc.connect(sandbox.create_key(project), project_type="hybrid")
        async with svc.client() as http:
            by_email = await svc.wait(http, await svc.start_sync(http, list_id))
            by_user_id = await svc.wait(http, await svc.start_sync(http, list_id, prefer_user_id=True))

    # Without preferUserId every line is an email: userId-only users have Iterable's
    # placeholder address.
    email_batches, _ = await read_sync(svc.settings, by_email["sync_id"])
    published = members_of(email_batches)
    assert (by_email["members"], by_email["duplicates_skipped"], by_email["invalid_skipped"]) == (3, 0, 0)
    assert published[0] == "ada@example.com"
    assert sum(m.endswith("@placeholder.email") for m in published) == 2
    # With it, the userIds (one with a space: valid for Iterable); Ada has none.
    user_batches, _ = await read_sync(svc.settings, by_user_id["sync_id"])
    assert sorted(members_of(user_batches)) == ["ada@example.com", "u 43", "u-42"]
    assert (by_user_id["members"], by_user_id["duplicates_skipped"]) == (3, 0)
    assert all((m["user_id"] is None) != (m["email"] is None) for b in user_batches for m in b["members"])


async def test_user_id_project_members_with_at_signs_stay_user_ids(make_service, sandbox):
    """In a userID-based project, `alice@corp.example` is a userId: published as one,
    so writeback writes that user's profile, not an email's."""
    project = sandbox.create_project(identity="userId")
    list_id = sandbox.create_list(project, "Staff", ["alice@corp.example", "u-2"])
    with make_service() as svc:
        svc.connect(sandbox.create_key(project), project_type="userId")
        async with svc.client() as http:
            # No identity in the request: the connection's project type rules.
            done = await svc.wait(http, await svc.start_sync(http, list_id))
    batches, _ = await read_sync(svc.settings, done["sync_id"])
    members = [m for b in batches for m in b["members"]]
    assert sorted(m["user_id"] for m in members) == ["alice@corp.example", "u-2"]
    assert all(m["email"] is None for m in members)
    assert (done["members"], done["invalid_skipped"], done["identity"]) == (2, 0, "userId")


async def test_stream_cut_mid_way_restarts_without_resending(make_service, sandbox):
    """The getUsers stream drops after 2,550 lines; the sync re-reads the list (paced
    at Iterable's 5/min) and publishes only members not yet acknowledged."""
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Big", generate=5_000)
    sandbox.faults(project, paths=["/api/lists/getUsers"], stream_cut_after_lines=2_550)
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            # The sandbox snapshots its fault config when a request is answered, so the
            # first stream still breaks; the restart (>=13 s later) reads it whole.
            await _until(lambda: sandbox.stats(project).get("lists/getUsers", {}).get(200, 0) >= 1)
            sandbox.faults(project, stream_cut_after_lines=None)
            record = await svc.wait(http, sync_id)

    assert record["status"] == "completed", record
    assert record["stream_attempts"] == 2 and record["runs"] == 1
    assert record["members"] == 5_000 and record["duplicates_skipped"] == 0
    batches, [done] = await read_sync(svc.settings, sync_id)
    published = members_of(batches)
    assert len(published) == len(set(published)) == 5_000  # nothing re-sent
    assert [b["batch_seq"] for b in batches] == list(range(50))
    assert done["member_count"] == 5_000 and done["batch_count"] == 50
    assert sandbox.stats(project)["lists/getUsers"][200] == 2


async def test_restart_after_the_list_changed_still_publishes_every_member(make_service, sandbox):
    """Between the broken stream and the restart a member leaves the list, so every
    later line moves up by one: user2500, never acknowledged, now falls inside the
    replayed part of the stream and must still be published (exactly once)."""
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Moving", generate=5_000)
    sandbox.faults(project, paths=["/api/lists/getUsers"], stream_cut_after_lines=2_550)
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            await _until(lambda: sandbox.stats(project).get("lists/getUsers", {}).get(200, 0) >= 1)
            sandbox.faults(project, stream_cut_after_lines=None)
            # Change the list only once the first stream is over (2,500 acked).
            while (await http.get(svc.sync_path(sync_id))).json()["members"] < 2_500:
                await asyncio.sleep(0.05)
            sandbox.forget(project, "user10@example.com")
            record = await svc.wait(http, sync_id)

    assert record["status"] == "completed" and record["stream_attempts"] == 2, record
    batches, [done] = await read_sync(svc.settings, sync_id)
    published = members_of(batches)
    # user10 was published before it left; everyone else is a member now.
    assert len(published) == len(set(published)) == 5_000
    assert set(published) == {f"user{i}@example.com" for i in range(5_000)}
    assert done["member_count"] == record["members"] == 5_000


async def test_failed_sync_retried_with_same_id_yields_the_same_member_set(make_service, sandbox):
    """A sync that gives up (stream keeps breaking) fails with a clear error; a retry of
    the same sync id resumes from its checkpoint: together the two runs publish every
    member exactly once, then one completion."""
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Big", generate=3_000)
    sandbox.faults(project, paths=["/api/lists/getUsers"], stream_cut_after_lines=1_234)
    with make_service(audience_max_stream_attempts=1) as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            failed = await svc.wait(http, sync_id)
            assert failed["status"] == "failed"
            assert failed["error"]["code"] == "iterable_unavailable"
            assert "broke after" in failed["error"]["message"]
            assert failed["members"] == 1_200  # 12 acknowledged batches of 100

            sandbox.faults(project, stream_cut_after_lines=None)
            retry = await http.post(svc.sync_path(sync_id) + "/retry")
            assert retry.status_code == 202, retry.text
            assert retry.json()["sync_id"] == sync_id
            record = await svc.wait(http, sync_id)
            again = await http.post(svc.sync_path(sync_id) + "/retry")

    assert record["status"] == "completed", record
    assert record["runs"] == 2 and record["members"] == 3_000 and record["error"] is None
    batches, completions = await read_sync(svc.settings, sync_id)
    published = members_of(batches)
    assert len(published) == len(set(published)) == 3_000
    assert set(published) == {f"user{i}@example.com" for i in range(3_000)}
    assert [b["batch_seq"] for b in batches] == list(range(30))
    assert len(completions) == 1 and completions[0]["member_count"] == 3_000
    assert again.status_code == 409 and again.json()["error"]["code"] == "sync_completed"


async def test_resync_of_the_same_audience_has_no_duplicate_members(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Weekly", generate=700)
    sandbox.faults(project, stream_duplicate_every=3, seed=1)
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            first = await svc.wait(http, await svc.start_sync(http, list_id))
            second = await svc.wait(http, await svc.start_sync(http, list_id))

    assert first["sync_id"] != second["sync_id"]
    member_sets = []
    for record in (first, second):
        assert record["status"] == "completed" and record["members"] == 700
        assert record["duplicates_skipped"] > 200
        batches, [done] = await read_sync(svc.settings, record["sync_id"])
        published = members_of(batches)
        assert not [m for m, n in Counter(published).items() if n > 1]
        assert done["member_count"] == len(published) == 700
        member_sets.append(set(published))
    assert member_sets[0] == member_sets[1]


async def test_iterable_down_during_sync_fails_clearly(make_service, sandbox):
    project = sandbox.create_project(rate_limits=False)
    list_id = sandbox.create_list(project, "Any", generate=10)
    with make_service(fast=True, audience_max_stream_attempts=2) as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sandbox.faults(project, paths=["/api/lists/getUsers"], fail_next=100, fail_status=503)
            record = await svc.wait(http, await svc.start_sync(http, list_id))

    assert record["status"] == "failed"
    assert record["error"]["code"] == "iterable_unavailable"
    assert "Iterable is not answering" in record["error"]["message"]
    assert record["stream_attempts"] == 2


async def test_permission_lost_during_sync_fails_clearly(make_service, sandbox):
    """A key that stops being allowed to read members (disabled, or its privileges
    cut) between runs: the background run fails with a clear error."""
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Any", generate=500)
    key = sandbox.create_key(project)
    sandbox.faults(project, paths=["/api/lists/getUsers"], stream_cut_after_lines=150)
    with make_service(audience_max_stream_attempts=1) as svc:
        svc.connect(key)
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            assert (await svc.wait(http, sync_id))["status"] == "failed"
            sandbox.disable_key(project, key)
            assert (await http.post(svc.sync_path(sync_id) + "/retry")).status_code == 202
            record = await svc.wait(http, sync_id)

    assert record["status"] == "failed" and record["runs"] == 2
    assert record["error"]["code"] == "iterable_permission_denied"
    assert "Disabled API key or insufficient privileges" in record["error"]["message"]
    assert key not in str(record)


async def _until(predicate, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
