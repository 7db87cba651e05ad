"""A sync survives its service stopping: the state file on disk lets a new instance
resume the same sync id, and a dead process's sync can be taken over."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from liftstack_shared.messages import utcnow
from tests.audiences.conftest import members_of, read_sync


async def test_service_stopped_mid_sync_resumes_in_a_new_instance(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Large", generate=60_000)
    key = sandbox.create_key(project)
    with make_service() as first:
        first.connect(key)
        async with first.client() as http:
            sync_id = await first.start_sync(http, list_id)
            while (await http.get(first.sync_path(sync_id))).json()["members"] < 3_000:
                await asyncio.sleep(0.02)
    # The service has shut down in the middle of the sync.
    with make_service() as second:
        second.workspace_id = first.workspace_id
        second.connect(key, connection_id=first.connection_id)
        async with second.client() as http:
            interrupted = (await http.get(second.sync_path(sync_id))).json()
            retry = await http.post(second.sync_path(sync_id) + "/retry")
            record = await second.wait(http, sync_id)

    assert interrupted["status"] == "failed", interrupted
    assert interrupted["error"]["code"] == "interrupted"
    assert 3_000 <= interrupted["members"] < 60_000
    assert retry.status_code == 202, retry.text
    assert record["status"] == "completed" and record["runs"] == 2
    batches, completions = await read_sync(second.settings, sync_id)
    published = members_of(batches)
    assert len(published) == len(set(published)) == 60_000
    assert [b["batch_seq"] for b in batches] == list(range(600))
    assert len(completions) == 1 and completions[0]["member_count"] == 60_000
    assert not list((second.settings.audience_state_dir).glob("*.sqlite"))  # cleaned up


async def test_only_a_dead_sync_can_be_taken_over(make_service, sandbox, mongo_client):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Any", generate=300)
    sandbox.faults(project, paths=["/api/lists/getUsers"], stream_cut_after_lines=150)
    with make_service(audience_max_stream_attempts=1) as svc:
        svc.connect(sandbox.create_key(project))
        syncs = mongo_client[svc.settings.mongo_db]["audience_syncs"]
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            assert (await svc.wait(http, sync_id))["status"] == "failed"
            sandbox.faults(project, stream_cut_after_lines=None)
            # As if another replica were running it right now...
            await syncs.update_one({"_id": sync_id}, {"$set": {"status": "running", "updated_at": utcnow()}})
            alive = await http.post(svc.sync_path(sync_id) + "/retry")
            # ...and as if that replica died a while ago (no heartbeat since).
            await syncs.update_one({"_id": sync_id}, {"$set": {"updated_at": utcnow() - timedelta(minutes=5)}})
            dead = await http.post(svc.sync_path(sync_id) + "/retry")
            record = await svc.wait(http, sync_id)

    assert alive.status_code == 409 and alive.json()["error"]["code"] == "sync_active"
    assert dead.status_code == 202
    assert record["status"] == "completed" and record["members"] == 300
    batches, _ = await read_sync(svc.settings, sync_id)
    assert sorted(members_of(batches)) == sorted(f"user{i}@example.com" for i in range(300))


async def test_retry_without_the_state_file_resends_with_fresh_batch_numbers(make_service, sandbox):
    """The documented fallback when a retry runs where the state file is not (another
    host without the volume): every member is sent again, at-least-once, with batch
    numbers after the ones already used, and the completion carries the exact count."""
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Any", generate=300)
    sandbox.faults(project, paths=["/api/lists/getUsers"], stream_cut_after_lines=150)
    with make_service(audience_max_stream_attempts=1) as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync_id = await svc.start_sync(http, list_id)
            assert (await svc.wait(http, sync_id))["members"] == 100
            sandbox.faults(project, stream_cut_after_lines=None)
            for path in svc.settings.audience_state_dir.iterdir():
                path.unlink()
            assert (await http.post(svc.sync_path(sync_id) + "/retry")).status_code == 202
            record = await svc.wait(http, sync_id)

    assert record["status"] == "completed" and record["members"] == 300
    batches, [done] = await read_sync(svc.settings, sync_id)
    assert [b["batch_seq"] for b in batches] == [0, 1, 2, 3]
    assert len(members_of(batches)) == 400 and len(set(members_of(batches))) == 300
    assert done["member_count"] == 300 and done["batch_count"] == 4
