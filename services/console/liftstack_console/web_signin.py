"""Sign-in and sign-out: the OpenID Connect authorization code flow (oidc.py), the
demo stack's sign-in (demo_signer.py), server-side sessions (session.py)."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from liftstack_console import session
from liftstack_console.demo_signer import DEMO_USERS
from liftstack_console.oidc import CALLBACK_PATH, SignInError, new_flow_secrets
from liftstack_console.session import SignInFlow
from liftstack_console.web import deps, page
from liftstack_shared.auth import Principal, Role
from liftstack_shared.errors import ApiError
from liftstack_shared.http import read_body


def next_target(value: object) -> str:
    target = str(value or "/campaigns")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/campaigns"  # never redirect off-site
    return target


async def start_session(
    request: Request, response: Response, principal: Principal, token: str, expires_at: datetime
) -> None:
    d = deps(request)
    session_id = await d.sessions.create(principal, token, expires_at)
    session.set_session_cookie(response, d.settings, session_id)


async def signin_page(request: Request) -> Response:
    settings, demo, oidc = deps(request).settings, deps(request).demo, deps(request).oidc
    return page(
        request,
        "signin.html",
        workspace=settings.demo_workspace,
        demo_signin=demo is not None,
        oidc_signin=oidc is not None,
        next=next_target(request.query_params.get("next")),
    )


async def signin_demo(request: Request) -> Response:
    settings, demo = deps(request).settings, deps(request).demo
    if demo is None:
        return Response(status_code=404)
    # A plain urlencoded form; parsed here so the console needs no multipart library.
    raw = await read_body(request, settings.max_body_bytes)
    form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
    try:
        role = Role(str(form.get("role", "owner")))
    except ValueError:
        role = Role.OWNER
    response = RedirectResponse(next_target(form.get("next")), status_code=303)
    ttl_s = int(session.MAX_SESSION.total_seconds())
    token = demo.token(DEMO_USERS[role], settings.demo_workspace, role, ttl_s=ttl_s)
    principal = Principal(DEMO_USERS[role], settings.demo_workspace, role)
    await start_session(request, response, principal, token, datetime.now(UTC) + session.MAX_SESSION)
    return response


async def signin_oidc(request: Request) -> Response:
    settings, sessions, oidc = deps(request).settings, deps(request).sessions, deps(request).oidc
    if oidc is None:
        return Response(status_code=404)
    state, nonce, verifier = new_flow_secrets()
    try:
        url = await oidc.authorization_url(state, nonce, verifier)
    except SignInError as exc:
        return page(request, "error.html", status=exc.status, title="Sign-in", message=exc.message)
    await sessions.start_flow(state, SignInFlow(verifier, nonce, next_target(request.query_params.get("next"))))
    response = RedirectResponse(url, status_code=303)
    session.set_flow_cookie(response, settings, state)
    return response


async def oidc_callback(request: Request) -> Response:
    settings, sessions, oidc = deps(request).settings, deps(request).sessions, deps(request).oidc
    if oidc is None:
        return Response(status_code=404)
    params = request.query_params
    state, bound = params.get("state", ""), request.cookies.get(session.FLOW_COOKIE, "")
    # The state must be the one this browser started with (not just any live one).
    if not state or not bound or not hmac.compare_digest(state, bound):
        return signin_error(
            request, SignInError(400, "signin_state_mismatch", "This sign-in was not started here; start again.")
        )
    flow = await sessions.take_flow(state)
    if flow is None:
        return signin_error(
            request, SignInError(400, "signin_expired", "This sign-in expired or was already used; start again.")
        )
    if params.get("error") or not params.get("code"):
        return signin_error(request, SignInError(400, "signin_refused", "The identity provider did not sign you in."))
    try:
        signed_in = await oidc.finish(params["code"], flow.code_verifier, flow.nonce)
    except SignInError as exc:
        return signin_error(request, exc)
    except ApiError as exc:  # the access token is not one services would accept
        return signin_error(request, SignInError(exc.status, exc.code, exc.message))
    response = RedirectResponse(flow.next, status_code=303)
    session.clear_flow_cookie(response, settings)
    await start_session(request, response, signed_in.principal, signed_in.access_token, signed_in.expires_at)
    return response


def signin_error(request: Request, exc: SignInError) -> Response:
    response = page(
        request, "error.html", status=exc.status, title="Sign-in failed", message=exc.message, code=exc.code
    )
    session.clear_cookies(response, deps(request).settings)
    return response


async def signout(request: Request) -> Response:
    settings, sessions, oidc = deps(request).settings, deps(request).sessions, deps(request).oidc
    session_id = request.cookies.get(session.COOKIE)
    if session_id:
        await sessions.delete(session_id)
    after = settings.console_public_url.rstrip("/") + "/signin"
    target = "/signin"
    if oidc is not None:
        target = await oidc.end_session_url(after) or target
    response = RedirectResponse(target, status_code=303)
    session.clear_cookies(response, settings)
    return response


async def demo_jwks(request: Request) -> Response:
    demo = deps(request).demo
    if demo is None:
        return Response(status_code=404)
    return JSONResponse(demo.jwks(), headers={"Cache-Control": "max-age=300"})


routes = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin_demo, methods=["POST"]),
    Route("/signin/oidc", signin_oidc, methods=["GET"]),
    Route(CALLBACK_PATH, oidc_callback, methods=["GET"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/demo/jwks.json", demo_jwks, methods=["GET"]),
]
