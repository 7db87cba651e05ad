"""A userID-based Iterable project through the console, end to end on the live stack:
the connection is created with its project type (as the Connect dialog sends it),
the wizard's sync names no identity, and every member, `alice@corp` included, is
assigned and written back by userId (bulkUpdate `userId`, not `email`).

Before the project type followed the connection, the sync read this project as
email-based: `alice@corp` was dropped as an invalid email and `bob@corp.example`
was written to as an email, which a userID-based project refuses."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from liftstack_console.cli import DEMO_VARIANTS, ConsoleClient, wait_for
from liftstack_experiments.assign import assign_variant
from tests.console.livestack import LiveStack

MEMBERS = ["alice@corp", "bob@corp.example", "u-3"]


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 400, response.text
    return response.json()


@pytest.mark.timeout(300)
def test_user_id_project_is_synced_assigned_and_written_by_user_id(live_stack: LiveStack) -> None:
    stack = live_stack
    api_key = secrets.token_hex(16)
    with httpx.Client(base_url=stack.sandbox, timeout=60) as sandbox:
        project = _ok(
            sandbox.post(
                "/_sandbox/projects",
                json={
                    "name": f"staff {api_key[-4:]}",
                    "region": "US",
                    "identity": "userId",
                    "keys": [{"type": "server_side", "key": api_key}],
                },
            )
        )
        pid = project["id"]
        _ok(sandbox.post(f"/_sandbox/projects/{pid}/lists", json={"name": "Staff", "members": MEMBERS}))

    # Workspace A's Owner, signed in through the identity provider.
    client = ConsoleClient(stack.console)
    stack.idp.sign_in(client.http, "owner-a")
    conn = client.call(
        "POST",
        "/api/connections",
        {
            "name": f"Staff {api_key[-4:]}",
            "api_key": api_key,
            "region": "US",
            "project_type": "userId",
        },
    )
    assert conn["project_type"] == "userId"
    key = "staff_" + secrets.token_hex(3)
    campaign = client.call(
        "POST",
        "/api/campaigns",
        {
            "name": f"Staff {key}",
            "key": key,
            "connection_id": conn["id"],
            "variants": DEMO_VARIANTS,
            "control": "A",
        },
    )
    cid = campaign["id"]
    audience = next(
        a for a in client.call("GET", f"/api/campaigns/{cid}/audiences")["audiences"] if a["name"] == "Staff"
    )
    # What the wizard sends: the list, no identity.
    client.call("POST", f"/api/campaigns/{cid}/sync", {"list_id": audience["id"], "list_name": "Staff"})

    def stage(name: str, done: tuple[str, ...]) -> bool:
        state = client.call("GET", f"/api/campaigns/{cid}").get(name) or {}
        assert state.get("status") != "failed", state
        return state.get("status") in done

    wait_for(lambda: stage("sync", ("completed",)), 120, "the audience sync")
    sync = client.call("GET", f"/api/campaigns/{cid}")["sync"]
    assert (sync["members"], sync.get("invalid_skipped", 0)) == (3, 0), sync
    client.call("POST", f"/api/campaigns/{cid}/assign")
    wait_for(lambda: stage("assignment", ("completed",)), 120, "the assignment")
    wait_for(lambda: stage("writeback", ("completed", "completed_with_failures")), 120, "the writeback")
    state = client.call("GET", f"/api/campaigns/{cid}")
    assert state["assignment"]["identity"] == "user_id"
    assert (state["writeback"]["status"], state["writeback"]["succeeded"]) == ("completed", 3), state["writeback"]

    names = [v["name"] for v in DEMO_VARIANTS]
    with httpx.Client(base_url=stack.sandbox, timeout=60) as sandbox:
        for user_id in MEMBERS:
            profile = _ok(sandbox.get(f"/_sandbox/projects/{pid}/users", params={"userId": user_id}))
            # Known by userId only (Iterable's placeholder email), not as an email.
            assert profile["userId"] == user_id, profile
            assert profile["email"].endswith("@placeholder.email"), profile
            want = assign_variant(key, f"userId:{user_id}", names, [1.0] * len(names))
            assert profile["dataFields"]["lf_assignments"] == {key: want}
        # Nobody was addressed by email: no profile carries these as emails.
        for member in MEMBERS[:2]:
            assert sandbox.get(f"/_sandbox/projects/{pid}/users", params={"email": member}).status_code == 404
