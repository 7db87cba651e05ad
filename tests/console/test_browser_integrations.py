"""Settings > Integrations and the Events page in a real browser, against the live
stack: connect, test (both outcomes), edit, delete, the Member view, events."""

from __future__ import annotations

import secrets

import httpx
from playwright.async_api import Page, expect

from tests.console.browser import shot, sign_in
from tests.console.livestack import LiveStack


async def _project_type(stack: LiveStack, connection_id: str | None) -> str:
    """The connection's project type as the connections service stores it."""
    async with httpx.AsyncClient(base_url=stack.urls["connections"], timeout=30) as http:
        r = await http.get(
            f"/v1/workspaces/{stack.seed.workspace_id}/connections/{connection_id}",
            headers={"Authorization": f"Bearer {stack.token()}"},
        )
    assert r.status_code == 200, r.text
    return str(r.json()["project_type"])


async def test_owner_connects_tests_edits_and_deletes(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await sign_in(page, stack, "owner", "/settings/integrations")
    seeded = page.locator(f"[data-connection='{stack.seed.connection_id}']")
    await expect(seeded.locator("[data-role=badge]")).to_have_text("Connected")
    webhook = seeded.locator("code[id^=wh-]")
    await expect(webhook).to_contain_text("/webhooks/iterable/")
    await expect(seeded.get_by_role("button", name="Copy")).to_be_visible()
    # Secrets only as masked hints.
    await expect(seeded).not_to_contain_text(stack.api_key)
    await expect(seeded).to_contain_text("****" + stack.api_key[-4:])
    # The demo project is email-based, and so is its connection.
    await expect(seeded.locator("[data-role=project-type]")).to_have_text("Email-based")
    await shot(page, "01-integrations-owner")

    # Connect Platform: the Iterable tab, the key masked as it is typed.
    await page.click("#connect-platform")
    dialog = page.locator("#connect-dialog")
    await expect(dialog.get_by_role("tab", name="Iterable")).to_be_visible()
    assert await page.get_attribute("#cf-key", "type") == "password"
    assert await page.get_attribute("#cf-secret", "type") == "password"
    name = f"Staging {secrets.token_hex(2)}"
    await page.fill("#cf-name", name)
    await page.fill("#cf-key", stack.api_key)
    secret = secrets.token_urlsafe(20)
    await page.fill("#cf-secret", secret)
    await page.fill("#cf-header", "X-Acme-Hook")  # Iterable's "Add HTTP header"
    await page.select_option("#cf-region", "US")
    # A new connection is email-based unless the Owner says otherwise.
    await expect(page.locator("#cf-project-type")).to_have_value("email")
    await page.select_option("#cf-project-type", "userId")
    await shot(page, "02-connect-dialog")
    await page.click("#connect-save")
    card = page.locator(".card", has_text=name)
    await expect(card.locator("[data-role=badge]")).to_have_text("Active")
    await expect(card).not_to_contain_text(stack.api_key)
    await expect(card).not_to_contain_text(secret)
    await expect(card.locator("[data-role=webhook-header]")).to_have_text("x-acme-hook")
    await expect(card.locator("[data-role=project-type]")).to_have_text("UserID-based")
    conn_id = await card.get_attribute("data-connection")
    assert await _project_type(stack, conn_id) == "userId"  # stored, as audiences reads it

    # Test: the right key -> green Connected.
    await card.get_by_role("button", name="Test").click()
    result = card.locator("[data-role=test-result]")
    await expect(result).to_have_class("alert ok")
    await expect(card.locator("[data-role=badge]")).to_have_text("Connected")
    await expect(card.locator("[data-role=badge]")).to_have_class("badge connected")
    await shot(page, "03-test-connected")

    # Edit: a key Iterable doesn't know -> Test shows the error.
    await card.get_by_role("button", name="Edit").click()
    await expect(page.locator("#cf-name")).to_have_value(name)
    await expect(page.locator("#cf-project-type")).to_have_value("userId")
    await page.select_option("#cf-project-type", "hybrid")
    await page.fill("#cf-key", secrets.token_hex(16))
    await page.click("#connect-save")
    await expect(card.locator("[data-role=badge]")).to_have_text("Active")
    await expect(card.locator("[data-role=project-type]")).to_have_text("Hybrid")
    assert await _project_type(stack, conn_id) == "hybrid"
    await card.get_by_role("button", name="Test").click()
    await expect(result).to_have_class("alert error")
    await expect(card.locator("[data-role=badge]")).to_have_text("Error")
    await expect(result).not_to_be_empty()
    await shot(page, "04-test-error")

    # A validation error from the service shows in the dialog.
    await page.click("#connect-platform")
    await page.fill("#cf-name", "Bad key")
    await page.fill("#cf-key", "not-a-key")
    await page.click("#connect-save")
    await expect(page.locator("#connect-error")).to_contain_text("api_key")
    await shot(page, "05-connect-validation-error")
    await page.get_by_role("button", name="Cancel").click()

    # Delete.
    page.once("dialog", lambda d: d.accept())
    await card.get_by_role("button", name="Delete").click()
    await expect(page.locator(".card", has_text=name)).to_have_count(0)
    assert page.page_errors == []


async def test_member_sees_cards_but_cannot_manage(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await sign_in(page, stack, "member", "/settings/integrations")
    await expect(page.locator("#member-note")).to_be_visible()
    await expect(page.locator("#connect-platform")).to_have_count(0)
    card = page.locator(f"[data-connection='{stack.seed.connection_id}']")
    await expect(card.locator("[data-role=badge]")).to_have_text("Connected")
    # Members get summaries: no webhook URL, key hint or management buttons.
    await expect(card).not_to_contain_text("/webhooks/iterable/")
    await expect(card.get_by_role("button")).to_have_count(0)
    await shot(page, "06-integrations-member")
    # The API says no too (the connections service's rule, passed through).
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    async with httpx.AsyncClient(base_url=stack.console, cookies=cookies, headers={"Origin": stack.console}) as http:
        r = await http.post("/api/connections", json={"name": "x", "api_key": "0" * 32})
        assert r.status_code == 403
        r = await http.post(f"/api/connections/{stack.seed.connection_id}/test")
        assert r.status_code == 403
    # And the Events page is for Owners and Admins.
    await page.goto(f"{stack.console}/settings/integrations/{stack.seed.connection_id}/events")
    await expect(page.locator(".alert.error")).to_be_visible()


async def test_events_page_counts_and_configure_event_types(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    with stack.signed_in_client("owner-a") as http:
        conn = http.get("/api/connections").json()["connections"]
        url = next(c for c in conn if c["id"] == stack.seed.connection_id)["webhook_url"]
    auth = {"Authorization": f"OAuth2 {stack.webhook_secret}"}
    base = {
        "email": "events-page@example.com",
        "dataFields": {"campaignId": 42, "templateId": 7, "createdAt": "2026-01-02 03:04:05 +00:00"},
    }
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, json={**base, "eventName": "emailOpen"}, headers=auth)).status_code < 300
        assert (await http.post(url, json={**base, "eventName": "emailClick"}, headers=auth)).status_code < 300
        # A type this connection doesn't process: filtered.
        assert (await http.post(url, json={**base, "eventName": "emailBounce"}, headers=auth)).status_code < 300
        # A wrong secret: rejected.
        bad = await http.post(
            url, json={**base, "eventName": "emailOpen"}, headers={"Authorization": "OAuth2 wrong-secret-wrong-secret"}
        )
        assert bad.status_code == 403

    await sign_in(page, stack, "owner", "/settings/integrations")
    await page.locator(f"[data-connection='{stack.seed.connection_id}']").get_by_role("link", name="Events").click()
    await expect(page.locator("h1")).to_have_text("Events")
    # The read model is eventually consistent: reload until the counts are in.
    for _ in range(60):
        if (await page.locator("[data-count=rejected]").inner_text()).strip() not in ("0", "–") and (
            await page.locator("[data-count=filtered]").inner_text()
        ).strip() not in ("0", "–"):
            break
        await page.wait_for_timeout(500)
        await page.reload()
    await expect(page.locator("#counts-by-type")).to_contain_text("emailOpen")
    await expect(page.locator("#counts-by-type")).to_contain_text("emailBounce")
    await expect(page.locator("#recent-events")).to_contain_text("events-page@example.com")
    await expect(page.locator("#recent-events")).to_contain_text("rejected")
    await shot(page, "07-events-page")

    await page.click("#configure-event-types")
    box = page.locator("#types-dialog input[value=bounce]")
    await expect(box).not_to_be_checked()
    await box.check()
    await shot(page, "08-configure-event-types")
    await page.locator("#types-dialog").get_by_role("button", name="Save").click()
    await page.wait_for_load_state()
    await page.click("#configure-event-types")
    await expect(page.locator("#types-dialog input[value=bounce]")).to_be_checked()
    # Put it back so other tests see the seeded configuration.
    await page.locator("#types-dialog input[value=bounce]").uncheck()
    await page.locator("#types-dialog").get_by_role("button", name="Save").click()
    await page.wait_for_load_state()
