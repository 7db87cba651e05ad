"""Ingest's HTTP entry: the webhook endpoint (what happens to a webhook is
`service.WebhookService`) and the Events page API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from liftstack_ingest.events import LISTED_OUTCOMES
from liftstack_ingest.models import EventsList, EventsSummary, IterableWebhook, WebhookAccepted
from liftstack_ingest.service import EventsPage, WebhookRejected, WebhookService
from liftstack_ingest.settings import IngestSettings
from liftstack_shared.auth import principal_from_request, require_manager, require_workspace
from liftstack_shared.connections_client import InternalConnection
from liftstack_shared.errors import ApiError
from liftstack_shared.http import RETRY_AFTER_S, BodyTooLarge, Endpoint, json_response, read_body

WEBHOOK_PATH = "/webhooks/iterable/{token}"
EVENTS_PATH = "/v1/connections/{connection_id}/events"
SUMMARY_PATH = "/v1/connections/{connection_id}/events/summary"
MAX_PAGE = 200


@dataclass(frozen=True)
class Deps:
    """What the handlers need; built by app.py."""

    settings: IngestSettings
    webhooks: WebhookService
    page: EventsPage


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


# --------------------------------------------------------------------- webhooks


async def receive_webhook(request: Request) -> Response:
    webhooks = deps(request).webhooks
    try:
        connection = await webhooks.connection(request.path_params["token"])
    except WebhookRejected as rejection:
        return _rejection(rejection)
    try:
        webhooks.admit(connection, request.headers)
        try:
            body = await read_body(request, webhooks.max_body_bytes)
        except BodyTooLarge as exc:
            raise WebhookRejected(413, exc.code, exc.message) from None
        accepted = await webhooks.take(connection, body)
    except WebhookRejected as rejection:
        webhooks.rejected(connection, rejection)
        return _rejection(rejection)
    return json_response(accepted)


def _rejection(rejection: WebhookRejected) -> Response:
    headers = {"Retry-After": RETRY_AFTER_S} if rejection.retry else None
    body = ApiError(rejection.status, rejection.code, rejection.message).body()
    return JSONResponse(body, status_code=rejection.status, headers=headers)


# ------------------------------------------------------------------ Events page


async def list_events(request: Request) -> Response:
    connection = await _managed_connection(request)
    limit, cursor, outcome = _events_query(request.query_params)
    return json_response(await deps(request).page.recent(connection.connection_id, limit, cursor, outcome))


async def events_summary(request: Request) -> Response:
    connection = await _managed_connection(request)
    return json_response(await deps(request).page.summary(connection))


async def _managed_connection(request: Request) -> InternalConnection:
    """Owners/Admins of the connection's workspace (401/403 before any lookup);
    another workspace's connection answers 404 (its existence is not disclosed)."""
    d = deps(request)
    principal = principal_from_request(request, d.settings)
    require_manager(principal)
    connection = await d.page.connection(request.path_params["connection_id"])
    require_workspace(principal, connection.workspace_id, "No such connection.")
    return connection


def _events_query(params: QueryParams) -> tuple[int, str | None, str | None]:
    """`limit` (1..MAX_PAGE, default 50), `cursor`, `outcome`; 400 `invalid_parameter`."""
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "invalid_parameter", "limit must be an integer.", "limit") from None
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_parameter", f"limit must be 1..{MAX_PAGE}.", "limit")
    outcome = params.get("outcome") or None
    if outcome is not None and outcome not in LISTED_OUTCOMES:
        raise ApiError(400, "invalid_parameter", f"outcome must be one of {', '.join(LISTED_OUTCOMES)}.", "outcome")
    return limit, params.get("cursor") or None, outcome


# ---------------------------------------------------------------------- routes

ROUTES = [
    Route(WEBHOOK_PATH, receive_webhook, methods=["POST"]),
    Route(EVENTS_PATH, list_events, methods=["GET"]),
    Route(SUMMARY_PATH, events_summary, methods=["GET"]),
]

ENDPOINTS = [
    Endpoint(
        "POST",
        WEBHOOK_PATH,
        "Receive one Iterable system/journey webhook (secret in Authorization: "
        "Basic|OAuth2|Bearer <secret>, or X-Liftstack-Webhook-Secret).",
        request=IterableWebhook,
        response=WebhookAccepted,
        auth="webhook",
        tags=["webhooks"],
    ),
    Endpoint(
        "GET",
        EVENTS_PATH,
        "Recent webhook events of a connection, newest first "
        "(query: limit<=200, cursor, outcome; failed_downstream: dead-lettered by a "
        "consumer, with the reason).",
        response=EventsList,
        tags=["events"],
        query={
            "limit": ({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, False),
            "cursor": ({"type": "string"}, False),
            "outcome": ({"type": "string", "enum": list(LISTED_OUTCOMES)}, False),
        },
    ),
    Endpoint(
        "GET",
        SUMMARY_PATH,
        "Webhook event counts per type and outcome (last hour, 24 h, 7 d) and the last-received time.",
        response=EventsSummary,
        tags=["events"],
    ),
]
