"""The composition root of the templates service: builds the adapters, the service
and the routes, and starts/stops them in the lifespan (nothing else lives here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient
from starlette.applications import Starlette

from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import ConnectionsServiceCredentials, CredentialsSource, IterableCredentials
from liftstack_shared.handlebars import HandlebarsRenderer
from liftstack_shared.health import mongo_check
from liftstack_shared.http import EXCEPTION_HANDLERS, service_middleware, standard_routes
from liftstack_shared.iterable import IterableClient
from liftstack_shared.mongo import database, make_mongo_client
from liftstack_templates.api import ENDPOINTS, ROUTES, Deps
from liftstack_templates.publish import ClientFactory, Publisher
from liftstack_templates.service import TemplateService
from liftstack_templates.settings import TemplatesSettings
from liftstack_templates.store import TemplateStore


def create_app(
    settings: TemplatesSettings,
    *,
    credentials: CredentialsSource | None = None,
    iterable_clients: ClientFactory | None = None,
    mongo: AsyncMongoClient[dict[str, Any]] | None = None,
) -> Starlette:
    """`credentials`: where connection credentials come from (default: the connections
    service). `iterable_clients`: builds the Iterable client for a connection (default:
    from settings, which may point at the sandbox). `mongo`: a client the caller owns
    (not closed here)."""
    mongo_client = mongo or make_mongo_client(settings)
    store = TemplateStore(database(mongo_client, settings))
    creds = credentials or ConnectionsServiceCredentials(ConnectionsClient(settings))
    renderer = HandlebarsRenderer(settings.handlebars_dir)

    def clients_from_settings(c: IterableCredentials) -> IterableClient:
        return IterableClient.from_settings(settings, c.api_key, c.region)

    publisher = Publisher(store, iterable_clients or clients_from_settings)
    service = TemplateService(store, renderer, publisher, creds)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await store.ensure_indexes()
            await renderer.start()
            yield
        finally:
            await renderer.close()
            await creds.aclose()
            if mongo is None:
                await mongo_client.close()

    async def renderer_check() -> None:
        await renderer.parse("{{ok}}")

    checks = {"mongo": mongo_check(lambda: mongo_client), "handlebars": renderer_check}
    app = Starlette(
        routes=[*ROUTES, *standard_routes("templates", ENDPOINTS, checks)],
        lifespan=lifespan,
        middleware=service_middleware(settings),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.deps = Deps(settings=settings, service=service)
    return app
