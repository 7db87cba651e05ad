"""A simulated blast send: render a template for every list member with real
Handlebars, record what each recipient got, and POST Iterable system-webhook events
(plus a journey-style conversion event) to the configured endpoint(s).

Engagement is simulated from rates (fractions of recipients, 0..1):
- open: opens; click: clicks (a clicker always opened first, so click <= open is
  expected; if click > open, every opener clicks); unsubscribe: independent;
  conversion: independent (emitted as the journey webhook event, default "purchase").
- The rates used for a recipient are chosen by their variant: the value found in the
  profile at `engagement.variant_path` (default `lf_assignments.<campaignKey>`,
  campaignKey defaulting to the campaignId) selects `engagement.variants[value]`;
  recipients without one (or with an unknown one) get `engagement.default`. That is
  how a demo shows lift between variants.
- Everything is deterministic given `seed`: each recipient's random draws come from
  their own RNG seeded with (seed, campaignId, email), independent of list order, and
  the draws are taken in a fixed order so changing a rate changes only its outcome.
- Delivery like Iterable's (not guaranteed, may duplicate, may reorder): each event
  is delivered twice with probability `duplicates_rate`; `reorder` shuffles the whole
  delivery order (seeded), otherwise each recipient's events arrive in time order.
  A POST answered 5xx/429 or failing to connect is retried `retries` times (Iterable's
  retry policy is UNCONFIRMED; this is a plausible one).

Auth, as Iterable sends it (iterable-api.md, "Corrections and additions"): engagement
events go out as *system* webhooks: OAuth2 sends `Authorization: OAuth2 <token>`
(`tokenType`, default "OAuth2"), Basic sends the token bare, `Authorization: <token>`
(with only username/password given, the token is their RFC 7617 form). Conversions go
out as a *journey* webhook: Basic is RFC 7617, `Basic base64(user:password)` (user
default "iterable", password default the token); OAuth2 (client credentials at
Iterable) sends `Authorization: Bearer <token>`, as if a token endpoint had issued
`token`. Custom `headers` ("Add HTTP header") go with both.

A recipient whose template fails to render (e.g. `#ifContainsStr` on a missing
field) is skipped, as Iterable fails the send for that user: an `emailSendSkip`
event is emitted instead of emailSend.

The send runs synchronously inside the admin request; it is meant for demo-sized
lists (thousands to tens of thousands of recipients).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from liftstack_sandbox.lists import iter_identifiers
from liftstack_sandbox.state import Project, SandboxState, Webhook, lookup_path

RENDER_BATCH = 500
_HREF_RE = re.compile(r"""href\s*=\s*["'](https?://[^"']+)["']""", re.IGNORECASE)


class Rates(BaseModel):
    model_config = ConfigDict(extra="forbid")
    open: float = Field(default=0.0, ge=0, le=1)
    click: float = Field(default=0.0, ge=0, le=1)
    unsubscribe: float = Field(default=0.0, ge=0, le=1)
    conversion: float = Field(default=0.0, ge=0, le=1)


class Engagement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: Rates = Field(default_factory=lambda: Rates())
    variants: dict[str, Rates] = Field(default_factory=dict)
    # Dotted path into the profile's dataFields; None = lf_assignments.<campaignKey>.
    variant_path: str | None = None


class WebhookTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    authType: Literal["NoAuth", "Basic", "OAuth2"] = "NoAuth"
    token: str | None = None
    tokenType: str = "OAuth2"
    username: str | None = None
    password: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class Conversion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    eventName: str = "purchase"
    total: float = 25.0


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    templateId: int
    listId: int
    campaignId: int
    campaignName: str | None = None
    campaignKey: str | None = None
    # Where events go; default: the project's enabled system webhooks.
    webhook: WebhookTarget | None = None
    engagement: Engagement = Field(default_factory=lambda: Engagement())
    conversion: Conversion = Field(default_factory=lambda: Conversion())
    seed: int = 0
    duplicates_rate: float = Field(default=0.0, ge=0, le=1)
    reorder: bool = False
    # Base time of the send (default: now); events follow it by simulated delays.
    sentAt: dt.datetime | None = None
    deliver: bool = True
    concurrency: int = Field(default=8, ge=1, le=256)
    retries: int = Field(default=2, ge=0, le=10)
    timeout_s: float = Field(default=10.0, gt=0)


@dataclass
class Recipient:
    email: str
    user_id: str | None
    data: dict[str, Any]
    variant: str | None = None
    rendered: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def iterable_time(moment: dt.datetime) -> str:
    """Iterable's webhook timestamp format: "2016-12-02 18:51:45 +00:00"."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S +00:00")


def message_id(seed: int, campaign_id: int, template_id: int, email: str) -> str:
    return hashlib.sha256(f"{seed}:{campaign_id}:{template_id}:{email}".encode()).hexdigest()[:32]


def render_context(
    data: dict[str, Any], email: str, user_id: str | None, campaign_fields: dict[str, Any]
) -> dict[str, Any]:
    """What Handlebars sees: campaign data fields, overridden by the profile (the
    spec: "overridden by user and event data fields of the same name"), plus
    `email`/`userId` and `profile` (Iterable's way to force the profile value)."""
    context: dict[str, Any] = dict(campaign_fields)
    context.update(data)
    context["email"] = email
    if user_id is not None:
        context["userId"] = user_id
    context.setdefault("profile", {**data, "email": email})
    return context


async def run_send(state: SandboxState, project: Project, request: SendRequest) -> dict[str, Any]:
    # Imported here so the rest of the sandbox works without the shared renderer.
    from liftstack_shared.handlebars import HandlebarsError, HandlebarsRenderer

    # 1. Snapshot template, audience and profiles under the lock (no awaits inside).
    with state.lock:
        template = project.templates.get(request.templateId)
        lst = project.lists.get(request.listId)
        if template is None:
            raise LookupError(f"template {request.templateId} not found in project {project.id}")
        if lst is None:
            raise LookupError(f"list {request.listId} not found in project {project.id}")
        fields = dict(template.fields)
        template_name = template.name
        message_type_id = template.message_type_id
        recipients: list[Recipient] = []
        for email in iter_identifiers(project, lst, prefer_user_id=False):
            user = project.find_user(email=email)
            if user is None:
                continue
            recipients.append(
                Recipient(email=user.email or email, user_id=user.user_id, data=user.profile()["dataFields"])
            )

    campaign_key = request.campaignKey or str(request.campaignId)
    path = (
        request.engagement.variant_path.split(".")
        if request.engagement.variant_path
        else ["lf_assignments", campaign_key]
    )
    for r in recipients:
        found, value = lookup_path(r.data, path)
        r.variant = str(value) if found and value is not None else None

    # 2. Render subject, preheader, html (and plain text) with real Handlebars.
    campaign_fields = fields.get("campaignDataFields") or {}
    parts = {name: fields.get(name) or "" for name in ("subject", "preheaderText", "html", "plainText")}
    async with HandlebarsRenderer() as renderer:
        for start in range(0, len(recipients), RENDER_BATCH):
            batch = recipients[start : start + RENDER_BATCH]
            contexts = [render_context(r.data, r.email, r.user_id, campaign_fields) for r in batch]
            for name, source in parts.items():
                try:
                    outputs = await renderer.render_many(source, contexts)
                except HandlebarsError:
                    # Somebody in the batch fails: find who, one by one.
                    outputs = []
                    for r, context in zip(batch, contexts):
                        try:
                            outputs.append(await renderer.render(source, context))
                        except HandlebarsError as exc:
                            r.error = r.error or f"{name}: {exc}"
                            outputs.append("")
                for r, output in zip(batch, outputs):
                    r.rendered[name] = output

    # 3. What each recipient got, and the events it leads to.
    base = (request.sentAt or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    if base.tzinfo is None:
        base = base.replace(tzinfo=dt.UTC)
    send_id = hashlib.sha256(f"{project.id}:{request.campaignId}:{request.seed}:{time.time_ns()}".encode()).hexdigest()[
        :12
    ]
    common = {
        "campaignId": request.campaignId,
        "templateId": request.templateId,
        "campaignName": request.campaignName or f"Campaign {request.campaignId}",
        "templateName": template_name,
        "messageTypeId": message_type_id,
        "channelId": message_type_id // 10,
        "contentId": request.templateId,
        "workflowId": None,
        "workflowName": None,
        "experimentId": None,
        "labels": [],
        "locale": None,
    }
    sends: list[dict[str, Any]] = []
    timeline: list[list[tuple[dt.datetime, dict[str, Any]]]] = []
    for r in recipients:
        mid = message_id(request.seed, request.campaignId, request.templateId, r.email)
        rates = (
            request.engagement.variants.get(r.variant, request.engagement.default)
            if r.variant
            else request.engagement.default
        )
        sends.append(
            {
                "sendId": send_id,
                "email": r.email,
                "userId": r.user_id,
                "campaignId": request.campaignId,
                "templateId": request.templateId,
                "messageId": mid,
                "variant": r.variant,
                "status": "skipped" if r.error else "sent",
                "error": r.error,
                "subject": r.rendered.get("subject", ""),
                "preheaderText": r.rendered.get("preheaderText", ""),
                "html": r.rendered.get("html", ""),
                "plainText": r.rendered.get("plainText", ""),
                "sentAt": iterable_time(base),
            }
        )
        timeline.append(_events_for(r, rates, request, common, mid, base))

    # 4. Delivery order: per recipient in time order, or one seeded shuffle.
    rng = random.Random(f"{request.seed}:{request.campaignId}:delivery")
    deliveries: list[list[dict[str, Any]]] = []
    for events in timeline:
        user_queue: list[dict[str, Any]] = []
        for _, event in sorted(events, key=lambda e: e[0]):
            user_queue.append(event)
            if request.duplicates_rate and rng.random() < request.duplicates_rate:
                user_queue.append(event)
        deliveries.append(user_queue)
    if request.reorder:
        flat = [e for queue in deliveries for e in queue]
        rng.shuffle(flat)
        deliveries = [[e] for e in flat]

    with state.lock:
        project.sends.extend(sends)
        project.events.extend(
            {"sendId": send_id, **event} for events in timeline for _, event in sorted(events, key=lambda e: e[0])
        )
        targets = _targets(project, request)

    # 5. POST the events.
    delivered = failed = 0
    if request.deliver and targets:
        delivered, failed = await _deliver(deliveries, targets, request)

    counts: dict[str, int] = {}
    for events in timeline:
        for _, event in events:
            counts[event["eventName"]] = counts.get(event["eventName"], 0) + 1
    return {
        "sendId": send_id,
        "campaignId": request.campaignId,
        "templateId": request.templateId,
        "listId": request.listId,
        "recipients": len(recipients),
        "sent": sum(1 for s in sends if s["status"] == "sent"),
        "skipped": sum(1 for s in sends if s["status"] == "skipped"),
        "events": counts,
        "deliveries": {
            "targets": len(targets),
            "posts": sum(len(q) for q in deliveries) * len(targets) if request.deliver else 0,
            "succeeded": delivered,
            "failed": failed,
        },
    }


def _events_for(
    r: Recipient,
    rates: Rates,
    request: SendRequest,
    common: dict[str, Any],
    mid: str,
    base: dt.datetime,
) -> list[tuple[dt.datetime, dict[str, Any]]]:
    rng = random.Random(f"{request.seed}:{request.campaignId}:{r.email}")
    # Fixed draw order (see module docstring).
    u_open, u_click, u_unsub, u_conv = rng.random(), rng.random(), rng.random(), rng.random()
    t_send = base + dt.timedelta(seconds=rng.uniform(0, 60))
    t_open = t_send + dt.timedelta(seconds=rng.uniform(60, 6 * 3600))
    t_click = t_open + dt.timedelta(seconds=rng.uniform(5, 1800))
    t_unsub = t_open + dt.timedelta(seconds=rng.uniform(30, 3600))
    t_conv = t_send + dt.timedelta(seconds=rng.uniform(7 * 3600, 48 * 3600))
    links = _HREF_RE.findall(r.rendered.get("html", ""))
    href_index = rng.randrange(len(links)) if links else 0
    device = rng.choice(["Mac", "iPhone", "Android", "Windows"])
    ip = f"203.0.113.{rng.randrange(1, 255)}"

    def email_event(name: str, at: dt.datetime, **extra: Any) -> tuple[dt.datetime, dict[str, Any]]:
        data: dict[str, Any] = {
            "email": r.email,
            "createdAt": iterable_time(at),
            **common,
            "messageId": mid,
            "emailId": f"c{request.campaignId}:t{request.templateId}:{r.email}",
            **extra,
        }
        event: dict[str, Any] = {"email": r.email, "eventName": name, "dataFields": data}
        if r.user_id is not None:
            event["userId"] = r.user_id
        return at, event

    if r.error:
        return [email_event("emailSendSkip", t_send, reason="RenderError", emailSubject=None)]
    events = [email_event("emailSend", t_send, emailSubject=r.rendered.get("subject", ""))]
    opened = u_open < rates.open
    clicked = opened and rates.open > 0 and u_click < min(1.0, rates.click / rates.open)
    if opened:
        events.append(email_event("emailOpen", t_open, ip=ip, userAgent="Mozilla/5.0", userAgentDevice=device))
    if clicked:
        url = links[href_index] if links else "https://example.com/"
        events.append(
            email_event(
                "emailClick",
                t_click,
                url=url,
                hrefIndex=href_index,
                ip=ip,
                userAgent="Mozilla/5.0",
                userAgentDevice=device,
            )
        )
    if u_unsub < rates.unsubscribe:
        events.append(
            email_event(
                "emailUnSubscribe",
                t_unsub if opened else t_send + dt.timedelta(minutes=5),
                unsubSource="EmailLink",
                emailListIds=[],
                channelIds=[common["channelId"]],
                messageTypeIds=[],
            )
        )
    if u_conv < rates.conversion:
        data = {
            "campaignId": request.campaignId,
            "templateId": request.templateId,
            "messageId": mid,
            "emailId": f"c{request.campaignId}:t{request.templateId}:{r.email}",
            "createdAt": iterable_time(t_conv),
            "total": request.conversion.total,
        }
        event = {"email": r.email, "eventName": request.conversion.eventName, "dataFields": data}
        if r.user_id is not None:
            event["userId"] = r.user_id
        events.append((t_conv, event))
    return events


def _targets(project: Project, request: SendRequest) -> list[Webhook]:
    if request.webhook is not None:
        w = request.webhook
        return [
            Webhook(
                id=0,
                endpoint=w.url,
                auth_type=w.authType,
                token=w.token,
                token_type=w.tokenType,
                username=w.username,
                password=w.password,
                headers=dict(w.headers),
            )
        ]
    return [w for w in project.webhooks.values() if w.enabled and w.blast_send_enabled]


def rfc7617(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def auth_headers(webhook: Webhook, journey: bool = False) -> dict[str, str]:
    """Headers of one POST: a system webhook's (engagement events) or, with
    `journey`, a journey webhook's (conversions); see the module doc."""
    headers = {"Content-Type": "application/json", **webhook.headers}
    if webhook.auth_type == "OAuth2" and webhook.token:
        scheme = "Bearer" if journey else webhook.token_type
        headers["Authorization"] = f"{scheme} {webhook.token}"
    elif webhook.auth_type == "Basic":
        if journey:
            password = webhook.password if webhook.password is not None else webhook.token
            headers["Authorization"] = rfc7617(webhook.username or "iterable", password or "")
        elif webhook.token:
            headers["Authorization"] = webhook.token
        else:
            headers["Authorization"] = rfc7617(webhook.username or "", webhook.password or "")
    return headers


SYSTEM_EVENTS = frozenset(
    {
        "emailSend",
        "emailSendSkip",
        "emailOpen",
        "emailClick",
        "emailUnSubscribe",
        "emailSubscribe",
        "emailBounce",
        "emailComplaint",
        "hostedUnsubscribeClick",
    }
)


async def _deliver(
    deliveries: list[list[dict[str, Any]]], targets: list[Webhook], request: SendRequest
) -> tuple[int, int]:
    """POST every queue's events in order; queues run concurrently."""
    delivered = failed = 0
    semaphore = asyncio.Semaphore(request.concurrency)
    async with httpx.AsyncClient(timeout=request.timeout_s) as client:

        async def post(target: Webhook, event: dict[str, Any]) -> bool:
            body = orjson.dumps(event)
            headers = auth_headers(target, journey=event["eventName"] not in SYSTEM_EVENTS)
            for attempt in range(request.retries + 1):
                try:
                    response = await client.post(target.endpoint, content=body, headers=headers)
                    if response.status_code < 500 and response.status_code != 429:
                        return response.status_code < 400
                except httpx.HTTPError:
                    pass
                if attempt < request.retries:
                    await asyncio.sleep(0.05 * 2**attempt)
            return False

        async def run_queue(queue: list[dict[str, Any]]) -> None:
            nonlocal delivered, failed
            async with semaphore:
                for event in queue:
                    for target in targets:
                        if await post(target, event):
                            delivered += 1
                        else:
                            failed += 1

        await asyncio.gather(*(run_queue(q) for q in deliveries))
    return delivered, failed
