"""The campaign wizard in a real browser, from a new campaign to live results."""

from __future__ import annotations

import secrets

from playwright.async_api import Page, expect

from tests.console.browser import shot, sign_in
from tests.console.livestack import LiveStack

STEP_TIMEOUT = 120_000


async def test_wizard_from_new_campaign_to_results(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await sign_in(page, stack, "owner", "/campaigns")
    await page.click("#new-campaign")
    key = "wiz_" + secrets.token_hex(3)
    await page.fill("#c-name", "Wizard spring sale")
    await page.fill("#c-key", key)
    await page.select_option("#c-connection", stack.seed.connection_id)
    # The sizing calculator: 450,000 profiles at 4,500/s is 100 s of writeback.
    await page.fill("#p-audience", "450000")
    await page.fill("#p-baseline", "3")
    await page.fill("#p-lift", "20")
    await page.click("#plan-button")
    await expect(page.locator("#plan-result [data-role=writeback]")).to_contain_text("~1.7 min")
    await expect(page.locator("#plan-result tr[data-variant=B] [data-role=mde]")).to_contain_text("pts")
    await expect(page.locator("#plan-result tr[data-variant=B] [data-role=answer]")).to_contain_text("recipients")
    await shot(page, "10-wizard-new-campaign")
    await page.click("#create-campaign")
    await page.wait_for_url("**/campaigns/cmp_*")
    campaign_url = page.url

    # Audience: pick the demo list and sync it.
    select = page.locator("#audience-select")
    await expect(select.locator(f"option[value='{stack.seed.list_id}']")).to_have_count(1)
    await select.select_option(str(stack.seed.list_id))
    await shot(page, "11-wizard-audience")
    await page.click("#sync-audience")
    await expect(page.locator("#step-audience .badge")).to_have_text("completed", timeout=STEP_TIMEOUT)
    await expect(page.locator("#sync-members")).to_have_text(f"{stack.seed.members:,}")

    # Assign variants, then writeback runs: live progress until done.
    await page.click("#assign-variants")
    await expect(page.locator("#assignment-counts")).to_contain_text(f"{stack.seed.members:,}", timeout=STEP_TIMEOUT)
    await shot(page, "12-wizard-assigned-writeback")
    await expect(page.locator("#step-writeback .badge")).to_have_text("completed", timeout=STEP_TIMEOUT)
    await expect(page.locator("#wb-succeeded")).to_have_text(f"{stack.seed.members:,}")
    await expect(page.locator("#wb-failed")).to_have_text("0")
    await shot(page, "13-wizard-writeback-done")

    # Template: generate, preview each variant, publish.
    await page.click("#generate-template")
    await expect(page.locator("#step-template .badge")).to_have_text("generated")
    await expect(page.locator("#preview-subject")).to_have_text("Spring sale: 20% off everything")
    await page.locator("#preview-tabs button[data-variant=B]").click()
    await expect(page.locator("#preview-subject")).to_contain_text("your 20% is waiting")
    await expect(page.frame_locator("#preview-frame").locator("h1")).to_have_text("Your spring picks")
    await shot(page, "14-wizard-template-preview")
    await page.click("#publish-template")
    await expect(page.locator("#step-template .badge")).to_have_text("published")
    await expect(page.locator("#ready-to-send")).to_contain_text("Ready to send in Iterable")
    await shot(page, "15-wizard-ready-to-send")

    # "Send" from the sandbox; events arrive and the results fill in.
    await page.click("#sandbox-send")
    await expect(page.locator("#send-summary")).to_contain_text(f"{stack.seed.members:,}", timeout=STEP_TIMEOUT)
    sends = page.locator("#results-table td[data-metric=send] [data-role=count]")
    for _ in range(120):
        texts = await sends.all_inner_texts()
        if texts and sum(int(t.replace(",", "")) for t in texts) == stack.seed.members:
            break
        await page.wait_for_timeout(1000)
    texts = await sends.all_inner_texts()
    assert sum(int(t.replace(",", "")) for t in texts) == stack.seed.members
    await expect(page.locator("#results-table tr[data-variant=B] [data-role=lift]").first).to_be_visible()
    clicks_b = page.locator("#results-table tr[data-variant=B] td[data-metric=click]")
    await expect(clicks_b.locator("[data-role=sequential-ci]")).to_contain_text("always-valid")
    verdict = (await clicks_b.locator("[data-role=verdict]").inner_text()).strip()
    assert verdict in ("B beats A on clicks, safe to stop", "A beats B on clicks, safe to stop", "keep running") or (
        verdict.startswith("no difference likely at this size")
    ), verdict
    await expect(page.locator("#srm")).to_contain_text("Sample ratio check")
    await shot(page, "16-wizard-results")

    await page.goto(campaign_url + "/results")
    await expect(page.locator("h1")).to_have_text("Results")
    await shot(page, "17-results-page")
    assert page.page_errors == []
