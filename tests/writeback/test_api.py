"""The HTTP API over real HTTP: progress for the wizard (with previous runs) and
re-trigger, with the app's lifespan running the consumer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from liftstack_shared.auth import Role
from liftstack_writeback.app import create_app
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import user_token
from tests.writeback.conftest import Env, emails, make_batches


async def _wait_status(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], run: int, timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(path, headers=headers)
        if response.status_code == 200:
            body = response.json()
            current = body["current"]
            if current["run"] == run and current["status"] in ("completed", "completed_with_failures"):
                return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run} did not finish: {body}")


async def test_progress_endpoint_and_retrigger_keep_previous_runs(env: Env) -> None:
    settings = env.settings()
    batches = make_batches(emails(30), batch_size=10)
    job_id = batches[0].job_id
    path = f"/v1/workspaces/ws-1/writeback/jobs/{job_id}"

    def bearer(role: Role, ws: str = "ws-1") -> dict[str, str]:
        return {"Authorization": "Bearer " + user_token(settings, "u1", ws, role)}

    with serve_asgi(create_app(settings, env.credentials)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            health = await http.get("/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["checks"] == {"kafka": "ok", "mongo": "ok"}
            assert (
                "/v1/workspaces/{ws}/writeback/jobs/{job_id}/retrigger"
                in (await http.get("/openapi.json")).json()["paths"]
            )

            await env.publish(batches)
            body = await _wait_status(http, path, bearer(Role.MEMBER), run=1)
            first = body["current"]
            assert (first["total"], first["written"], first["succeeded"], first["failed"]) == (30, 30, 30, 0)
            assert first["batches_done"] == first["batch_count"] == 3
            assert first["started_at"] and first["finished_at"] and first["profiles_per_second"] > 0
            assert body["previous_runs"] == []

            # Auth: no token 401; another workspace (in the path or the token) 404;
            # a Member can read but not re-trigger.
            assert (await http.get(path)).status_code == 401
            assert (await http.get(path, headers=bearer(Role.OWNER, "ws-2"))).status_code == 404
            other_ws_path = f"/v1/workspaces/ws-2/writeback/jobs/{job_id}"
            assert (await http.get(other_ws_path, headers=bearer(Role.OWNER, "ws-2"))).status_code == 404
            assert (await http.get(path.replace(job_id, "job-nope"), headers=bearer(Role.OWNER))).status_code == 404
            denied = await http.post(path + "/retrigger", headers=bearer(Role.MEMBER))
            assert denied.status_code == 403
            assert (await http.post(path + "/retrigger", headers=bearer(Role.ADMIN, "ws-2"))).status_code == 404

            # Someone changed a profile since: the re-run writes the assignment again.
            env.sandbox.put_users(
                env.project,
                [
                    {
                        "email": "user3@example.com",
                        "dataFields": {"lf_assignments": {"spring-sale": "X"}},
                        "mergeNestedObjects": True,
                    }
                ],
            )

            accepted = await http.post(path + "/retrigger", headers=bearer(Role.ADMIN))
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["current"]["run"] == 2
            # While run 2 is going, another re-trigger is refused.
            again = await http.post(path + "/retrigger", headers=bearer(Role.OWNER))
            assert again.status_code == 409 and again.json()["error"]["code"] == "job_running"

            body = await _wait_status(http, path, bearer(Role.OWNER), run=2)
            second = body["current"]
            assert second["triggered_by"] == "retrigger"
            assert (second["total"], second["written"], second["succeeded"], second["failed"]) == (30, 30, 30, 0)
            assert [r["run"] for r in body["previous_runs"]] == [1]
            assert body["previous_runs"][0] == first
            assert env.sandbox.user(env.project, "user3@example.com")["dataFields"]["lf_assignments"] == {
                "spring-sale": "B"
            }
            # 3 requests per run.
            assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {200: 6}


async def test_retrigger_of_a_running_job_is_refused(env: Env) -> None:
    settings = env.settings()
    # Only the first of two batches is published: the run can't finish.
    batches = make_batches(emails(20), batch_size=10)
    job_id = batches[0].job_id
    path = f"/v1/workspaces/ws-1/writeback/jobs/{job_id}"
    headers = {"Authorization": "Bearer " + user_token(settings, "u1", "ws-1", Role.OWNER)}
    with serve_asgi(create_app(settings, env.credentials)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            await env.publish(batches[:1])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                response = await http.get(path, headers=headers)
                if response.status_code == 200 and response.json()["current"]["written"] == 10:
                    break
                await asyncio.sleep(0.2)
            body = response.json()
            assert body["current"]["status"] == "running"
            refused = await http.post(path + "/retrigger", headers=headers)
            assert refused.status_code == 409
            assert refused.json()["error"]["code"] == "job_running"


async def test_interrupted_retrigger_is_resumed_not_duplicated(env: Env) -> None:
    """A re-trigger that died while publishing (run created, never marked published)
    is resumed by the next re-trigger as the same run."""
    from datetime import timedelta

    from liftstack_shared.messages import utcnow

    svc = await env.instance()
    batches = make_batches(emails(20), batch_size=10)
    job_id = batches[0].job_id
    await env.publish(batches)
    await env.wait_run(svc, job_id)
    header = await svc.store.job(job_id)
    assert header is not None
    # What a crash right after claiming run 2 leaves behind.
    await svc.store.runs.insert_one(
        {
            "_id": f"{job_id}|2",
            "job_id": job_id,
            "run": 2,
            "created_by": "retrigger",
            "created_at": utcnow() - timedelta(minutes=5),
            "published_at": None,
        }
    )

    summary = (await svc.service.retrigger(header)).summary

    assert summary.run == 2
    done = await env.wait_run(svc, job_id, run=2)
    assert (done.written, done.succeeded, done.failed) == (20, 20, 0)
    assert [r.run for r in await svc.store.runs_of(job_id)] == [1, 2]


async def test_a_retried_retrigger_with_its_idempotency_key_never_starts_a_second_run(env: Env) -> None:
    """A client whose response was lost retries with the same Idempotency-Key: even
    once the run it created has completed, it gets that run back, not a new one."""
    settings = env.settings()
    batches = make_batches(emails(10), batch_size=10)
    job_id = batches[0].job_id
    path = f"/v1/workspaces/ws-1/writeback/jobs/{job_id}"
    headers = {"Authorization": "Bearer " + user_token(settings, "u1", "ws-1", Role.OWNER)}
    with serve_asgi(create_app(settings, env.credentials)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            await env.publish(batches)
            await _wait_status(http, path, headers, run=1)
            keyed = {**headers, "Idempotency-Key": "click-7f3a"}

            # Two copies of one request at once (a double submit): one run.
            first, twin = await asyncio.gather(
                http.post(path + "/retrigger", headers=keyed),
                http.post(path + "/retrigger", headers=keyed),
            )
            assert {first.status_code, twin.status_code} == {202}, (first.text, twin.text)
            assert first.json()["current"]["run"] == twin.json()["current"]["run"] == 2
            await _wait_status(http, path, headers, run=2)

            retried = await http.post(path + "/retrigger", headers=keyed)
            assert retried.status_code == 202, retried.text
            assert retried.headers["idempotent-replayed"] == "true"
            assert retried.json()["current"]["run"] == 2
            assert retried.json()["current"]["status"] == "completed"

            fresh = await http.post(path + "/retrigger", headers={**headers, "Idempotency-Key": "click-8b21"})
            assert fresh.status_code == 202 and fresh.json()["current"]["run"] == 3
            assert "idempotent-replayed" not in fresh.headers

            bad = await http.post(path + "/retrigger", headers={**headers, "Idempotency-Key": "a b"})
            assert bad.status_code == 400
            assert bad.json()["error"]["code"] == "invalid_idempotency_key"
    assert env.sandbox.stats(env.project)["users/bulkUpdate"][200] <= 3
