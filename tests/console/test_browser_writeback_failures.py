"""Writeback failures in the wizard: Iterable is down for the first run (the sandbox
answers 503 to users/bulkUpdate), the wizard shows failed counts and reasons, and
Re-trigger writes everyone once Iterable is back."""

from __future__ import annotations

import secrets

import httpx
from playwright.async_api import Page, expect

from tests.console.browser import shot, sign_in
from tests.console.livestack import LiveStack

MEMBERS = 60


async def test_failed_writeback_shows_reasons_and_retrigger_recovers(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    project = f"/_sandbox/projects/{stack.seed.project_id}"
    list_name = f"Failure drill {secrets.token_hex(2)}"
    async with httpx.AsyncClient(base_url=stack.sandbox) as sandbox:
        created = await sandbox.post(
            f"{project}/lists", json={"name": list_name, "members": [f"drill{i}@example.com" for i in range(MEMBERS)]}
        )
        assert created.status_code == 201, created.text
        list_id = created.json()["id"]

        await sign_in(page, stack, "owner", "/campaigns/new")
        await page.fill("#c-name", "Failure drill")
        await page.fill("#c-key", "drill_" + secrets.token_hex(3))
        await page.select_option("#c-connection", stack.seed.connection_id)
        await page.click("#create-campaign")
        await page.wait_for_url("**/campaigns/cmp_*")
        await page.locator("#audience-select").select_option(str(list_id))
        await page.click("#sync-audience")
        await expect(page.locator("#step-audience .badge")).to_have_text("completed", timeout=120_000)

        # Iterable goes down before the writeback starts.
        outage = await sandbox.patch(
            f"{project}/config",
            json={"faults": {"paths": ["/api/users/bulkUpdate"], "fail_next": 1000, "fail_status": 503}},
        )
        assert outage.status_code == 200, outage.text
        try:
            await page.click("#assign-variants")
            await expect(page.locator("#retrigger")).to_be_visible(timeout=120_000)
            await expect(page.locator("#wb-failed")).to_have_text(str(MEMBERS))
            await expect(page.locator("#wb-reasons")).to_be_visible()
            await shot(page, "18-writeback-failed")
        finally:
            await sandbox.patch(f"{project}/config", json={"faults": {"fail_next": 0, "paths": None}})

    page.once("dialog", lambda d: d.accept())
    await page.click("#retrigger")
    await expect(page.locator("#step-writeback .badge")).to_have_text("completed", timeout=120_000)
    await expect(page.locator("#wb-succeeded")).to_have_text(str(MEMBERS))
    await expect(page.locator("#wb-failed")).to_have_text("0")
    await expect(page.locator("#step-writeback")).to_contain_text("run 2")
    await shot(page, "19-writeback-retriggered")


async def test_dropped_lf_assignments_field_is_shown_loudly(page: Page, live_stack: LiveStack) -> None:
    """Iterable drops lf_assignments (the project is at its profile-field limit) and
    counts every user as a success; the wizard must say those recipients get the
    control content, not report a clean writeback."""
    stack = live_stack
    project = f"/_sandbox/projects/{stack.seed.project_id}"
    members = 12
    async with httpx.AsyncClient(base_url=stack.sandbox) as sandbox:
        created = await sandbox.post(
            f"{project}/lists",
            json={
                "name": f"Field limit {secrets.token_hex(2)}",
                "members": [f"limit{i}@example.com" for i in range(members)],
            },
        )
        assert created.status_code == 201, created.text
        list_id = created.json()["id"]

        await sign_in(page, stack, "owner", "/campaigns/new")
        await page.fill("#c-name", "Field limit drill")
        await page.fill("#c-key", "limit_" + secrets.token_hex(3))
        await page.select_option("#c-connection", stack.seed.connection_id)
        await page.click("#create-campaign")
        await page.wait_for_url("**/campaigns/cmp_*")
        await page.locator("#audience-select").select_option(str(list_id))
        await page.click("#sync-audience")
        await expect(page.locator("#step-audience .badge")).to_have_text("completed", timeout=120_000)

        # No room for one more profile field: lf_assignments.<this campaign> is dropped.
        full = await sandbox.patch(f"{project}/config", json={"field_limit": 0})
        assert full.status_code == 200, full.text
        try:
            await page.click("#assign-variants")
            await expect(page.locator("#wb-field-dropped")).to_be_visible(timeout=120_000)
            await expect(page.locator("#wb-field-dropped")).to_contain_text(
                f"{members} recipients will get the control content"
            )
            await expect(page.locator("#wb-failed")).to_have_text(str(members))
            await expect(page.locator("#wb-reasons")).to_contain_text("field_dropped")
            await expect(page.locator("#step-writeback .badge")).to_have_text("failed")
            await shot(page, "20-writeback-field-dropped")
        finally:
            await sandbox.patch(f"{project}/config", json={"field_limit": 1000})
