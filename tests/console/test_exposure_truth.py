"""Exposure truth on the live stack: the sandbox fails some recipients' writes
(bulkUpdate names them in failedUpdates), so their profiles carry no
`lf_assignments.<key>`; the sandbox's send renders them the template's default
branch, the control; results show them in their own "not written" row and count them
in no variant, and the sample-ratio check runs on exposures."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

import httpx
import pytest

from liftstack_console.cli import DEMO_VARIANTS, ConsoleClient, wait_for
from liftstack_experiments.assign import assign_variant
from tests.console.livestack import LiveStack

MEMBERS = 200
FAILING = 12  # 6% of the writes


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 400, response.text
    return response.json()


@pytest.mark.timeout(600)
def test_failed_writes_receive_the_control_and_stay_out_of_their_variants_lift(live_stack: LiveStack) -> None:
    stack = live_stack
    project = f"/_sandbox/projects/{stack.seed.project_id}"
    tag = secrets.token_hex(3)
    emails = [f"exposure{i}.{tag}@example.com" for i in range(MEMBERS)]
    failing = emails[:FAILING]
    client = ConsoleClient(stack.console)
    stack.idp.sign_in(client.http, "owner-a")
    with httpx.Client(base_url=stack.sandbox, timeout=120) as sandbox:
        list_id = _ok(sandbox.post(f"{project}/lists", json={"name": f"Exposure {tag}", "members": emails}))["id"]
        key = "exposure_" + tag
        names = [v["name"] for v in DEMO_VARIANTS]
        control = names[0]
        cid = client.call(
            "POST",
            "/api/campaigns",
            {
                "name": f"Exposure {tag}",
                "key": key,
                "connection_id": stack.seed.connection_id,
                "variants": DEMO_VARIANTS,
            },
        )["id"]

        def stage(name: str, done: tuple[str, ...]) -> bool:
            state = client.call("GET", f"/api/campaigns/{cid}").get(name) or {}
            return state.get("status") in done

        client.call("POST", f"/api/campaigns/{cid}/sync", {"list_id": list_id, "list_name": f"Exposure {tag}"})
        wait_for(lambda: stage("sync", ("completed",)), 120, "the audience sync")

        # These recipients' writes fail; everybody else's succeed.
        _ok(sandbox.patch(f"{project}/config", json={"faults": {"bulk_fail_users": failing}}))
        try:
            client.call("POST", f"/api/campaigns/{cid}/assign")
            wait_for(lambda: stage("writeback", ("completed", "completed_with_failures", "failed")), 180, "writeback")
        finally:
            _ok(sandbox.patch(f"{project}/config", json={"faults": {"bulk_fail_users": []}}))
        writeback = client.call("GET", f"/api/campaigns/{cid}")["writeback"]
        assert (writeback["status"], writeback["failed"]) == ("completed_with_failures", FAILING), writeback

        client.call("POST", f"/api/campaigns/{cid}/template/generate")
        client.call("POST", f"/api/campaigns/{cid}/template/publish")
        client.call("POST", f"/api/campaigns/{cid}/send", {})

        # What the sandbox rendered: the failed recipients got the control's subject.
        iterable_campaign = client.call("GET", f"/api/campaigns/{cid}")["send"]["iterable_campaign_id"]
        records = _ok(
            sandbox.get(
                f"{project}/sends",
                params={"campaignId": iterable_campaign, "fields": "email,variant,subject,status"},
            )
        )["sends"]
    by_email = {r["email"]: r for r in records}
    assigned_of = {e: assign_variant(key, e, names, [1.0] * len(names)) for e in emails}
    for email in failing:
        assert by_email[email]["variant"] is None and by_email[email]["status"] == "sent"
        assert by_email[email]["subject"] == DEMO_VARIANTS[0]["subject"]
    assert any(assigned_of[e] != control for e in failing)  # the test means something

    def sends_counted() -> bool:
        table = client.call("GET", f"/api/campaigns/{cid}/results")
        rows = [v["metrics"]["send"]["count"] for v in table["variants"]]
        not_written = (table.get("not_written") or {}).get("metrics", {}).get("send", {}).get("count", 0)
        return sum(rows) + not_written == MEMBERS

    wait_for(sends_counted, 120, "every send event counted")
    table = client.call("GET", f"/api/campaigns/{cid}/results")
    not_written = table["not_written"]
    assert not_written["recipients"] == FAILING and not_written["received"] == control
    assert not_written["assigned"] == dict(Counter(assigned_of[e] for e in failing))
    assert not_written["metrics"]["send"]["count"] == FAILING
    assigned = Counter(assigned_of.values())
    written = Counter(assigned_of[e] for e in emails[FAILING:])
    for row in table["variants"]:
        name = row["name"]
        assert row["assigned"] == assigned[name]
        # Received = assigned minus the not-written; their sends are nobody's but the row's.
        assert row["exposed"] == written[name], row
        assert row["metrics"]["send"]["count"] == written[name], row
    assert table["srm"]["basis"] == "exposures"
