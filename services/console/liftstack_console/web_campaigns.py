"""Campaigns: the list, the new-campaign form, the wizard and results, plus the JSON
API that the wizard's JavaScript and `liftstack demo` both drive.

The console holds no campaign data: the experiments service owns campaigns and runs
the loop. Pages render what it answers; `/api/campaigns/...` is passed through to
`/v1/workspaces/<the user's workspace>/campaigns/...` as the signed-in user, status
and body as experiments answers them (its error bodies included).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from liftstack_console.web import User, deps, json_value, page, user
from liftstack_console.web_integrations import list_connections
from liftstack_shared.service_calls import ServiceCallError

# The results table's metrics, in order: (event type, column label).
METRICS = (
    ("send", "Sends"),
    ("open", "Unique opens"),
    ("click", "Unique clicks"),
    ("conversion", "Conversions"),
    ("unsubscribe", "Unsubscribes"),
)
# The readiness gate's conditions, as the wizard names them.
READINESS_LABELS = {
    "coverage": "Write coverage",
    "writeback_idle": "No writeback in progress",
    "read_back": "Read back from Iterable",
    "settled": "Settle time",
}
# The sandbox renders and delivers a whole send inside its request: minutes for a big list.
SEND_TIMEOUT_S = 900.0


def _campaigns_path(who: User, rest: str = "") -> str:
    return f"/v1/workspaces/{who.workspace_id}/campaigns{rest}"


async def _experiments(request: Request, rest: str = "") -> Any:
    """GET `rest` of the user's campaigns from the experiments service."""
    who = user(request)
    return await deps(request).services.call("experiments", "GET", _campaigns_path(who, rest), who.token)


# ------------------------------------------------------------------------ pages


async def campaigns_page(request: Request) -> Response:
    listed = await _experiments(request)
    return page(request, "campaigns.html", section="campaigns", campaigns=listed["campaigns"])


async def new_campaign_page(request: Request) -> Response:
    try:
        connections, error = await list_connections(request), None
    except ServiceCallError as exc:
        connections, error = [], exc.message
    return page(request, "campaign_new.html", section="campaigns", connections=connections, error=error)


async def campaign_page(request: Request) -> Response:
    cid = request.path_params["campaign_id"]
    state = await _experiments(request, f"/{cid}")
    connections = {c["id"]: c for c in await _safe_connections(request)}
    table = await _experiments(request, f"/{cid}/results") if state["send"] else None
    readiness = await _experiments(request, f"/{cid}/readiness") if state["step"] in ("send", "results") else None
    return page(
        request,
        "campaign.html",
        section="campaigns",
        s=state,
        connection=connections.get(state["connection_id"]),
        table=table,
        metrics=METRICS,
        readiness=readiness,
        readiness_labels=READINESS_LABELS,
    )


async def results_page(request: Request) -> Response:
    cid = request.path_params["campaign_id"]
    state = await _experiments(request, f"/{cid}")
    table = await _experiments(request, f"/{cid}/results")
    name = "_results.html" if request.query_params.get("partial") else "results.html"
    return page(request, name, section="campaigns", s=state, table=table, metrics=METRICS)


async def preview_page(request: Request) -> Response:
    """One variant's rendered email, for the wizard's preview iframe."""
    cid, variant = request.path_params["campaign_id"], request.path_params["variant"]
    preview = await _experiments(request, f"/{cid}/template/preview/{variant}")
    return HTMLResponse(preview.get("html") or "", headers={"Content-Security-Policy": "script-src 'none'"})


async def _safe_connections(request: Request) -> list[dict[str, Any]]:
    try:
        return await list_connections(request)
    except ServiceCallError:
        return []


# ------------------------------------------------------------------------ JSON API


async def api_campaigns(request: Request) -> Response:
    """Every `/api/campaigns...` route: the same call to the experiments service."""
    who = user(request)
    # The path as sent (still percent-encoded), so an id can't add path segments.
    rest = request.scope["raw_path"].decode("latin-1").removeprefix("/api/campaigns")
    body = await json_value(request) if request.method == "POST" else None
    answer = await deps(request).services.call(
        "experiments",
        request.method,
        _campaigns_path(who, rest),
        who.token,
        json=body,
        raw=True,
        timeout=SEND_TIMEOUT_S if rest.endswith("/send") else None,
    )
    return Response(answer.content, status_code=answer.status_code, media_type="application/json")


async def api_campaign_plan(request: Request) -> Response:
    """The new-campaign form's sizing calculator: passed to experiments' `campaign-plan`."""
    who = user(request)
    answer = await deps(request).services.call(
        "experiments",
        "POST",
        f"/v1/workspaces/{who.workspace_id}/campaign-plan",
        who.token,
        json=await json_value(request),
        raw=True,
    )
    return Response(answer.content, status_code=answer.status_code, media_type="application/json")


async def root(request: Request) -> Response:
    return RedirectResponse("/campaigns", status_code=303)


C = "/api/campaigns/{campaign_id}"
routes = [
    Route("/", root, methods=["GET"]),
    Route("/campaigns", campaigns_page, methods=["GET"]),
    Route("/campaigns/new", new_campaign_page, methods=["GET"]),
    Route("/campaigns/{campaign_id}", campaign_page, methods=["GET"]),
    Route("/campaigns/{campaign_id}/results", results_page, methods=["GET"]),
    Route("/campaigns/{campaign_id}/preview/{variant}", preview_page, methods=["GET"]),
    Route("/api/campaigns", api_campaigns, methods=["GET", "POST"]),
    Route("/api/campaign-plan", api_campaign_plan, methods=["POST"]),
    Route(C, api_campaigns, methods=["GET", "DELETE"]),
    Route(C + "/audiences", api_campaigns, methods=["GET"]),
    Route(C + "/sync", api_campaigns, methods=["POST"]),
    Route(C + "/assign", api_campaigns, methods=["POST"]),
    Route(C + "/writeback/retrigger", api_campaigns, methods=["POST"]),
    Route(C + "/template/generate", api_campaigns, methods=["POST"]),
    Route(C + "/template/publish", api_campaigns, methods=["POST"]),
    Route(C + "/template/preview/{variant}", api_campaigns, methods=["GET"]),
    Route(C + "/send", api_campaigns, methods=["POST"]),
    Route(C + "/readiness", api_campaigns, methods=["GET"]),
    Route(C + "/readiness/override", api_campaigns, methods=["POST"]),
    Route(C + "/results", api_campaigns, methods=["GET"]),
]
