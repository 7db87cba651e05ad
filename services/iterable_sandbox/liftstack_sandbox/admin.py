"""The admin API under /_sandbox, for out-of-process users (demo, staging, other
services' tests) to set the sandbox up and look inside it. Unauthenticated: the
sandbox must never be exposed beyond a developer machine or a private network.

Errors use liftstack's own shape, `{"error": {"code", "message", "field"}}`.

    GET    /healthz
    POST   /_sandbox/reset
    GET    /_sandbox/projects
    POST   /_sandbox/projects                      {name?, region?, identity?, config?,
                                                    keys?: [{type, disabled?, key?}]}
    GET    /_sandbox/projects/{pid}
    POST   /_sandbox/projects/{pid}/keys           {type, disabled?, key?, name?} -> includes the key value
    POST   /_sandbox/projects/{pid}/keys/{kid}/disable | /enable
    GET    /_sandbox/projects/{pid}/config
    PATCH  /_sandbox/projects/{pid}/config         partial ProjectConfig, deep-merged
    GET    /_sandbox/projects/{pid}/lists
    POST   /_sandbox/projects/{pid}/lists          {name, listType?, description?, members?, generate?, criteria?}
    POST   /_sandbox/projects/{pid}/lists/{lid}/members  {members: [...]}
    GET    /_sandbox/projects/{pid}/users?email=|userId=
    POST   /_sandbox/projects/{pid}/users          {users: [...], createNewFields?} (bulkUpdate without limits/faults)
    POST   /_sandbox/projects/{pid}/forget         {email?|userId?}
    GET    /_sandbox/projects/{pid}/fields
    GET    /_sandbox/projects/{pid}/templates[/{tid}]
    POST   /_sandbox/projects/{pid}/templates      template fields (creates)
    GET    /_sandbox/projects/{pid}/webhooks
    POST   /_sandbox/projects/{pid}/webhooks       {endpoint, authType?, token?, tokenType?, username?,
                                                    password?, headers?, enabled?, ...}
    POST   /_sandbox/projects/{pid}/send           send.SendRequest
    GET    /_sandbox/projects/{pid}/sends?campaignId=&email=&fields=
    GET    /_sandbox/projects/{pid}/events?campaignId=&email=&eventName=
    GET    /_sandbox/projects/{pid}/stats
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liftstack_sandbox import lists, send, templates, users
from liftstack_sandbox.config import ProjectConfig
from liftstack_sandbox.errors import IterableError, json_response
from liftstack_sandbox.state import (
    Criterion,
    GeneratedMembers,
    Identity,
    KeyType,
    ListType,
    Project,
    Region,
    SandboxList,
    SandboxState,
    Template,
    Webhook,
)


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self) -> Response:
        return json_response({"error": {"code": self.code, "message": self.message, "field": self.field}}, self.status)


class KeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: KeyType = "server_side"
    disabled: bool = False
    key: str | None = None  # a known value (seed files, demos); default: random
    name: str = ""


class ProjectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    region: Region = "US"
    identity: Identity = "email"
    config: dict[str, Any] = Field(default_factory=dict)
    keys: list[KeySpec] = Field(default_factory=list)


class GenerateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0)
    prefix: str = "user"
    domain: str = "example.com"
    start: int = Field(default=0, ge=0)
    userIds: bool = False


class CriterionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    op: Literal["equals", "notEquals", "exists"] = "equals"
    value: Any = None


class ListSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    listType: ListType = "Standard"
    description: str | None = None
    members: list[str] = Field(default_factory=list)
    generate: GenerateSpec | None = None
    criteria: list[CriterionSpec] | None = None


class MembersSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: list[str]


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint: str
    authType: Literal["NoAuth", "Basic", "OAuth2"] = "NoAuth"
    token: str | None = None
    tokenType: str = "OAuth2"  # Iterable sends "Authorization: OAuth2 <token>"
    username: str | None = None
    password: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    blastSendEnabled: bool = True
    triggeredSendEnabled: bool = True


# -- shared operations (also used by the pytest fixture and seed files) ------------------------


def create_project(state: SandboxState, spec: ProjectSpec) -> tuple[Project, list[dict[str, Any]]]:
    config = ProjectConfig().merged(spec.config)
    project = state.create_project(spec.name, spec.region, spec.identity, config)
    keys = [state.create_key(project, k.type, k.disabled, k.key, k.name).public(reveal=True) for k in spec.keys]
    return project, keys


def create_list(state: SandboxState, project: Project, spec: ListSpec) -> SandboxList:
    generated = None
    if spec.generate is not None:
        g = spec.generate
        generated = GeneratedMembers(g.count, g.prefix, g.domain, g.start, g.userIds)
    criteria = [Criterion(c.field, c.op, c.value) for c in spec.criteria] if spec.criteria else None
    try:
        return lists.create_list(
            state, project, spec.name, spec.listType, spec.members, generated, criteria, spec.description
        )
    except ValueError as exc:
        raise AdminError(400, "invalid_member", str(exc), "members") from None


def add_webhook(state: SandboxState, project: Project, spec: WebhookSpec) -> Webhook:
    with state.lock:
        webhook = Webhook(
            id=state.next_webhook_id(),
            endpoint=spec.endpoint,
            auth_type=spec.authType,
            enabled=spec.enabled,
            blast_send_enabled=spec.blastSendEnabled,
            triggered_send_enabled=spec.triggeredSendEnabled,
            token=spec.token,
            token_type=spec.tokenType,
            username=spec.username,
            password=spec.password,
            headers=dict(spec.headers),
        )
        project.webhooks[webhook.id] = webhook
        return webhook


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "region": project.region,
        "identity": project.identity,
        "keys": [k.public() for k in project.keys.values()],
        "users": len(project.users_by_email),
        "lists": len(project.lists),
        "templates": len(project.templates),
        "webhooks": len(project.webhooks),
    }


# -- plumbing ----------------------------------------------------------------------------------


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise AdminError(400, "invalid_json", "Request body is not valid JSON.") from None


def _model(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise AdminError(
            422, "validation_error", f"{where}: {first['msg']}" if where else first["msg"], where
        ) from None


def _project(request: Request) -> Project:
    state: SandboxState = request.app.state.sandbox
    try:
        return state.project(int(request.path_params["pid"]))
    except (KeyError, ValueError):
        raise AdminError(404, "not_found", f"No project {request.path_params['pid']}.") from None


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise AdminError(400, "invalid_parameter", f"{name} must be an integer", name) from None


AdminHandler = Callable[[Request], Awaitable[Response]]


def admin(path: str, method: str = "GET") -> Callable[[AdminHandler], Route]:
    def decorate(handler: AdminHandler) -> Route:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except AdminError as exc:
                return exc.response()

        return Route(path, endpoint, methods=[method], name=handler.__name__)

    return decorate


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


# -- routes --------------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    return json_response({"service": "iterable-sandbox", "status": "ok"})


@admin("/_sandbox/reset", "POST")
async def reset(request: Request) -> Response:
    _state(request).reset()
    return json_response({"status": "reset"})


@admin("/_sandbox/projects")
async def list_projects(request: Request) -> Response:
    state = _state(request)
    with state.lock:
        return json_response({"projects": [project_view(p) for p in state.projects.values()]})


@admin("/_sandbox/projects", "POST")
async def post_project(request: Request) -> Response:
    spec: ProjectSpec = _model(ProjectSpec, await _body(request))
    try:
        project, keys = create_project(_state(request), spec)
    except (ValueError, ValidationError) as exc:
        raise AdminError(400, "invalid_project", str(exc)) from None
    view = project_view(project)
    view["keys"] = keys
    return json_response(view, 201)


@admin("/_sandbox/projects/{pid}")
async def get_project(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        return json_response(project_view(project))


@admin("/_sandbox/projects/{pid}/keys", "POST")
async def post_key(request: Request) -> Response:
    project = _project(request)
    spec: KeySpec = _model(KeySpec, await _body(request))
    try:
        key = _state(request).create_key(project, spec.type, spec.disabled, spec.key, spec.name)
    except ValueError as exc:
        raise AdminError(409, "conflict", str(exc)) from None
    return json_response(key.public(reveal=True), 201)


async def _set_key_disabled(request: Request, disabled: bool) -> Response:
    project = _project(request)
    state = _state(request)
    try:
        key = state.key_by_id(project, int(request.path_params["kid"]))
    except (KeyError, ValueError):
        raise AdminError(404, "not_found", f"No key {request.path_params['kid']}.") from None
    with state.lock:
        key.disabled = disabled
    return json_response(key.public())


@admin("/_sandbox/projects/{pid}/keys/{kid}/disable", "POST")
async def disable_key(request: Request) -> Response:
    return await _set_key_disabled(request, True)


@admin("/_sandbox/projects/{pid}/keys/{kid}/enable", "POST")
async def enable_key(request: Request) -> Response:
    return await _set_key_disabled(request, False)


@admin("/_sandbox/projects/{pid}/config")
async def get_config(request: Request) -> Response:
    return json_response(_project(request).config.model_dump())


@admin("/_sandbox/projects/{pid}/config", "PATCH")
async def patch_config(request: Request) -> Response:
    project = _project(request)
    changes = await _body(request)
    if not isinstance(changes, dict):
        raise AdminError(400, "invalid_config", "The body must be a JSON object.")
    try:
        config = project.config.merged(changes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AdminError(422, "validation_error", f"{where}: {first['msg']}", where) from None
    with _state(request).lock:
        project.set_config(config)
    return json_response(config.model_dump())


@admin("/_sandbox/projects/{pid}/lists")
async def get_lists(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        return json_response({"lists": [lists.list_admin_view(project, lst) for lst in project.lists.values()]})


@admin("/_sandbox/projects/{pid}/lists", "POST")
async def post_list(request: Request) -> Response:
    project = _project(request)
    spec: ListSpec = _model(ListSpec, await _body(request))
    lst = create_list(_state(request), project, spec)
    with _state(request).lock:
        return json_response(lists.list_admin_view(project, lst), 201)


@admin("/_sandbox/projects/{pid}/lists/{lid}/members", "POST")
async def post_members(request: Request) -> Response:
    project = _project(request)
    spec: MembersSpec = _model(MembersSpec, await _body(request))
    state = _state(request)
    with state.lock:
        lst = project.lists.get(_int(request.path_params["lid"], "listId") or 0)
        if lst is None:
            raise AdminError(404, "not_found", f"No list {request.path_params['lid']}.")
        try:
            added = lists.add_members(project, lst, spec.members)
        except ValueError as exc:
            raise AdminError(400, "invalid_member", str(exc), "members") from None
        return json_response({"added": added, "size": lists.list_size(project, lst)})


@admin("/_sandbox/projects/{pid}/users")
async def get_user(request: Request) -> Response:
    project = _project(request)
    email = request.query_params.get("email")
    user_id = request.query_params.get("userId")
    if not email and not user_id:
        raise AdminError(400, "missing_parameter", "Give email or userId.")
    with _state(request).lock:
        user = project.find_user(email=email or None, user_id=None if email else user_id)
        if user is None:
            raise AdminError(404, "not_found", "No such user.")
        return json_response(user.profile())


@admin("/_sandbox/projects/{pid}/users", "POST")
async def post_users(request: Request) -> Response:
    project = _project(request)
    try:
        entries, create_new = users.validate_bulk_body(await _body(request))
    except IterableError as exc:
        raise AdminError(400, exc.code, exc.msg) from None
    with _state(request).lock:
        result = users.bulk_update(project, entries, create_new)
    return json_response(result.body())


@admin("/_sandbox/projects/{pid}/forget", "POST")
async def post_forget(request: Request) -> Response:
    project = _project(request)
    body = await _body(request)
    email, user_id = body.get("email"), body.get("userId")
    if not email and not user_id:
        raise AdminError(400, "missing_parameter", "Give email or userId.")
    with _state(request).lock:
        existed = project.forget(email=email, user_id=user_id)
    return json_response({"forgotten": True, "existed": existed})


@admin("/_sandbox/projects/{pid}/fields")
async def get_fields(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        return json_response({"fields": users.user_fields(project)})


def _template_admin_view(project: Project, template: Template) -> dict[str, Any]:
    view = templates.email_template_view(project, template)
    view["templateType"] = template.template_type
    return view


@admin("/_sandbox/projects/{pid}/templates")
async def get_templates(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        return json_response(
            {
                "templates": [
                    _template_admin_view(project, t) for t in sorted(project.templates.values(), key=lambda t: t.id)
                ]
            }
        )


@admin("/_sandbox/projects/{pid}/templates/{tid}")
async def get_template(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        template = project.templates.get(_int(request.path_params["tid"], "templateId") or 0)
        if template is None:
            raise AdminError(404, "not_found", f"No template {request.path_params['tid']}.")
        return json_response(_template_admin_view(project, template))


@admin("/_sandbox/projects/{pid}/templates", "POST")
async def post_template(request: Request) -> Response:
    project = _project(request)
    body = await _body(request)
    try:
        fields = templates.parse_template_fields(body, "/_sandbox/templates", "name")
    except IterableError as exc:
        raise AdminError(400, exc.code, f"{exc.msg} {exc.params or ''}".strip()) from None
    template = templates.create(_state(request), project, fields)
    if isinstance(body, dict) and body.get("templateType") in ("Base", "Blast", "Triggered", "Workflow"):
        template.template_type = body["templateType"]
    with _state(request).lock:
        return json_response(_template_admin_view(project, template), 201)


@admin("/_sandbox/projects/{pid}/webhooks")
async def get_webhooks(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        return json_response({"webhooks": [w.api_view() for w in project.webhooks.values()]})


@admin("/_sandbox/projects/{pid}/webhooks", "POST")
async def post_webhook(request: Request) -> Response:
    project = _project(request)
    spec: WebhookSpec = _model(WebhookSpec, await _body(request))
    webhook = add_webhook(_state(request), project, spec)
    return json_response(webhook.api_view(), 201)


@admin("/_sandbox/projects/{pid}/send", "POST")
async def post_send(request: Request) -> Response:
    project = _project(request)
    spec: send.SendRequest = _model(send.SendRequest, await _body(request))
    try:
        summary = await send.run_send(_state(request), project, spec)
    except LookupError as exc:
        raise AdminError(404, "not_found", str(exc)) from None
    except ImportError as exc:
        raise AdminError(501, "renderer_unavailable", f"Handlebars renderer unavailable: {exc}") from None
    return json_response(summary)


def _filtered(items: list[dict[str, Any]], request: Request, nested: bool = False) -> list[dict[str, Any]]:
    campaign_id = _int(request.query_params.get("campaignId"), "campaignId")
    email = request.query_params.get("email")
    event_name = request.query_params.get("eventName")
    out = []
    for item in items:
        data = item.get("dataFields", {}) if nested else item
        if campaign_id is not None and data.get("campaignId") != campaign_id:
            continue
        if email is not None and item.get("email") != email:
            continue
        if event_name is not None and item.get("eventName") != event_name:
            continue
        out.append(item)
    return out


@admin("/_sandbox/projects/{pid}/sends")
async def get_sends(request: Request) -> Response:
    """`?fields=email,userId,variant,status` keeps only those keys of each record
    (which branch each recipient got, without every rendered HTML)."""
    project = _project(request)
    fields = [f for f in request.query_params.get("fields", "").split(",") if f]
    with _state(request).lock:
        sends = _filtered(project.sends, request)
        if fields:
            sends = [{k: item.get(k) for k in fields} for item in sends]
        return json_response({"sends": sends})


@admin("/_sandbox/projects/{pid}/events")
async def get_events(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        return json_response({"events": _filtered(project.events, request, nested=True)})


@admin("/_sandbox/projects/{pid}/stats")
async def get_stats(request: Request) -> Response:
    project = _project(request)
    with _state(request).lock:
        stats: dict[str, dict[str, int]] = {}
        for (bucket, status), count in project.stats.items():
            stats.setdefault(bucket, {})[str(status)] = count
    return json_response({"requests": stats})


ROUTES: list[Route] = [
    Route("/healthz", healthz, methods=["GET"]),
    reset,
    list_projects,
    post_project,
    get_project,
    post_key,
    disable_key,
    enable_key,
    get_config,
    patch_config,
    get_lists,
    post_list,
    post_members,
    get_user,
    post_users,
    post_forget,
    get_fields,
    get_templates,
    get_template,
    post_template,
    get_webhooks,
    post_webhook,
    post_send,
    get_sends,
    get_events,
    get_stats,
]
