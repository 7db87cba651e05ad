"""The whole campaign loop, end to end, on a few thousand recipients: real Kafka, the
MongoDB-wire server, every service as its own process, and the Iterable sandbox
playing Iterable (rendering the published template per recipient and posting the
engagement webhooks, with duplicates and out-of-order delivery).

Driven headless through the console exactly as `liftstack demo` does, then checked
against the sandbox's own record of what it sent and which events it generated:
- every list member was sent exactly once, and got exactly the variant the
  deterministic split assigned (subject and body are that variant's);
- the results table equals, per variant, the unique recipients the sandbox recorded
  for each event type.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest

from liftstack_console.cli import DEMO_VARIANTS, ConsoleClient, run_demo
from liftstack_console.seed import FIRST_NAMES, demo_members
from liftstack_experiments.assign import assign_variant
from tests.console.livestack import LiveStack

# Iterable event name -> the results table's metric.
METRIC_OF = {
    "emailSend": "send",
    "emailOpen": "open",
    "emailClick": "click",
    "purchase": "conversion",
    "emailUnSubscribe": "unsubscribe",
}


@pytest.mark.timeout(900)  # the whole loop, on a 2-core machine with FerretDB on SQLite
def test_whole_loop_sends_each_recipient_its_variant_and_counts_match(live_stack: LiveStack) -> None:
    stack = live_stack
    started = time.monotonic()
    # Workspace A's Owner, signed in through the identity provider.
    client = ConsoleClient(stack.console)
    stack.idp.sign_in(client.http, "owner-a")
    outcome = run_demo(
        stack.console,
        timeout_s=240,
        settle_s=3,
        send_options={"seed": 11, "duplicates_rate": 0.15, "reorder": True},
        client=client,
    )
    loop_s = time.monotonic() - started
    campaign = client.call("GET", f"/api/campaigns/{outcome['campaign_id']}")
    key = campaign["key"]
    iterable_campaign = outcome["send"]["campaignId"]

    with httpx.Client(base_url=stack.sandbox, timeout=60) as sandbox:
        project = f"/_sandbox/projects/{stack.seed.project_id}"
        sends = sandbox.get(f"{project}/sends", params={"campaignId": iterable_campaign}).json()["sends"]
        events = sandbox.get(f"{project}/events", params={"campaignId": iterable_campaign}).json()["events"]

    # 1. Every member sent exactly once, with exactly their assigned variant.
    members = demo_members(stack.seed.members)
    first_name = {email: FIRST_NAMES[i % len(FIRST_NAMES)] for i, email in enumerate(members)}
    assert Counter(s["email"] for s in sends) == Counter(members)
    content = {v["name"]: v for v in DEMO_VARIANTS}
    variant_of: dict[str, str] = {}
    for s in sends:
        expected = assign_variant(key, s["email"], ["A", "B"], [1.0, 1.0])
        variant_of[s["email"]] = expected
        assert s["status"] == "sent", s
        assert s["variant"] == expected, (s["email"], s["variant"], expected)
        subject = content[expected]["subject"].replace("{{firstName}}", first_name[s["email"]])
        assert s["subject"] == subject
        assert f"?v={expected.lower()}" in s["html"]
    assigned = Counter(variant_of.values())
    assert campaign["assignment"]["counts"] == dict(assigned)

    # 2. The results table equals the sandbox's record, per variant and event type.
    expected_counts: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for event in events:
        metric = METRIC_OF.get(event["eventName"])
        if metric:
            expected_counts[variant_of[event["email"]]][metric].add(event["email"])
    want = {v: {m: len(expected_counts[v][m]) for m in METRIC_OF.values()} for v in ("A", "B")}

    def table() -> dict[str, Any]:
        data = client.call("GET", f"/api/campaigns/{outcome['campaign_id']}/results")
        return {v["name"]: {m: v["metrics"][m]["count"] for m in METRIC_OF.values()} for v in data["variants"]}

    deadline = time.monotonic() + 60
    got = table()
    while got != want and time.monotonic() < deadline:
        time.sleep(1)
        got = table()
    assert got == want
    results = client.call("GET", f"/api/campaigns/{outcome['campaign_id']}/results")
    for v in results["variants"]:
        assert v["assigned"] == assigned[v["name"]]
        assert v["metrics"]["open"]["rate"] == want[v["name"]]["open"] / want[v["name"]]["send"]
    b = next(v for v in results["variants"] if v["name"] == "B")
    assert b["metrics"]["open"]["lift"]["lift"] is not None
    assert not results["srm"]["mismatch"]
    # Duplicated webhook deliveries did not inflate anything: sends == members.
    assert sum(w["send"] for w in want.values()) == stack.seed.members
    print(f"\nwhole loop for {stack.seed.members:,} recipients took {loop_s:.1f}s; table {got}")
