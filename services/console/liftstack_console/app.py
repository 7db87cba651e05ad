"""The console's Starlette app: pages, the JSON API behind them, the results
consumer, sign-in (OpenID Connect, or the demo's) and the CSRF check."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qs

from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from liftstack_console import session, web_campaigns, web_integrations
from liftstack_console.campaigns import CampaignStore
from liftstack_console.csrf import CsrfMiddleware
from liftstack_console.demo_signer import DEMO_USERS, DemoSigner
from liftstack_console.oidc import CALLBACK_PATH, OidcClient, SignInError, new_flow_secrets
from liftstack_console.results import ResultsConsumer, ResultsStore
from liftstack_console.services import ServiceError, Services
from liftstack_console.session import SessionMiddleware, SessionStore, SignInFlow
from liftstack_console.settings import ConsoleSettings
from liftstack_console.web import (
    HERE,
    Console,
    SignInRequired,
    console,
    make_templates,
    on_service_error,
    on_signin_required,
    page,
)
from liftstack_shared.auth import Principal, Role
from liftstack_shared.errors import ApiError
from liftstack_shared.http import EXCEPTION_HANDLERS, read_body, service_middleware, standard_routes
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.mongo import make_mongo_client, mongo_ready
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS


def create_app(settings: ConsoleSettings, run_consumer: bool = True) -> Starlette:
    demo = _demo_signer(settings)
    oidc = OidcClient(settings) if settings.oidc_signin else None
    if demo is None and oidc is None:
        raise SystemExit(
            "No sign-in configured: set LIFTSTACK_OIDC_CLIENT_ID (with LIFTSTACK_OIDC_ISSUER, "
            "LIFTSTACK_OIDC_JWKS_URL, LIFTSTACK_OIDC_CLIENT_SECRET), or, for the local demo only, "
            "LIFTSTACK_DEMO_SIGNIN=true with LIFTSTACK_DEMO_SIGNING_KEY_FILE"
        )
    mongo = make_mongo_client(settings)
    db = mongo[settings.console_db]
    sessions = SessionStore(db)
    ctx = Console(settings, Services(settings), CampaignStore(db), ResultsStore(db), make_templates())
    consumer = ResultsConsumer(settings, settings.results_group, ctx.results, ctx.campaigns)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.console = ctx
        await ctx.campaigns.ensure_indexes()
        await ctx.results.ensure_indexes()
        await ensure_topics(settings, (CAMPAIGN_ASSIGNMENTS, ENGAGEMENT_EVENTS, ENGAGEMENT_DEADLETTER))
        if run_consumer:
            consumer.start()
        try:
            yield
        finally:
            await consumer.stop()
            for task in list(ctx.tasks):
                task.cancel()
            await ctx.services.aclose()
            await mongo.close()

    def next_target(value: object) -> str:
        target = str(value or "/campaigns")
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/campaigns"  # never redirect off-site
        return target

    async def start_session(response: Response, principal: Principal, token: str, expires_at: datetime) -> None:
        session_id = await sessions.create(principal, token, expires_at)
        session.set_session_cookie(response, settings, session_id)

    async def signin_page(request: Request) -> Response:
        return page(
            request,
            "signin.html",
            workspace=settings.demo_workspace,
            demo_signin=demo is not None,
            oidc_signin=oidc is not None,
            next=next_target(request.query_params.get("next")),
        )

    async def signin_demo(request: Request) -> Response:
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
        await start_session(response, principal, token, datetime.now(UTC) + session.MAX_SESSION)
        return response

    async def signin_oidc(request: Request) -> Response:
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
            return signin_error(
                request, SignInError(400, "signin_refused", "The identity provider did not sign you in.")
            )
        try:
            signed_in = await oidc.finish(params["code"], flow.code_verifier, flow.nonce)
        except SignInError as exc:
            return signin_error(request, exc)
        except ApiError as exc:  # the access token is not one services would accept
            return signin_error(request, SignInError(exc.status, exc.code, exc.message))
        response = RedirectResponse(flow.next, status_code=303)
        session.clear_flow_cookie(response, settings)
        await start_session(response, signed_in.principal, signed_in.access_token, signed_in.expires_at)
        return response

    def signin_error(request: Request, exc: SignInError) -> Response:
        response = page(
            request, "error.html", status=exc.status, title="Sign-in failed", message=exc.message, code=exc.code
        )
        session.clear_cookies(response, settings)
        return response

    async def signout(request: Request) -> Response:
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
        if demo is None:
            return Response(status_code=404)
        return JSONResponse(demo.jwks(), headers={"Cache-Control": "max-age=300"})

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def kafka_check() -> None:
        from liftstack_shared.kafka import kafka_ready

        await kafka_ready(settings.kafka_bootstrap, timeout_s=3)

    routes = [
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin_demo, methods=["POST"]),
        Route("/signin/oidc", signin_oidc, methods=["GET"]),
        Route(CALLBACK_PATH, oidc_callback, methods=["GET"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/demo/jwks.json", demo_jwks, methods=["GET"]),
        *web_integrations.routes,
        *web_campaigns.routes,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        *standard_routes("console", [], {"mongo": lambda: mongo_ready(mongo), "kafka": kafka_check}),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Outermost first: refuse cross-site writes before anything else runs, then
        # the body cap every service has, then the session.
        middleware=[
            Middleware(CsrfMiddleware, origin=settings.console_origin),
            *service_middleware(settings),
            Middleware(SessionMiddleware, store=sessions),
        ],
        exception_handlers={
            # MongoDB unreachable -> 503 + Retry-After, like every service.
            PyMongoError: EXCEPTION_HANDLERS[PyMongoError],
            SignInRequired: on_signin_required,
            ServiceError: on_service_error,
            ApiError: on_api_error,
        },
    )
    app.state.console = ctx
    app.state.results_consumer = consumer
    return app


def _demo_signer(settings: ConsoleSettings) -> DemoSigner | None:
    if not settings.demo_signin:
        return None
    if not settings.demo_signing_key_file or not settings.oidc_issuer:
        raise SystemExit(
            "LIFTSTACK_DEMO_SIGNIN needs LIFTSTACK_DEMO_SIGNING_KEY_FILE and LIFTSTACK_OIDC_ISSUER "
            "(deploy/local/stack.py sets both for `./liftstack up`)"
        )
    return DemoSigner(
        settings.demo_signing_key_file,
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        workspace_claim=settings.oidc_workspace_claim,
        role_claim=settings.oidc_role_claim,
    )


__all__ = ["create_app", "console"]
