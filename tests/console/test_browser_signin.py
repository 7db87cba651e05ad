"""Signing in through the identity provider in a real browser, as each user of the
provider's fixed set (deploy/local/idp/users.json), and the console's defences of its
cookie session: server-checked sessions, sign-out, and no cross-origin writes."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.console.browser import shot, sign_in
from tests.console.livestack import WORKSPACE_A, LiveStack


@pytest.mark.parametrize("login", ["owner-a", "admin-a", "member-a", "owner-b", "admin-b", "member-b"])
async def test_each_role_sees_what_the_seed_promises(page: Page, live_stack: LiveStack, login: str) -> None:
    """Owners and Admins manage integrations; Members only see (and select) them; each
    sees their own workspace's connections only."""
    stack = live_stack
    user = stack.idp.users[login]
    await sign_in(page, stack, next_path="/settings/integrations", login=login)
    await expect(page.locator(".who")).to_contain_text(user.claims["workspace"])
    await expect(page.locator("#who-role")).to_have_text(user.claims["role"].capitalize())
    own, other = (
        (stack.seed.connection_id, stack.second_connection_id)
        if user.workspace == WORKSPACE_A
        else (stack.second_connection_id, stack.seed.connection_id)
    )
    card = page.locator(f"[data-connection='{own}']")
    await expect(card).to_be_visible()
    await expect(page.locator(f"[data-connection='{other}']")).to_have_count(0)
    if user.claims["role"] in ("owner", "admin"):
        await expect(page.locator("#connect-platform")).to_be_visible()
        await expect(card.get_by_role("button", name="Test")).to_be_visible()
        await expect(page.locator("#member-note")).to_have_count(0)
    else:
        await expect(page.locator("#member-note")).to_be_visible()
        await expect(page.locator("#connect-platform")).to_have_count(0)
        await expect(card.get_by_role("button")).to_have_count(0)
    await shot(page, f"signin-{login}")
    # The campaign wizard lists the workspace's connections for Members too (they select them).
    await page.goto(f"{stack.console}/campaigns/new")
    await expect(page.locator(f"option[value='{own}']")).to_have_count(1)
    await expect(page.locator(f"option[value='{other}']")).to_have_count(0)


async def test_a_user_of_workspace_a_gets_404_on_workspace_b(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await sign_in(page, stack, "owner", "/settings/integrations")
    response = await page.goto(f"{stack.console}/settings/integrations/{stack.second_connection_id}/events")
    assert response is not None and response.status == 404
    with stack.signed_in_client("owner-a") as http:
        assert http.patch(f"/api/connections/{stack.second_connection_id}", json={"name": "x"}).status_code == 404
        assert http.post(f"/api/connections/{stack.second_connection_id}/test").status_code == 404
        assert http.delete(f"/api/connections/{stack.second_connection_id}").status_code == 404
    with stack.signed_in_client("owner-b") as http:  # still there, for its own workspace
        ids = [c["id"] for c in http.get("/api/connections").json()["connections"]]
        assert stack.second_connection_id in ids


async def test_a_user_of_no_workspace_is_refused(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await page.goto(f"{stack.console}/signin?next=/campaigns")
    await page.click("#signin-oidc")
    await page.fill("#login", "nobody")
    await page.fill("#password", stack.idp.users["nobody"].password)
    await page.click("#submit")
    await expect(page.locator(".alert.error[data-code=no_workspace]")).to_be_visible()
    assert "lf_session" not in {c["name"] for c in await page.context.cookies()}
    await page.goto(f"{stack.console}/campaigns")
    await page.wait_for_url(f"{stack.console}/signin?next=/campaigns")


async def test_wrong_password_stays_at_the_provider(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await page.goto(f"{stack.console}/signin/oidc?next=/campaigns")
    await page.fill("#login", "owner-a")
    await page.fill("#password", "not-the-password")
    await page.click("#submit")
    await expect(page.locator("#error")).to_contain_text("wrong password")
    assert "lf_session" not in {c["name"] for c in await page.context.cookies()}


async def test_session_cookie_flags_and_sign_out_ends_the_session(page: Page, live_stack: LiveStack) -> None:
    stack = live_stack
    await sign_in(page, stack, "admin", "/campaigns")
    cookie = next(c for c in await page.context.cookies(stack.console) if c["name"] == "lf_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # plain-HTTP 127.0.0.1; Secure anywhere else
    stolen = cookie["value"]

    await page.click("form[action='/signout'] button")
    await page.wait_for_url(f"{stack.console}/signin")
    assert "lf_session" not in {c["name"] for c in await page.context.cookies(stack.console)}
    # Server-checked: the old cookie, replayed, is signed out.
    with httpx.Client(base_url=stack.console, cookies={"lf_session": stolen}) as http:
        assert http.get("/api/connections").status_code == 401
    # And the provider's session ended too: signing in asks for the password again.
    await page.click("#signin-oidc")
    await page.wait_for_url(f"{stack.idp.issuer}/interaction/**")
    await expect(page.locator("#password")).to_be_visible()


def test_a_callback_this_browser_did_not_start_is_refused(live_stack: LiveStack) -> None:
    stack = live_stack
    with stack.console_client() as http:
        start = http.get("/signin/oidc", params={"next": "/campaigns"})
        assert start.status_code == 303
        state = httpx.URL(start.headers["location"]).params["state"]
        # Another browser (no lf_signin cookie) replaying the state: refused.
        with httpx.Client(base_url=stack.console) as other:
            r = other.get("/auth/callback", params={"state": state, "code": "stolen"})
            assert r.status_code == 400 and 'data-code="signin_state_mismatch"' in r.text
        # This browser, with a code the provider never issued: refused, no session.
        r = http.get("/auth/callback", params={"state": state, "code": "made-up"})
        assert r.status_code == 400 and "lf_session" not in http.cookies
        # The flow was used up: replaying it finds nothing.
        http.cookies.set("lf_signin", state, path="/auth/")
        r = http.get("/auth/callback", params={"state": state, "code": "made-up"})
        assert r.status_code == 400 and 'data-code="signin_expired"' in r.text


def _connection_names(stack: LiveStack) -> list[str]:
    with stack.signed_in_client("owner-a") as http:
        return sorted(c["name"] for c in http.get("/api/connections").json()["connections"])


def test_cross_origin_text_plain_post_is_refused_and_creates_nothing(live_stack: LiveStack) -> None:
    """The issue's attack, verbatim: the session cookie, Origin https://evil.example, a
    JSON body sent as text/plain."""
    stack = live_stack
    before = _connection_names(stack)

    def body() -> str:  # a fresh name each time: a duplicate name would be refused anyway
        return json.dumps(
            {
                "name": f"Evil {secrets.token_hex(3)}",
                "api_key": secrets.token_hex(16),
                "webhook_secret": "x" * 24,
                "region": "US",
            }
        )

    with stack.signed_in_client("owner-a") as http:
        attacks = {
            "evil origin, text/plain": {"Origin": "https://evil.example", "Content-Type": "text/plain"},
            "evil origin, json": {"Origin": "https://evil.example", "Content-Type": "application/json"},
            "no origin, cross-site fetch": {
                "Origin": None,
                "Sec-Fetch-Site": "cross-site",
                "Content-Type": "text/plain",
            },
            "same-site other port": {"Origin": stack.sandbox, "Content-Type": "text/plain"},
            "no origin at all": {"Origin": None, "Content-Type": "application/json"},
            "null origin": {"Origin": "null", "Content-Type": "application/json"},
        }
        for name, headers in attacks.items():
            sent = {k: v for k, v in headers.items() if v is not None}
            request = http.build_request("POST", "/api/connections", content=body(), headers=sent)
            for k, v in headers.items():
                if v is None:
                    del request.headers[k]
            r = http.send(request)
            assert (r.status_code, r.json()["error"]["code"]) == (403, "cross_origin_request"), name
        # Same origin but not JSON: refused as well (415), so no form can produce it.
        r = http.post("/api/connections", content=body(), headers={"Content-Type": "text/plain"})
        assert (r.status_code, r.json()["error"]["code"]) == (415, "unsupported_media_type")
        # A browser that sends no Origin but says same-origin is served (a test of the
        # seeded connection changes nothing).
        request = http.build_request(
            "POST", f"/api/connections/{stack.seed.connection_id}/test", headers={"Sec-Fetch-Site": "same-origin"}
        )
        del request.headers["Origin"]
        assert http.send(request).status_code == 200
        # A cross-origin sign-out form can't end the session either.
        r = http.post("/signout", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert http.get("/api/connections").status_code == 200
    assert _connection_names(stack) == before


async def test_a_page_on_another_origin_cannot_post_with_the_cookie(page: Page, live_stack: LiveStack) -> None:
    """In the browser: a page on another port of the same host (so same-site: the
    SameSite=Lax cookie *is* sent) posts text/plain JSON to the console."""
    stack = live_stack
    before = _connection_names(stack)
    await sign_in(page, stack, "owner", "/settings/integrations")
    await page.goto(f"{stack.sandbox}/healthz")  # another origin
    sent = await page.evaluate(
        """async ([url, name, key]) => {
            const r = await fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include',
                headers: {'Content-Type': 'text/plain'},
                body: JSON.stringify({name: name, api_key: key, webhook_secret: 'x'.repeat(24), region: 'US'})});
            return r.type;
        }""",
        [f"{stack.console}/api/connections", f"Evil {secrets.token_hex(3)}", secrets.token_hex(16)],
    )
    assert sent == "opaque"  # the browser did send it
    assert _connection_names(stack) == before
