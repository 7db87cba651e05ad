"""The readiness gate in the wizard: the sandbox fails 2% of the writes, so coverage
is under the 99.5% threshold and the wizard blocks "Ready to send", naming the
reason; an Owner overrides it with a reason, which the wizard then shows."""

from __future__ import annotations

import secrets

import httpx
from playwright.async_api import Page, expect

from tests.console.browser import shot, sign_in
from tests.console.livestack import LiveStack

MEMBERS = 100
FAILING = 2  # 2% of the writes


async def test_failed_writes_block_readiness_until_an_owner_overrides(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    project = f"/_sandbox/projects/{stack.seed.project_id}"
    tag = secrets.token_hex(3)
    emails = [f"ready{i}.{tag}@example.com" for i in range(MEMBERS)]
    async with httpx.AsyncClient(base_url=stack.sandbox) as sandbox:
        created = await sandbox.post(f"{project}/lists", json={"name": f"Readiness {tag}", "members": emails})
        assert created.status_code == 201, created.text
        list_id = created.json()["id"]

        await sign_in(page, stack, "owner", "/campaigns/new")
        await page.fill("#c-name", "Readiness drill")
        await page.fill("#c-key", "ready_" + tag)
        await page.select_option("#c-connection", stack.seed.connection_id)
        await page.click("#create-campaign")
        await page.wait_for_url("**/campaigns/cmp_*")
        await page.locator("#audience-select").select_option(str(list_id))
        await page.click("#sync-audience")
        await expect(page.locator("#step-audience .badge")).to_have_text("completed", timeout=120_000)

        failing = await sandbox.patch(f"{project}/config", json={"faults": {"bulk_fail_users": emails[:FAILING]}})
        assert failing.status_code == 200, failing.text
        try:
            await page.click("#assign-variants")
            await expect(page.locator("#wb-failed")).to_have_text(str(FAILING), timeout=120_000)
            await expect(page.locator("#step-writeback .badge")).to_have_text("completed with failures")
        finally:
            await sandbox.patch(f"{project}/config", json={"faults": {"bulk_fail_users": []}})

    await page.click("#generate-template")
    await expect(page.locator("#step-template .badge")).to_have_text("generated")
    await page.click("#publish-template")
    await expect(page.locator("#step-template .badge")).to_have_text("published")

    # Blocked, and says why: 98 of 100 written is under 99.5%.
    await expect(page.locator("#not-ready")).to_contain_text("Write coverage")
    coverage = page.locator("#readiness li[data-condition=coverage]")
    await expect(coverage).to_have_class("blocked")
    await expect(coverage).to_contain_text(f"{MEMBERS - FAILING} of {MEMBERS} recipients written")
    await expect(page.locator("#readiness li[data-condition=writeback_idle]")).to_have_class("ok")
    await expect(page.locator("#ready-to-send")).to_have_count(0)
    await expect(page.locator("#sandbox-send")).to_have_count(0)
    await shot(page, "21-readiness-blocked")

    # The Owner overrides, with a reason: ready, and the reason is on the page.
    await page.fill("#override-reason", "two known-bad test addresses")
    await page.click("#override-readiness")
    await expect(page.locator("#ready-to-send")).to_contain_text("Ready to send in Iterable")
    await expect(page.locator("#readiness-override")).to_contain_text("two known-bad test addresses")
    await expect(page.locator("#sandbox-send")).to_be_visible()
    await shot(page, "22-readiness-overridden")
    assert page.page_errors == []
