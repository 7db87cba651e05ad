"""The audiences HTTP API: listing, sizes, up-front errors, auth and scoping."""

from __future__ import annotations

import httpx

from liftstack_sandbox import admin
from liftstack_shared.auth import Role


async def test_lists_and_segments_with_cached_sizes_only(make_service, sandbox):
    project = sandbox.create_project()
    newsletter = sandbox.create_list(project, "Newsletter", generate=250)
    engaged = sandbox.create_list(project, "Engaged 30d", generate=40, dynamic=True)
    admin.create_list(
        sandbox.state, sandbox.project(project), admin.ListSpec(name="Do not mail", listType="Suppression")
    )
    with make_service() as svc:
        svc.connect(sandbox.create_key(project, type="read_only"))
        async with svc.client() as http:
            listing = await http.get(svc.audiences_path())
            size = await http.get(f"{svc.audiences_path()}/{engaged}/size")
            size_again = await http.get(f"{svc.audiences_path()}/{engaged}/size")
            await svc.wait(http, await svc.start_sync(http, newsletter))
            after = await http.get(svc.audiences_path())

    assert listing.status_code == 200, listing.text
    audiences = {a["name"]: a for a in listing.json()["audiences"]}
    assert set(audiences) == {"Newsletter", "Engaged 30d"}  # no suppression list
    assert audiences["Newsletter"]["type"] == "list" and audiences["Newsletter"]["id"] == newsletter
    assert audiences["Engaged 30d"]["type"] == "segment"
    assert audiences["Engaged 30d"]["iterable_type"] == "Dynamic"
    assert audiences["Newsletter"]["created_at"] is not None
    # Listing never spends the 5/min size budget: sizes are unknown until fetched.
    assert all(a["size"] is None for a in audiences.values())

    assert size.status_code == 200, size.text
    assert size.json()["size"] == 40 and size.json()["size_source"] == "iterable"
    assert size_again.json() == size.json()  # served from the cache
    assert sandbox.stats(project)["lists/size"] == {200: 1}

    sizes = {a["name"]: (a["size"], a["size_source"]) for a in after.json()["audiences"]}
    assert sizes == {"Newsletter": (250, "sync"), "Engaged 30d": (40, "iterable")}


async def test_key_without_permission_gets_a_clear_error(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Newsletter", generate=5)
    with make_service() as svc:
        svc.connect(sandbox.create_key(project, type="js"))  # a client-side key
        async with svc.client() as http:
            listing = await http.get(svc.audiences_path())
            sync = await http.post(f"{svc.audiences_path()}/{list_id}/sync")
            size = await http.get(f"{svc.audiences_path()}/{list_id}/size")

    for response in (listing, sync, size):
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "iterable_permission_denied"
        assert "Disabled API key or insufficient privileges" in error["message"]
        assert "API key" in error["message"]


async def test_unknown_list_is_404_before_any_sync_starts(make_service, sandbox):
    project = sandbox.create_project()
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            sync = await http.post(f"{svc.audiences_path()}/987654/sync")
            size = await http.get(f"{svc.audiences_path()}/987654/size")
    for response in (sync, size):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "audience_not_found"
        assert "987654" in response.json()["error"]["message"]
    assert "lists/getUsers" not in sandbox.stats(project)


async def test_iterable_down_is_503(make_service, sandbox):
    project = sandbox.create_project(rate_limits=False)
    list_id = sandbox.create_list(project, "Newsletter", generate=5)
    sandbox.faults(project, fail_next=100, fail_status=503)
    with make_service(fast=True) as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            listing = await http.get(svc.audiences_path())
            sync = await http.post(f"{svc.audiences_path()}/{list_id}/sync")
    for response in (listing, sync):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "iterable_unavailable"


async def test_double_click_joins_the_running_sync(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Newsletter", generate=2_000)
    sandbox.faults(project, paths=["/api/lists/getUsers"], latency_ms=1_000)
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with svc.client() as http:
            first = await http.post(f"{svc.audiences_path()}/{list_id}/sync")
            second = await http.post(f"{svc.audiences_path()}/{list_id}/sync")
            record = await svc.wait(http, first.json()["sync_id"])
    assert first.status_code == second.status_code == 202
    assert first.headers["location"] == first.json()["links"]["self"]
    assert second.json()["sync_id"] == first.json()["sync_id"]
    assert second.json()["existing"] is True and first.json()["existing"] is False
    assert record["status"] == "completed"
    assert sandbox.stats(project)["lists/getUsers"] == {200: 1}


async def test_auth_and_workspace_scoping(make_service, sandbox):
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "Newsletter", generate=3)
    with make_service() as svc:
        svc.connect(sandbox.create_key(project))
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as anon, svc.client() as http:
            no_token = await anon.get(svc.audiences_path())
            other_ws = await anon.get(
                svc.audiences_path(),
                headers={"Authorization": f"Bearer {svc.token(Role.OWNER, 'ws-other')}"},
            )
            unknown_conn = await http.get(svc.audiences_path("conn-unknown"))
            sync_id = await svc.start_sync(http, list_id)
            await svc.wait(http, sync_id)
            foreign_sync = await anon.get(
                f"/v1/workspaces/ws-other/audience-syncs/{sync_id}",
                headers={"Authorization": f"Bearer {svc.token(Role.OWNER, 'ws-other')}"},
            )
            missing_sync = await http.get(svc.sync_path("nope"))
            bad_body = await http.post(f"{svc.audiences_path()}/{list_id}/sync", json={"prefer_user_id": "maybe"})

    assert no_token.status_code == 401
    assert other_ws.status_code == 404
    assert unknown_conn.status_code == 404
    assert unknown_conn.json()["error"]["code"] == "connection_not_found"
    assert foreign_sync.status_code == 404 and missing_sync.status_code == 404
    assert bad_body.status_code == 422


async def test_health_metrics_and_openapi(make_service):
    with make_service() as svc:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            health = await http.get("/healthz")
            metrics = await http.get("/metrics")
            openapi = await http.get("/openapi.json")
    assert health.status_code == 200, health.text
    assert health.json()["checks"] == {"kafka": "ok", "mongo": "ok"}
    assert "liftstack_audience_members_published_total" in metrics.text
    paths = openapi.json()["paths"]
    assert "/v1/workspaces/{workspace_id}/connections/{connection_id}/audiences/{list_id}/sync" in paths
    assert "/v1/workspaces/{workspace_id}/audience-syncs/{sync_id}" in paths
