"""The issue's poison event, on the live stack in a real browser: an engagement event
whose campaignId no int64 can hold reaches both consumers of `engagement.events`; both
dead-letter it, a normal webhook after it is still counted, and the Events page shows
it as "failed downstream" with the reasons."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime

import httpx
from playwright.async_api import Page, expect

from liftstack_experiments.consumers import RESULTS_CONSUMER
from liftstack_shared.messages import EngagementEvent, EventType
from liftstack_shared.topics import ENGAGEMENT_EVENTS
from tests.console.browser import shot, sign_in
from tests.console.livestack import LiveStack
from tests.fixtures.kafka_tools import produce


async def test_a_poison_event_shows_as_failed_downstream_and_the_next_is_counted(
    page: Page, live_stack: LiveStack
) -> None:
    stack = live_stack
    cid = stack.seed.connection_id
    poison = EngagementEvent(
        event_id=f"ev_poison_{secrets.token_hex(4)}",
        workspace_id=stack.seed.workspace_id,
        connection_id=cid,
        event_type=EventType.OPEN,
        iterable_event_name="emailOpen",
        email="poison@example.com",
        campaign_id=1,
        occurred_at=datetime.now(UTC),
    ).model_dump(mode="json")
    poison["campaign_id"] = 10**40  # as the webhook carried it
    await produce(
        stack.settings,
        stack.settings.topic(ENGAGEMENT_EVENTS.name),
        [(f"{cid}:poison@example.com".encode(), json.dumps(poison).encode())],
    )

    with stack.signed_in_client("owner-a") as console:
        conn = console.get("/api/connections").json()["connections"]
        url = next(c for c in conn if c["id"] == cid)["webhook_url"]
    email = f"after-poison-{secrets.token_hex(3)}@example.com"
    body = {
        "email": email,
        "eventName": "emailOpen",
        "dataFields": {"campaignId": 43, "templateId": 8, "createdAt": "2026-01-02 03:04:05 +00:00"},
    }
    sent = time.monotonic()
    async with httpx.AsyncClient() as http:
        r = await http.post(url, json=body, headers={"Authorization": f"OAuth2 {stack.webhook_secret}"})
        assert r.status_code < 300, r.text

    await sign_in(page, stack, "owner", f"/settings/integrations/{cid}/events")
    # Both consumers' letters: the results counter may first be working through the
    # session's backlog on this topic (other tests' poison messages among it).
    for _ in range(120):
        failed = (await page.locator("[data-count=failed_downstream]").inner_text()).strip()
        if email in await page.locator("#recent-events").inner_text() and failed.isdigit() and int(failed) >= 2:
            break
        await page.wait_for_timeout(500)
        await page.reload()
    assert time.monotonic() - sent < 60.0
    await expect(page.locator("#recent-events")).to_contain_text(email)
    await expect(page.locator("#failed-downstream")).to_be_visible()
    # Both consumers of engagement.events said why, each by name.
    # The contract models bound campaign ids to int64, so the poison fails validation
    # in each consumer (before that bound, storage refused it: "8-byte ints").
    await expect(page.locator("#failed-by-reason")).to_contain_text("campaign_id")
    await expect(page.locator("#failed-by-reason")).to_contain_text("ingest.events-page")
    await expect(page.locator("#failed-by-reason")).to_contain_text(RESULTS_CONSUMER)
    await page.get_by_role("link", name="Failed downstream").click()
    await expect(page.locator("#recent-events")).to_contain_text("failed downstream")
    await expect(page.locator("#recent-events")).to_contain_text("poison@example.com")
    await shot(page, "09-events-failed-downstream")
    stack.check_alive()
