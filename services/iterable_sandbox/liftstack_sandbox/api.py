"""The Iterable API routes (paths as in iterable-openapi.json, under /api).

Every route runs the same pipeline, in Iterable's order as a client observes it:
1. auth: `Api-Key` header (also `Api_Key`, and the legacy `api_key` query param).
   Unknown key, or a key of the other region's project: 401 "Invalid API key".
   Disabled key, or a key type without the privilege: 401 "Disabled API key or
   insufficient privileges". Server-side keys may do everything; read-only keys
   only the GETs; JavaScript/mobile (client-side) keys none of these endpoints.
2. faults (faults.py), 3. the per-project leaky bucket (ratelimit.py),
4. validation (400 BadParams / BadJsonBody) and the handler.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from liftstack_sandbox import faults, lists, templates, users
from liftstack_sandbox.errors import (
    DISABLED_KEY_MSG,
    INVALID_KEY_MSG,
    RATE_LIMIT_MSG,
    DropConnection,
    IterableError,
    bad_json,
    bad_params,
    json_response,
    success,
)
from liftstack_sandbox.middleware import SCOPE_PREFIX, SCOPE_REGION
from liftstack_sandbox.state import ApiKey, Project, SandboxList, SandboxState

Access = Literal["read", "write"]
# What each key type may do here. Client-side keys (js, mobile) can only call
# client endpoints (users/update, events/track, ...), none of which this sandbox has.
PRIVILEGES: dict[str, set[Access]] = {
    "server_side": {"read", "write"},
    "read_only": {"read"},
    "js": set(),
    "mobile": set(),
}
MAX_DRAIN_BYTES = 64 * 1024 * 1024


@dataclass
class Ctx:
    request: Request
    state: SandboxState
    project: Project
    key: ApiKey

    @property
    def base_url(self) -> str:
        """The external base URL of this region (for nextPageUrl etc.)."""
        scheme = self.request.scope.get("scheme", "http")
        host = self.request.headers.get("host", "127.0.0.1")
        return f"{scheme}://{host}{self.request.scope.get(SCOPE_PREFIX, '')}"

    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)


Handler = Callable[[Ctx], Awaitable[Response]]


def api_key_of(request: Request) -> str | None:
    return request.headers.get("api-key") or request.headers.get("api_key") or request.query_params.get("api_key")


def authenticate(state: SandboxState, request: Request, access: Access) -> tuple[Project, ApiKey]:
    value = api_key_of(request)
    key = state.find_key(value) if value else None
    project = state.projects.get(key.project_id) if key else None
    region = request.scope.get(SCOPE_REGION, "US")
    # Iterable's auth errors name the caller's address and the endpoint in `params`
    # (never the key itself).
    params = {"ip": request.client.host if request.client else None, "endpoint": request.scope["path"]}
    if key is None or project is None or project.region != region:
        raise IterableError(401, "BadApiKey", INVALID_KEY_MSG, params)
    if key.disabled or access not in PRIVILEGES[key.type]:
        raise IterableError(401, "BadApiKey", DISABLED_KEY_MSG, params)
    return project, key


def check_rate(project: Project, bucket: str) -> None:
    if not project.config.rate_limits:
        return
    wait = project.limiter.acquire(bucket)
    if wait is None:
        return
    headers = {"Retry-After": str(max(1, math.ceil(wait)))} if project.config.retry_after else None
    raise IterableError(429, "RateLimitExceeded", RATE_LIMIT_MSG, headers=headers)


def iterable_route(path: str, method: str, bucket: str, access: Access) -> Callable[[Handler], Route]:
    def decorate(handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            state: SandboxState = request.app.state.sandbox
            project: Project | None = None
            try:
                project, key = authenticate(state, request, access)
                injected = await faults.inject(project.config, project.fault_rng, request.scope["path"])
                if injected is not None:
                    response = injected
                else:
                    check_rate(project, bucket)
                    response = await handler(Ctx(request, state, project, key))
            except IterableError as exc:
                if exc.params is None:
                    # Iterable's error bodies carry a `params` object; null is rare.
                    exc.params = {"endpoint": request.scope["path"]}
                response = exc.response()
            except DropConnection:
                if project is not None:
                    with state.lock:
                        project.stats[(bucket, 0)] += 1  # status 0 = connection dropped
                raise
            if project is not None:
                with state.lock:
                    project.stats[(bucket, response.status_code)] += 1
            return response

        endpoint.__name__ = handler.__name__
        return Route(path, endpoint, methods=[method])

    return decorate


# -- helpers ------------------------------------------------------------------------------


async def read_json(ctx: Ctx, endpoint: str, max_bytes: int | None = None) -> Any:
    """The JSON body; 400 BadJsonBody if unparseable. Over `max_bytes`: the body is
    drained (so the client reliably reads our answer) and refused."""
    request = ctx.request
    declared = request.headers.get("content-length")
    too_large = max_bytes is not None and declared is not None and declared.isdigit() and int(declared) > max_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            too_large = True
        if too_large:
            if size > MAX_DRAIN_BYTES:
                break
            continue
        chunks.append(chunk)
    if too_large:
        config = ctx.project.config
        raise IterableError(
            config.body_too_large_status,
            "BatchTooLarge",
            f"Request body too large: {size} bytes, the maximum is {max_bytes} bytes",
            {"maxBytes": max_bytes, "bytes": size},
        )
    raw = b"".join(chunks)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_json(endpoint, None, detail=f"could not parse JSON ({exc})") from None


def required_param(ctx: Ctx, name: str) -> str:
    value = ctx.request.query_params.get(name)
    if value is None or value == "":
        raise bad_params(f"Missing required parameter: {name}")
    return value


def int_param(ctx: Ctx, name: str, value: str | None = None) -> int:
    raw = value if value is not None else required_param(ctx, name)
    try:
        return int(raw)
    except ValueError:
        raise bad_params(f"Invalid {name}: {raw} is not an integer") from None


def bool_param(ctx: Ctx, name: str, default: bool = False) -> bool:
    raw = ctx.request.query_params.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise bad_params(f"Invalid {name}: {raw} is not a boolean")
    return lowered == "true"


# -- users ---------------------------------------------------------------------------------


@iterable_route("/api/users/bulkUpdate", "POST", "users/bulkUpdate", "write")
async def bulk_update(ctx: Ctx) -> Response:
    body = await read_json(ctx, users.ENDPOINT, ctx.project.config.body_limit_bytes)
    entries, create_new = users.validate_bulk_body(body)
    with ctx.state.lock:
        result = users.bulk_update(ctx.project, entries, create_new)
    body = result.body()
    if ctx.project.config.faults.bulk_unnamed_failures:
        body = users.without_names(body)
    return json_response(body)


@iterable_route("/api/users/forget", "POST", "users/forget", "write")
async def forget(ctx: Ctx) -> Response:
    body = await read_json(ctx, "/api/users/forget")
    email, user_id = users.require_write_identity(body, "/api/users/forget")
    with ctx.state.lock:
        ctx.project.forget(email=email, user_id=user_id)
    return success("User forgotten")


@iterable_route("/api/users/getFields", "GET", "users/getFields", "read")
async def get_fields(ctx: Ctx) -> Response:
    with ctx.state.lock:
        return json_response({"fields": users.user_fields(ctx.project)})


def _user_response(ctx: Ctx, email: str | None = None, user_id: str | None = None) -> Response:
    # Iterable answers 200 with an empty object when there is no such user.
    with ctx.state.lock:
        user = ctx.project.find_user(email=email, user_id=user_id)
        return json_response(users.user_api_view(user) if user else {})


@iterable_route("/api/users/getByEmail", "GET", "users/get", "read")
async def get_by_email(ctx: Ctx) -> Response:
    return _user_response(ctx, email=required_param(ctx, "email"))


@iterable_route("/api/users/byUserId", "GET", "users/get", "read")
async def get_by_user_id_query(ctx: Ctx) -> Response:
    return _user_response(ctx, user_id=required_param(ctx, "userId"))


@iterable_route("/api/users/byUserId/{userId:path}", "GET", "users/get", "read")
async def get_by_user_id(ctx: Ctx) -> Response:
    return _user_response(ctx, user_id=ctx.request.path_params["userId"])


@iterable_route("/api/users/{email:path}", "GET", "users/get", "read")
async def get_by_email_path(ctx: Ctx) -> Response:
    return _user_response(ctx, email=ctx.request.path_params["email"])


# -- lists ----------------------------------------------------------------------------------


@iterable_route("/api/lists", "GET", "lists", "read")
async def get_lists(ctx: Ctx) -> Response:
    with ctx.state.lock:
        body = {"lists": [lst.api_view() for lst in sorted(ctx.project.lists.values(), key=lambda x: x.id)]}
    return json_response(body)


def _list_or_400(ctx: Ctx, list_id: int) -> SandboxList:
    lst = ctx.project.lists.get(list_id)
    if lst is None:
        raise bad_params(f"List {list_id} does not exist")
    return lst


@iterable_route("/api/lists/getUsers", "GET", "lists/getUsers", "read")
async def get_list_users(ctx: Ctx) -> Response:
    list_id = int_param(ctx, "listId")
    prefer_user_id = bool_param(ctx, "preferUserId")
    lst = _list_or_400(ctx, list_id)
    config = ctx.project.config
    chunks = lists.stream_lines(ctx.project, lst, prefer_user_id, config.stream_chunk_lines, config.faults.model_copy())

    async def body() -> AsyncIterator[bytes]:
        # Generate on the event loop, yielding control between chunks, so a huge
        # list never blocks other requests and is never held in memory whole.
        for chunk in chunks:
            yield chunk
            await asyncio.sleep(0)

    return StreamingResponse(body(), media_type="text/plain; charset=utf-8")


@iterable_route("/api/lists/{listId}/size", "GET", "lists/size", "read")
async def get_list_size(ctx: Ctx) -> Response:
    list_id = int_param(ctx, "listId", ctx.request.path_params["listId"])
    with ctx.state.lock:
        size = lists.list_size(ctx.project, _list_or_400(ctx, list_id))
    return PlainTextResponse(str(size))


# -- templates ------------------------------------------------------------------------------


@iterable_route("/api/templates", "GET", "templates", "read")
async def get_templates(ctx: Ctx) -> Response:
    with ctx.state.lock:
        body = templates.list_templates(ctx.project, ctx.query(), ctx.base_url)
    return json_response(body)


@iterable_route("/api/templates/email/get", "GET", "templates/email/get", "read")
async def get_email_template(ctx: Ctx) -> Response:
    template_id = int_param(ctx, "templateId")
    with ctx.state.lock:
        template = templates.get_template(ctx.project, template_id, ctx.request.query_params.get("locale"))
        return json_response(templates.email_template_view(ctx.project, template))


@iterable_route("/api/templates/getByClientTemplateId", "GET", "templates/getByClientTemplateId", "read")
async def get_by_client_template_id(ctx: Ctx) -> Response:
    client_template_id = required_param(ctx, "clientTemplateId")
    with ctx.state.lock:
        found = templates.by_client_template_id(ctx.project, client_template_id)
    return json_response({"templates": found})


@iterable_route("/api/templates/email/upsert", "POST", "templates/email/upsert", "write")
async def upsert_email_template(ctx: Ctx) -> Response:
    endpoint = "/api/templates/email/upsert"
    fields = templates.parse_template_fields(await read_json(ctx, endpoint), endpoint, "clientTemplateId")
    ids = templates.upsert(ctx.state, ctx.project, fields)
    return success(templates.upsert_message(ids))


@iterable_route("/api/templates/email/update", "POST", "templates/email/update", "write")
async def update_email_template(ctx: Ctx) -> Response:
    endpoint = "/api/templates/email/update"
    body = await read_json(ctx, endpoint)
    fields = templates.parse_template_fields(body, endpoint, "templateId")
    raw_id = body.get("templateId")
    if not isinstance(raw_id, int) or isinstance(raw_id, bool):
        raise bad_json(endpoint, {"obj.templateId": [{"msg": ["error.expected.jsnumber"], "args": []}]})
    template = templates.update(ctx.state, ctx.project, raw_id, fields)
    return success(f"Updated template {template.id}")


# -- webhooks -------------------------------------------------------------------------------


@iterable_route("/api/webhooks", "GET", "webhooks", "read")
async def get_webhooks(ctx: Ctx) -> Response:
    with ctx.state.lock:
        hooks = [w.api_view() for w in sorted(ctx.project.webhooks.values(), key=lambda w: w.id)]
    return json_response({"webhooks": hooks})


async def not_found(request: Request) -> Response:
    return IterableError(404, "NotFound", f"No such endpoint: {request.method} {request.scope['path']}").response()


ROUTES: list[Route] = [
    bulk_update,
    forget,
    get_fields,
    get_by_email,
    get_by_user_id_query,
    get_by_user_id,
    get_by_email_path,
    get_lists,
    get_list_users,
    get_list_size,
    get_templates,
    get_email_template,
    get_by_client_template_id,
    upsert_email_template,
    update_email_template,
    get_webhooks,
    Route("/api/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
]
