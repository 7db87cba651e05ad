"""The experiments HTTP API over real HTTP (uvicorn), real Kafka and the MongoDB-wire
server: campaigns per workspace (others' answer 404), typed errors for bad input and
out-of-order steps, a downstream outage named as such, and the assignment step from
`audience.members` to `campaign.assignments`, as the console's wizard drives it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from liftstack_experiments.app import create_app
from liftstack_experiments.assign import assign_variant
from liftstack_experiments.campaigns import SyncSection
from liftstack_experiments.settings import ExperimentsSettings
from liftstack_experiments.store import CampaignStore
from liftstack_shared.auth import Role
from liftstack_shared.messages import AssignmentBatch, AudienceMember, AudienceMembersBatch, AudienceSyncCompleted
from liftstack_shared.topics import AUDIENCE_MEMBERS, CAMPAIGN_ASSIGNMENTS
from tests.fixtures.asgi import free_port, serve_asgi
from tests.fixtures.identity import user_token
from tests.fixtures.kafka_tools import produce, read_all

pytestmark = pytest.mark.integration

VARIANTS = [
    {"name": "A", "subject": "Hello", "html": "<p>a</p>"},
    {"name": "B", "subject": "Hi", "html": "<p>b</p>", "weight": 2},
]


@pytest.fixture
def api(experiments_settings: ExperimentsSettings) -> Iterator[str]:
    # Nothing answers at the other services' addresses: steps that call them fail.
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = experiments_settings.model_copy(
        update={"audiences_url": nowhere, "writeback_url": nowhere, "templates_url": nowhere}
    )
    with serve_asgi(create_app(settings, run_consumer=False), timeout_s=60) as url:
        yield url


def _client(url: str, settings: ExperimentsSettings, workspace: str, role: Role = Role.MEMBER) -> httpx.Client:
    token = user_token(settings, f"user-{workspace}", workspace, role)
    return httpx.Client(base_url=f"{url}/v1/workspaces/{workspace}", headers={"Authorization": f"Bearer {token}"})


def _create(http: httpx.Client, key: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "Spring", "key": key, "connection_id": "conn_1", "variants": VARIANTS, **extra}
    response = http.post("/campaigns", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_campaigns_are_per_workspace_and_typed(api: str, experiments_settings: ExperimentsSettings) -> None:
    ws_a, ws_b = f"ws_{uuid.uuid4().hex[:6]}", f"ws_{uuid.uuid4().hex[:6]}"
    with _client(api, experiments_settings, ws_a) as a, _client(api, experiments_settings, ws_b) as b:
        key = f"k_{uuid.uuid4().hex[:6]}"
        created = _create(a, key)
        assert created["key"] == key and created["id"].startswith("cmp_")
        cid = created["id"]

        again = a.post("/campaigns", json={"name": "x", "key": key, "connection_id": "c", "variants": VARIANTS})
        assert again.status_code == 409 and again.json()["error"]["code"] == "key_taken"
        # Keys are per workspace: B may use the same one.
        _create(b, key)

        state = a.get(f"/campaigns/{cid}").json()
        assert state["step"] == "audience" and state["control"] == "A"
        assert [(v["name"], v["weight"]) for v in state["variants"]] == [("A", 1.0), ("B", 2.0)]
        assert state["sync"] is None and state["sandbox_rates"] is None  # no sandbox configured
        listed = a.get("/campaigns").json()["campaigns"]
        assert [c["id"] for c in listed] == [cid]

        # Another workspace's campaign, or another workspace in the path: 404 both.
        assert b.get(f"/campaigns/{cid}").status_code == 404
        assert b.get(f"{api}/v1/workspaces/{ws_a}/campaigns").status_code == 404
        assert httpx.get(f"{api}/v1/workspaces/{ws_a}/campaigns").status_code == 401

        bad = a.post("/campaigns", json={"name": "x", "key": "Not A Key", "connection_id": "c", "variants": VARIANTS})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "key"
        control = a.post(
            "/campaigns", json={"name": "x", "key": "k2", "connection_id": "c", "variants": VARIANTS, "control": "Z"}
        )
        assert control.status_code == 422

        # Steps out of order answer 409 with what to do first.
        assert a.post(f"/campaigns/{cid}/assign").json()["error"]["code"] == "audience_not_synced"
        assert a.post(f"/campaigns/{cid}/template/publish").json()["error"]["code"] == "not_generated"
        assert a.post(f"/campaigns/{cid}/send").json()["error"]["code"] == "no_sandbox"

        # A service the step needs is down: 503, naming it.
        down = a.get(f"/campaigns/{cid}/audiences")
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "service_unavailable"
        assert down.json()["error"]["service"] == "audiences"

        results = a.get(f"/campaigns/{cid}/results").json()
        assert results["events"] == 0 and [v["name"] for v in results["variants"]] == ["A", "B"]
        assert results["srm"] == {"basis": "assigned", "p_value": 1.0, "mismatch": False}
        # Nothing counted yet: the always-valid verdict is "keep running", never a winner.
        clicks_b = results["variants"][1]["metrics"]["click"]
        assert clicks_b["sequential"]["verdict"] == "keep_running" and clicks_b["sequential"]["low"] is None
        assert results["variants"][0]["metrics"]["click"]["sequential"] is None  # the control

        # Not assigned yet: not ready, every condition named.
        readiness = a.get(f"/campaigns/{cid}/readiness").json()
        assert readiness["ready"] is False
        assert readiness["blocked_by"] == ["coverage", "writeback_idle", "read_back", "settled"]
        # Only an Owner may override, with a reason.
        override = a.post(f"/campaigns/{cid}/readiness/override", json={"reason": "tested by hand"})
        assert override.status_code == 403 and override.json()["error"]["code"] == "forbidden"
        with _client(api, experiments_settings, ws_a, Role.OWNER) as owner:
            assert owner.post(f"/campaigns/{cid}/readiness/override", json={}).status_code == 422
            done = owner.post(f"/campaigns/{cid}/readiness/override", json={"reason": "tested by hand"})
            assert done.status_code == 200, done.text
            assert done.json()["ready"] is True and done.json()["override"]["reason"] == "tested by hand"
        again = a.get(f"/campaigns/{cid}/readiness").json()
        assert again["ready"] is True and again["override"]["by"] == f"user-{ws_a}"

        assert b.delete(f"/campaigns/{cid}").status_code == 404
        assert a.delete(f"/campaigns/{cid}").status_code == 204
        assert a.get(f"/campaigns/{cid}").status_code == 404


async def test_assign_reads_the_sync_and_publishes_the_job(
    api: str, experiments_settings: ExperimentsSettings, mongo_client: AsyncMongoClient
) -> None:
    settings = experiments_settings
    ws = f"ws_{uuid.uuid4().hex[:6]}"
    key = f"k_{uuid.uuid4().hex[:6]}"
    sync_id = uuid.uuid4().hex
    members = [AudienceMember(email=f"m{i}@example.com") for i in range(5)]
    members += [AudienceMember(email="Ann.Lee0@Example.com"), AudienceMember(email="ann.lee0@example.com")]
    members += [AudienceMember(user_id="alice@corp")]
    with _client(api, settings, ws) as http:
        cid = _create(http, key)["id"]
        # What a completed audience sync leaves (the audiences service isn't running).
        started = datetime.now(UTC)
        sync = SyncSection(id=sync_id, status="completed", list_id=7, members=len(members), requested_at=started)
        await CampaignStore(mongo_client[settings.experiments_db]).set_sections(cid, sync=sync)
        batch = AudienceMembersBatch(
            sync_id=sync_id, workspace_id=ws, connection_id="conn_1", list_id=7, batch_seq=0, members=members
        )
        done = AudienceSyncCompleted(
            sync_id=sync_id,
            workspace_id=ws,
            connection_id="conn_1",
            list_id=7,
            batch_count=1,
            member_count=len(members),
            invalid_skipped=0,
            duplicates_skipped=0,
        )
        topic = settings.topic(AUDIENCE_MEMBERS.name)
        await produce(settings, topic, [(sync_id.encode(), batch.to_bytes()), (sync_id.encode(), done.to_bytes())])

        first = await asyncio.to_thread(http.post, f"/campaigns/{cid}/assign")
        assert (first.status_code, first.json()) == (202, {"started": True})
        deadline = time.monotonic() + 60
        while True:
            state = (await asyncio.to_thread(http.get, f"/campaigns/{cid}")).json()
            assignment = state["assignment"]
            assert assignment["status"] != "failed", assignment
            if assignment["status"] == "completed":
                break
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.2)
        # A second click doesn't start a second run.
        assert (await asyncio.to_thread(http.post, f"/campaigns/{cid}/assign")).json() == {"started": False}

    assert state["step"] == "writeback"
    # Writeback isn't running: the step says why it can't show progress.
    assert state["writeback"] is None and "writeback" in state["writeback_error"]
    assert assignment["total"] == 7 and assignment["identity"] == "mixed" and assignment["batch_count"] == 1
    published = [
        AssignmentBatch.model_validate_json(r.value)
        for r in await read_all(settings, settings.topic(CAMPAIGN_ASSIGNMENTS.name))
        if r.key == b"conn_1"
    ]
    [job] = [b for b in published if b.job_id == assignment["job_id"]]
    assert job.job_id == f"{cid}.{sync_id[:12]}" and job.total_recipients == 7
    weights = [1.0, 2.0]
    for a in job.assignments:
        assert a.variant == assign_variant(key, a.recipient, ["A", "B"], weights)
    assert sum(assignment["counts"].values()) == 7


def test_campaign_plan_sizes_a_campaign_at_the_iterable_budget(
    api: str, experiments_settings: ExperimentsSettings
) -> None:
    ws = f"ws_{uuid.uuid4().hex[:6]}"
    with _client(api, experiments_settings, ws) as a:
        body = {
            "audience": 450_000,
            "baseline_rate": 0.03,
            "variants": [{"name": "A"}, {"name": "B"}, {"name": "C", "weight": 2}],
            "control": "A",
            "expected_lift": 0.2,
        }
        plan = a.post("/campaign-plan", json=body)
        assert plan.status_code == 200, plan.text
        answer = plan.json()
        # 450,000 profiles at 5 req/s x 1,000 users x 90% pacing = 100 s.
        assert answer["writeback_seconds"] == pytest.approx(100.0)
        arms = {arm["variant"]: arm for arm in answer["arms"]}
        assert set(arms) == {"B", "C"} and arms["B"]["recipients"] == 112_500 and arms["C"]["recipients"] == 225_000
        assert arms["C"]["mde_absolute"] < arms["B"]["mde_absolute"] < 0.03
        assert arms["B"]["fixed_horizon_mde_absolute"] < arms["B"]["mde_absolute"]
        assert arms["B"]["recipients_to_answer"] < 450_000

        bad = a.post("/campaign-plan", json={**body, "baseline_rate": 1.5})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "baseline_rate"
        assert a.post("/campaign-plan", json={**body, "control": "Z"}).status_code == 422
        assert httpx.post(f"{api}/v1/workspaces/{ws}/campaign-plan", json=body).status_code == 401
