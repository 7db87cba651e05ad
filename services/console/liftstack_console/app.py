"""The console's composition root: builds its objects and wires the pages, the JSON
API behind them, sign-in (OpenID Connect, or the demo's) and the CSRF check into a
Starlette app. Handlers live in web_signin.py, web_integrations.py, web_campaigns.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from liftstack_console import web_campaigns, web_integrations, web_signin
from liftstack_console.csrf import CsrfMiddleware
from liftstack_console.demo_signer import DemoSigner
from liftstack_console.oidc import OidcClient
from liftstack_console.services import Services
from liftstack_console.session import SessionMiddleware, SessionStore
from liftstack_console.settings import ConsoleSettings
from liftstack_console.web import HERE, Deps, SignInRequired, make_templates, on_service_error, on_signin_required
from liftstack_shared.errors import ApiError
from liftstack_shared.health import mongo_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.mongo import make_mongo_client
from liftstack_shared.service_calls import ServiceCallError


def create_app(settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """`transport`: the HTTP transport to the services the console calls (tests)."""
    demo = _demo_signer(settings)
    oidc = OidcClient(settings) if settings.oidc_signin else None
    if demo is None and oidc is None:
        raise SystemExit(
            "No sign-in configured: set LIFTSTACK_OIDC_CLIENT_ID (with LIFTSTACK_OIDC_ISSUER, "
            "LIFTSTACK_OIDC_JWKS_URL, LIFTSTACK_OIDC_CLIENT_SECRET), or, for the local demo only, "
            "LIFTSTACK_DEMO_SIGNIN=true with LIFTSTACK_DEMO_SIGNING_KEY_FILE"
        )
    mongo = make_mongo_client(settings)
    sessions = SessionStore(mongo[settings.console_db])
    services = Services(settings, transport)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await services.aclose()
            await mongo.close()

    app = Starlette(
        routes=[
            *web_signin.routes,
            *web_integrations.routes,
            *web_campaigns.routes,
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            *standard_routes("console", [], {"mongo": mongo_check(lambda: mongo)}),
        ],
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
            ServiceCallError: on_service_error,
            ApiError: _on_api_error,
        },
    )
    app.state.deps = Deps(settings, services, sessions, make_templates(), demo, oidc)
    return app


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


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
