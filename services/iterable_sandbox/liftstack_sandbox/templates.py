"""Email templates: upsert by clientTemplateId, update by templateId, get, list.

Semantics (spec + iterable-api.md):
- upsert (UpsertEmailTemplateModel): only clientTemplateId is required. Every email
  template of the project matching it is updated with the fields given; when none
  matches, one is created (name defaults to the clientTemplateId). The response is
  IterableApiResponse and the id(s) appear only in `msg`:
  "Upserted 1 templates with IDs: 100001". Matching by name instead is a config
  switch (the spec contradicts itself).
- update (ApiEmailTemplateModel): templateId required; only the fields given change.
  Unknown templateId: 400 BadParams.
- get: the full template plus `metadata` (ApiTemplateResponse). Unknown templateId:
  400 BadParams; a `locale` the template has no content for: 404 NotFound. With
  config `template_read_delay_ms`, a template just created by upsert answers get
  with 404 NotFound (and update with 400, as an unknown id) for that long.
- getByClientTemplateId: `{"templates": [{templateId, campaignId?, locales}]}` with
  `locales` an array of locale strings (Iterable's official client requires that;
  the spec's `#/definitions/string` is an object, an artefact). An unknown id answers
  per config `unknown_client_template_id`: 200 with [], 400 or 404.
- list: paged (page from 1, pageSize default 20, max 1000); without paging
  parameters the sandbox still pages (Iterable's unpaginated mode is deprecated).
  nextPageUrl/previousPageUrl are absolute URLs on the same region prefix.
  createdAt/updatedAt are epoch ms and totalTemplatesCount a number, as Iterable
  sends them (config `template_dates`, `templates_total_count` switch to the spec's
  reading).
- Unknown body fields are ignored, like Iterable's JSON reader; wrongly typed known
  fields are 400 BadJsonBody.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from liftstack_sandbox.errors import IterableError, bad_json, bad_params
from liftstack_sandbox.state import DEFAULT_LOCALE, Project, SandboxState, Template, now_ms
from liftstack_sandbox.users import is_valid_email

_STRINGS = {
    "clientTemplateId",
    "creatorUserId",
    "fromEmail",
    "fromName",
    "googleAnalyticsCampaignName",
    "html",
    "locale",
    "name",
    "plainText",
    "preheaderText",
    "replyToEmail",
    "subject",
}
_STRING_LISTS = {"ccEmails", "bccEmails"}
_NUMBER_LISTS = {"dataFeedIds"}
_NUMBERS = {"dataFeedId", "messageTypeId"}
_BOOLS = {"isDefaultLocale"}
# The spec types these `object` (cacheDataFeed, mergeDataFeedContext) although
# Iterable's UI treats them as flags: accept a boolean or an object; GET answers
# only object values (see email_template_view).
_FLAGS_OR_OBJECTS = {"cacheDataFeed", "mergeDataFeedContext"}
_OBJECTS = {"campaignDataFields"}
CONTENT_FIELDS = (
    _STRINGS | _STRING_LISTS | _NUMBER_LISTS | _NUMBERS | _BOOLS | _FLAGS_OR_OBJECTS | _OBJECTS | {"linkParams"}
)
# Always present in GET email/get, as Iterable fills them with defaults.
_DEFAULTS: dict[str, Any] = {
    "name": "",
    "fromName": "",
    "fromEmail": "",
    "replyToEmail": "",
    "subject": "",
    "preheaderText": "",
    "html": "",
    "plainText": "",
    "ccEmails": [],
    "bccEmails": [],
    "dataFeedIds": [],
    "linkParams": [],
}


def _err(params: dict[str, Any], path: str, key: str) -> None:
    params.setdefault(f"obj.{path}", []).append({"msg": [key], "args": []})


def parse_template_fields(body: Any, endpoint: str, require: str) -> dict[str, Any]:
    """The known content fields of an upsert/update body, type-checked."""
    params: dict[str, Any] = {}
    if not isinstance(body, dict):
        raise bad_json(endpoint, {"obj": [{"msg": ["error.expected.jsobject"], "args": []}]})
    if body.get(require) is None:
        _err(params, require, "error.path.missing")
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name not in CONTENT_FIELDS or value is None:
            continue
        if name in _STRINGS and not isinstance(value, str):
            _err(params, name, "error.expected.jsstring")
        elif name in _STRING_LISTS and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            _err(params, name, "error.expected.jsarray")
        elif name in _NUMBER_LISTS and not (isinstance(value, list) and all(_is_number(v) for v in value)):
            _err(params, name, "error.expected.jsarray")
        elif name in _NUMBERS and not _is_number(value):
            _err(params, name, "error.expected.jsnumber")
        elif name in _BOOLS and not isinstance(value, bool):
            _err(params, name, "error.expected.jsboolean")
        elif name in _FLAGS_OR_OBJECTS and not isinstance(value, (bool, dict)):
            _err(params, name, "error.expected.jsboolean")
        elif name in _OBJECTS and not isinstance(value, dict):
            _err(params, name, "error.expected.jsobject")
        elif name == "linkParams" and not (
            isinstance(value, list)
            and all(
                isinstance(p, dict) and isinstance(p.get("key"), str) and isinstance(p.get("value"), str) for p in value
            )
        ):
            _err(params, name, "error.expected.jsarray")
        else:
            fields[name] = value
    if params:
        raise bad_json(endpoint, params)
    for name in ("fromEmail", "replyToEmail"):
        if fields.get(name) and not is_valid_email(fields[name]):
            raise bad_params(f"Invalid {name}: {fields[name]}")
    return fields


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def upsert(state: SandboxState, project: Project, fields: dict[str, Any]) -> list[int]:
    match_by = project.config.template_upsert_match
    key = fields.get(match_by)
    with state.lock:
        matches = [
            t
            for t in sorted(project.templates.values(), key=lambda t: t.id)
            if key is not None and t.fields.get(match_by) == key
        ]
        if not matches:
            created = create(state, project, fields)
            created.readable_from_ms = created.created_ms + project.config.template_read_delay_ms
            return [created.id]
        ts = now_ms()
        for template in matches:
            template.fields.update(fields)
            template.updated_ms = ts
        return [t.id for t in matches]


def create(state: SandboxState, project: Project, fields: dict[str, Any]) -> Template:
    with state.lock:
        fields = dict(fields)
        fields.setdefault("name", fields.get("clientTemplateId") or "Untitled")
        ts = now_ms()
        template = Template(
            id=state.next_template_id(),
            fields=fields,
            created_ms=ts,
            updated_ms=ts,
            creator_user_id=fields.get("creatorUserId") or project.creator_user_id,
            message_type_id=int(fields.get("messageTypeId") or project.message_type_id),
        )
        project.templates[template.id] = template
        return template


def update(state: SandboxState, project: Project, template_id: int, fields: dict[str, Any]) -> Template:
    with state.lock:
        template = project.templates.get(template_id)
        if template is None or not template.readable():
            raise bad_params(f"Template with id {template_id} does not exist")
        template.fields.update(fields)
        if "messageTypeId" in fields:
            template.message_type_id = int(fields["messageTypeId"])
        template.updated_ms = now_ms()
        return template


def get_template(project: Project, template_id: int, locale: str | None = None) -> Template:
    template = project.templates.get(template_id)
    if template is None:
        raise bad_params(f"Template with id {template_id} does not exist")
    if not template.readable():
        raise IterableError(404, "NotFound", f"Template {template_id} not found")
    if locale and locale != template.fields.get("locale", DEFAULT_LOCALE):
        raise IterableError(404, "NotFound", f"Content does not exist for locale {locale}")
    return template


def format_date(ms: int, style: str) -> str | int:
    if style == "epoch_ms":
        return ms
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds")


def metadata_view(project: Project, template: Template) -> dict[str, Any]:
    """ApiTemplateResponse: the list entry and email/get's `metadata`."""
    style = project.config.template_dates
    view: dict[str, Any] = {
        "templateId": template.id,
        "createdAt": format_date(template.created_ms, style),
        "updatedAt": format_date(template.updated_ms, style),
        "name": template.name,
        "creatorUserId": template.creator_user_id,
        "messageTypeId": template.message_type_id,
    }
    if template.client_template_id is not None:
        view["clientTemplateId"] = template.client_template_id
    if template.campaign_id is not None:
        view["campaignId"] = template.campaign_id
    return view


def email_template_view(project: Project, template: Template) -> dict[str, Any]:
    """ApiEmailTemplateModel, as GET /api/templates/email/get answers it."""
    view: dict[str, Any] = {"templateId": template.id}
    view.update(_DEFAULTS)
    view.update(template.fields)
    for name in _FLAGS_OR_OBJECTS:
        # The spec types these `object` in ApiEmailTemplateModel (and one of them
        # `boolean` in the upsert model): a stored flag is omitted rather than
        # answered as something the response schema forbids.
        if name in view and not isinstance(view[name], dict):
            del view[name]
    view["messageTypeId"] = template.message_type_id
    view["creatorUserId"] = template.creator_user_id
    view["metadata"] = metadata_view(project, template)
    return view


_SORT_KEYS = {
    "id": lambda t: t.id,
    "name": lambda t: (t.name, t.id),
    "createdAt": lambda t: (t.created_ms, t.id),
    "updatedAt": lambda t: (t.updated_ms, t.id),
}


def parse_datetime(value: str, name: str) -> int:
    """'yyyy-MM-dd HH:mm:ss [ZZ]' (the spec) or ISO 8601 -> epoch ms."""
    text = value.strip()
    for candidate in (text, text.replace(" +", "+").replace(" -", "-")):
        try:
            moment = dt.datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)
    raise bad_params(f"Invalid {name}: {value}")


def list_templates(
    project: Project,
    query: dict[str, str],
    base_url: str,
) -> dict[str, Any]:
    template_type = query.get("templateType")
    if template_type is not None and template_type not in ("Base", "Blast", "Triggered", "Workflow"):
        raise bad_params(f"Invalid templateType: {template_type}")
    medium = query.get("messageMedium")
    if medium is not None and medium not in ("Email", "Push", "InApp", "SMS"):
        raise bad_params(f"Invalid messageMedium: {medium}")
    page = _int_param(query, "page", 1, minimum=1)
    page_size = _int_param(query, "pageSize", 20, minimum=1, maximum=1000)
    sort = query.get("sort", "id")
    descending = sort.startswith("-")
    sort_key = _SORT_KEYS.get(sort.lstrip("+-"))
    if sort_key is None:
        raise bad_params(f"Invalid sort: {sort}")
    start = parse_datetime(query["startDateTime"], "startDateTime") if "startDateTime" in query else None
    end = parse_datetime(query["endDateTime"], "endDateTime") if "endDateTime" in query else None

    selected = [
        t
        for t in project.templates.values()
        if (template_type is None or t.template_type == template_type)
        and (medium is None or medium == "Email")
        and (start is None or t.created_ms >= start)
        and (end is None or t.created_ms < end)
    ]
    selected.sort(key=sort_key, reverse=descending)
    total = len(selected)
    page_items = selected[(page - 1) * page_size : page * page_size]
    body: dict[str, Any] = {"templates": [metadata_view(project, t) for t in page_items]}
    if project.config.templates_total_count:
        body["totalTemplatesCount"] = total
    if page * page_size < total:
        body["nextPageUrl"] = _page_url(base_url, query, page + 1)
    if page > 1:
        body["previousPageUrl"] = _page_url(base_url, query, page - 1)
    return body


def _page_url(base_url: str, query: dict[str, str], page: int) -> str:
    params = dict(query)
    params["page"] = str(page)
    return f"{base_url}/api/templates?{urlencode(params)}"


def _int_param(
    query: dict[str, str], name: str, default: int, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_params(f"Invalid {name}: {raw}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise bad_params(f"Invalid {name}: {raw} (must be between {minimum} and {maximum or 'unbounded'})")
    return value


def by_client_template_id(project: Project, client_template_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for template in sorted(project.templates.values(), key=lambda t: t.id):
        if template.client_template_id == client_template_id:
            entry: dict[str, Any] = {"templateId": template.id, "locales": template.locales}
            if template.campaign_id is not None:
                entry["campaignId"] = template.campaign_id
            out.append(entry)
    if not out:
        mode = project.config.unknown_client_template_id
        msg = f"No templates found for clientTemplateId {client_template_id}"
        if mode == "400":
            raise bad_params(msg, {"clientTemplateId": client_template_id})
        if mode == "404":
            raise IterableError(404, "NotFound", msg, {"clientTemplateId": client_template_id})
    return out


def upsert_message(ids: list[int]) -> str:
    return f"Upserted {len(ids)} templates with IDs: {', '.join(str(i) for i in ids)}"
