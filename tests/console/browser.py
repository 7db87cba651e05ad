"""Playwright on Debian's Chromium (/usr/bin/chromium; never a downloaded browser).

A missing Chromium fails the run with how to install it: browser tests never skip.
Screenshots go to test-artifacts/screenshots/ (git-ignored, kept by CI).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.console.livestack import ARTIFACTS, LiveStack

CHROMIUM = os.environ.get("LIFTSTACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {CHROMIUM}: install Debian's package with\n"
            "    apt-get update && apt-get install -y chromium\n"
            "(.ci/run does this). Browser tests never download a browser.",
            pytrace=False,
        )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(30_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.page_errors = errors
    return p


async def sign_in(
    page: Page, stack: LiveStack, role: str = "owner", next_path: str = "/campaigns", login: str | None = None
) -> None:
    """Sign in through the identity provider's login form, as workspace A's user of
    `role` (owner-a, admin-a, member-a) or as `login`."""
    user = stack.idp.users[login or f"{role}-a"]
    await page.goto(f"{stack.console}/signin?next={next_path}")
    await page.click("#signin-oidc")
    await page.wait_for_url(f"{stack.idp.issuer}/interaction/**")
    await page.fill("#login", user.login)
    await page.fill("#password", user.password)
    await page.click("#submit")
    await page.wait_for_url(f"{stack.console}{next_path}")


async def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
