"""The console's Starlette app: pages, the JSON API behind them, the results
consumer, and the demo sign-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from liftstack_shared.auth import Role
from liftstack_shared.errors import ApiError
from liftstack_shared.http import EXCEPTION_HANDLERS, read_body, service_middleware, standard_routes
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.mongo import make_mongo_client, mongo_ready
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, ENGAGEMENT_DEADLETTER, ENGAGEMENT_EVENTS
from liftstack_console import session, web_campaigns, web_integrations
from liftstack_console.campaigns import CampaignStore
from liftstack_console.results import ResultsConsumer, ResultsStore
from liftstack_console.services import ServiceError, Services
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


def create_app(settings: ConsoleSettings, run_consumer: bool = True) -> Starlette:
    if not settings.jwt_secret.get_secret_value():
        raise SystemExit("LIFTSTACK_JWT_SECRET is required (the console signs demo users in)")
    mongo = make_mongo_client(settings)
    db = mongo[settings.console_db]
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

    async def signin_page(request: Request) -> Response:
        if not settings.demo_signin:
            return page(request, "error.html", status=404, title="Sign-in",
                        message="Demo sign-in is off; sign in through liftstack.")
        return page(request, "signin.html", workspace=settings.demo_workspace,
                    next=request.query_params.get("next", "/campaigns"))

    async def signin(request: Request) -> Response:
        if not settings.demo_signin:
            return Response(status_code=404)
        # A plain urlencoded form; parsed here so the console needs no multipart library.
        raw = await read_body(request, settings.max_body_bytes)
        form = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
        try:
            role = Role(str(form.get("role", "owner")))
        except ValueError:
            role = Role.OWNER
        target = str(form.get("next") or "/campaigns")
        if not target.startswith("/") or target.startswith("//"):
            target = "/campaigns"  # never redirect off-site
        response = RedirectResponse(target, status_code=303)
        session.sign_in(response, settings, role)
        return response

    async def signout(request: Request) -> Response:
        response = RedirectResponse("/signin", status_code=303)
        session.sign_out(response)
        return response

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), status_code=exc.status)

    async def kafka_check() -> None:
        from liftstack_shared.kafka import kafka_ready

        await kafka_ready(settings.kafka_bootstrap, timeout_s=3)

    routes = [
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        *web_integrations.routes,
        *web_campaigns.routes,
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        *standard_routes("console", [], {"mongo": lambda: mongo_ready(mongo), "kafka": kafka_check}),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=service_middleware(settings),
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


__all__ = ["create_app", "console"]
