"""Settings > Integrations and each connection's Events page. The console holds no
connection data of its own: every read and write goes to the connections and ingest
services as the signed-in user, so their role rules (Members see summaries and can't
manage) apply as they are."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from liftstack_console.web import deps, json_value, page, user
from liftstack_shared.service_calls import ServiceCallError

EVENT_TYPES = [
    ("send", "Sends", "emailSend"),
    ("open", "Opens", "emailOpen"),
    ("click", "Clicks", "emailClick"),
    ("conversion", "Conversions", "purchase / custom conversion events"),
    ("unsubscribe", "Unsubscribes", "emailUnSubscribe"),
    ("subscribe", "Subscribes", "emailSubscribe"),
    ("bounce", "Bounces", "emailBounce"),
    ("complaint", "Complaints", "emailComplaint"),
    ("send_skip", "Send skips", "emailSendSkip"),
    ("hosted_unsubscribe_click", "Hosted unsubscribe clicks", "hostedUnsubscribeClick"),
]


# The Connect/Edit dialog's "Iterable project type" choices: (value, label, help).
# Iterable has no API that says which type a project is, so the Owner/Admin picks
# it; audience syncs read members by it (a userID-based project's `alice@corp` is a
# userId, not an email).
PROJECT_TYPES = [
    ("email", "Email-based", "users are identified by email address"),
    ("userId", "UserID-based", "users are identified by userId, which may contain @"),
    ("hybrid", "Hybrid", "users are identified by email or userId"),
]


def _conns(ws: str, rest: str = "") -> str:
    return f"/v1/workspaces/{ws}/connections{rest}"


async def list_connections(request: Request) -> list[dict[str, Any]]:
    who = user(request)
    data = await deps(request).services.call("connections", "GET", _conns(who.workspace_id), who.token)
    return list(data["connections"])


async def integrations_page(request: Request) -> Response:
    who = user(request)
    try:
        connections, error = await list_connections(request), None
    except ServiceCallError as exc:
        connections, error = [], exc.message
    return page(
        request,
        "integrations.html",
        section="settings",
        connections=connections,
        manages=who.manages,
        error=error,
        project_types=PROJECT_TYPES,
        project_type_label={value: label for value, label, _ in PROJECT_TYPES},
    )


async def events_page(request: Request) -> Response:
    who = user(request)
    cid = request.path_params["connection_id"]
    services = deps(request).services
    connection = await services.call("connections", "GET", _conns(who.workspace_id, f"/{cid}"), who.token)
    outcome = request.query_params.get("outcome") or None
    params: dict[str, Any] = {"limit": 50}
    if outcome:
        params["outcome"] = outcome
    summary = await services.call("ingest", "GET", f"/v1/connections/{cid}/events/summary", who.token)
    events = await services.call("ingest", "GET", f"/v1/connections/{cid}/events", who.token, params=params)
    windows = {w["window"]: w for w in summary["windows"]}
    return page(
        request,
        "events.html",
        section="settings",
        connection=connection,
        summary=summary,
        windows=windows,
        events=events["items"],
        outcome=outcome,
        event_types=EVENT_TYPES,
    )


# ------------------------------------------------------------------ JSON, for the page's JS


async def _proxy(request: Request, method: str, rest: str, status: int = 200) -> Response:
    who = user(request)
    body = None
    if method in ("POST", "PATCH"):
        body = await json_value(request)
    try:
        data = await deps(request).services.call(
            "connections", method, _conns(who.workspace_id, rest), who.token, json=body
        )
    except ServiceCallError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    if data is None:
        return Response(status_code=204)
    return JSONResponse(data, status_code=status)


async def api_create(request: Request) -> Response:
    return await _proxy(request, "POST", "", status=201)


async def api_update(request: Request) -> Response:
    return await _proxy(request, "PATCH", f"/{request.path_params['connection_id']}")


async def api_delete(request: Request) -> Response:
    return await _proxy(request, "DELETE", f"/{request.path_params['connection_id']}")


async def api_test(request: Request) -> Response:
    return await _proxy(request, "POST", f"/{request.path_params['connection_id']}/test")


async def api_list(request: Request) -> Response:
    return await _proxy(request, "GET", "")


routes = [
    Route("/settings/integrations", integrations_page, methods=["GET"]),
    Route("/settings/integrations/{connection_id}/events", events_page, methods=["GET"]),
    Route("/api/connections", api_list, methods=["GET"]),
    Route("/api/connections", api_create, methods=["POST"]),
    Route("/api/connections/{connection_id}", api_update, methods=["PATCH"]),
    Route("/api/connections/{connection_id}", api_delete, methods=["DELETE"]),
    Route("/api/connections/{connection_id}/test", api_test, methods=["POST"]),
]
