"""Simulated sends: real Handlebars rendering per recipient, what each recipient
got, and Iterable-shaped system-webhook events delivered to a receiver."""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from liftstack_shared.handlebars import handlebars_dir
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.sandbox import SandboxHandle

if not (handlebars_dir() / "node_modules" / "handlebars").is_dir():  # pragma: no cover
    pytest.fail("shared/handlebars is not installed: npm ci --prefix shared/handlebars", pytrace=False)

CREATED_AT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \+00:00$")
SUBJECT = (
    '{{#ifEq lf_assignments.[cmp-7] "B"}}Big sale, {{firstName}}!'
    '{{else}}Hello {{defaultIfEmpty firstName "friend"}}{{/ifEq}}'
)
HTML = (
    '{{#ifEq lf_assignments.[cmp-7] "B"}}<a href="https://shop.example.com/b?u={{email}}">Buy</a>'
    '{{else}}<a href="https://shop.example.com/a">Look</a>{{/ifEq}}'
)


@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_first: int = 0

    def by_event(self) -> Counter[str]:
        return Counter(e["eventName"] for e in self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: Request) -> Response:
        if state.fail_first > 0:
            state.fail_first -= 1
            return JSONResponse({"error": "try later"}, status_code=503)
        state.received.append(await request.json())
        state.headers.append(dict(request.headers))
        return JSONResponse({"ok": True})

    with serve_asgi(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as base:
        state.url = f"{base}/hook"
        yield state


@pytest.fixture
def campaign(sandbox: SandboxHandle) -> dict[str, Any]:
    project = sandbox.create_project()
    sandbox.put_users(
        project,
        [
            {
                "email": "ann@example.com",
                "userId": "ann-1",
                "dataFields": {"firstName": "Ann", "lf_assignments": {"cmp-7": "A"}},
            },
            {"email": "bob@example.com", "dataFields": {"firstName": "Bob", "lf_assignments": {"cmp-7": "B"}}},
            {"email": "cy@example.com", "dataFields": {"lf_assignments": {"cmp-7": "B"}, "firstName": "Cy"}},
            {"email": "dee@example.com", "dataFields": {}},
        ],
    )
    list_id = sandbox.create_list(
        project, "audience", ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]
    )
    template_id = sandbox.create_template(
        project,
        name="Spring",
        clientTemplateId="cmp-7",
        subject=SUBJECT,
        preheaderText="For {{email}}",
        html=HTML,
    )
    return {"project": project, "listId": list_id, "templateId": template_id}


def send_request(campaign: dict[str, Any], receiver: Receiver, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "templateId": campaign["templateId"],
        "listId": campaign["listId"],
        "campaignId": 7,
        "campaignKey": "cmp-7",
        "webhook": {
            "url": receiver.url,
            "authType": "OAuth2",
            "token": "hook-secret",
            "headers": {"X-Source": "iterable"},
        },
        "engagement": {
            "default": {"open": 0.0},
            "variants": {"A": {"open": 0.0}, "B": {"open": 1.0, "click": 1.0, "conversion": 1.0}},
        },
        "seed": 42,
        "sentAt": "2024-03-01T12:00:00Z",
        "concurrency": 1,
    }
    request.update(extra)
    return request


async def test_send_renders_per_recipient_and_posts_iterable_events(
    sandbox: SandboxHandle, campaign: dict[str, Any], receiver: Receiver
) -> None:
    summary = await sandbox.send(campaign["project"], **send_request(campaign, receiver))
    assert summary["recipients"] == 4 and summary["sent"] == 4 and summary["skipped"] == 0
    assert summary["events"] == {"emailSend": 4, "emailOpen": 2, "emailClick": 2, "purchase": 2}
    assert summary["deliveries"] == {"targets": 1, "posts": 10, "succeeded": 10, "failed": 0}

    sends = {s["email"]: s for s in sandbox.sends(campaign["project"], campaign_id=7)}
    assert sends["ann@example.com"]["subject"] == "Hello Ann"
    assert sends["bob@example.com"]["subject"] == "Big sale, Bob!"
    assert sends["dee@example.com"]["subject"] == "Hello friend"
    assert sends["bob@example.com"]["preheaderText"] == "For bob@example.com"
    assert sends["bob@example.com"]["html"] == '<a href="https://shop.example.com/b?u=bob@example.com">Buy</a>'
    assert [sends[e]["variant"] for e in sorted(sends)] == ["A", "B", "B", None]

    assert receiver.by_event() == {"emailSend": 4, "emailOpen": 2, "emailClick": 2, "purchase": 2}
    # As Iterable sends them: system webhooks (engagement) "OAuth2 <token>"; the journey
    # webhook (the conversion) uses OAuth2 client credentials, i.e. a Bearer token.
    for event, h in zip(receiver.received, receiver.headers, strict=True):
        scheme = "Bearer" if event["eventName"] == "purchase" else "OAuth2"
        assert h["authorization"] == f"{scheme} hook-secret" and h["x-source"] == "iterable", event
    for event in receiver.received:
        data = event["dataFields"]
        assert CREATED_AT.match(data["createdAt"]), data["createdAt"]
        assert data["campaignId"] == 7 and data["templateId"] == campaign["templateId"]
        assert data["emailId"] == f"c7:t{campaign['templateId']}:{event['email']}"
        assert data["messageId"] == sends[event["email"]]["messageId"]
        assert re.fullmatch(r"[0-9a-f]{32}", data["messageId"])
    ann_send = next(e for e in receiver.received if e["email"] == "ann@example.com")
    assert ann_send["userId"] == "ann-1" and ann_send["eventName"] == "emailSend"
    assert ann_send["dataFields"]["emailSubject"] == "Hello Ann"
    assert ann_send["dataFields"]["workflowId"] is None
    clicks = [e for e in receiver.received if e["eventName"] == "emailClick"]
    assert {e["email"] for e in clicks} == {"bob@example.com", "cy@example.com"}
    assert {e["dataFields"]["url"] for e in clicks} == {
        "https://shop.example.com/b?u=bob@example.com",
        "https://shop.example.com/b?u=cy@example.com",
    }
    # Without reordering, each recipient's events arrive in time order.
    for email in ("bob@example.com", "cy@example.com"):
        names = [e["eventName"] for e in receiver.received if e["email"] == email]
        assert names[:3] == ["emailSend", "emailOpen", "emailClick"]
        times = [e["dataFields"]["createdAt"] for e in receiver.received if e["email"] == email]
        assert times == sorted(times)
    assert len(sandbox.events(campaign["project"], campaign_id=7)) == 10


async def test_sends_are_deterministic_given_the_seed(
    sandbox: SandboxHandle, campaign: dict[str, Any], receiver: Receiver
) -> None:
    rates = {"default": {"open": 0.5, "click": 0.25, "unsubscribe": 0.2, "conversion": 0.3}}
    await sandbox.send(campaign["project"], **send_request(campaign, receiver, engagement=rates))
    first, receiver.received = receiver.received, []
    await sandbox.send(campaign["project"], **send_request(campaign, receiver, engagement=rates))
    assert receiver.received == first
    receiver.received = []
    await sandbox.send(campaign["project"], **send_request(campaign, receiver, engagement=rates, seed=43))
    assert receiver.received != first


async def test_variant_rates_show_lift(sandbox: SandboxHandle, receiver: Receiver) -> None:
    project = sandbox.create_project()
    sandbox.put_users(
        project,
        [
            {
                "email": f"user{i}@example.com",
                "mergeNestedObjects": True,
                "dataFields": {"lf_assignments": {"cmp-9": "B" if i % 2 else "A"}},
            }
            for i in range(400)
        ],
    )
    list_id = sandbox.create_list(project, "all", generate=400)
    template_id = sandbox.create_template(project, name="t", subject="s", html='<a href="https://x.example.com/">x</a>')
    summary = await sandbox.send(
        project,
        templateId=template_id,
        listId=list_id,
        campaignId=9,
        campaignKey="cmp-9",
        webhook={"url": receiver.url},
        seed=1,
        concurrency=16,
        engagement={"variants": {"A": {"open": 0.2, "click": 0.05}, "B": {"open": 0.5, "click": 0.2}}},
    )
    assert summary["recipients"] == 400
    variant = {f"user{i}@example.com": "B" if i % 2 else "A" for i in range(400)}
    opens = Counter(variant[e["email"]] for e in receiver.received if e["eventName"] == "emailOpen")
    clicks = Counter(variant[e["email"]] for e in receiver.received if e["eventName"] == "emailClick")
    assert 20 <= opens["A"] <= 60 and 70 <= opens["B"] <= 130, opens
    assert clicks["B"] > 2 * clicks["A"], clicks


async def test_duplicates_and_reordering(sandbox: SandboxHandle, campaign: dict[str, Any], receiver: Receiver) -> None:
    engagement = {"default": {"open": 1.0, "click": 1.0, "unsubscribe": 1.0}}
    summary = await sandbox.send(
        campaign["project"], **send_request(campaign, receiver, engagement=engagement, duplicates_rate=1.0)
    )
    assert summary["deliveries"]["posts"] == 2 * sum(summary["events"].values())
    counts = Counter(repr(sorted(e.items())) for e in receiver.received)
    assert set(counts.values()) == {2}  # every event delivered exactly twice
    receiver.received = []
    await sandbox.send(
        campaign["project"], **send_request(campaign, receiver, engagement=engagement, reorder=True, seed=5)
    )
    assert Counter(e["eventName"] for e in receiver.received) == {
        "emailSend": 4,
        "emailOpen": 4,
        "emailClick": 4,
        "emailUnSubscribe": 4,
    }
    first_seen: dict[str, str] = {}
    for event in receiver.received:
        first_seen.setdefault(event["email"], event["eventName"])
    assert set(first_seen.values()) != {"emailSend"}  # some recipient's open/click came first


async def test_render_failure_skips_the_recipient(sandbox: SandboxHandle, receiver: Receiver) -> None:
    project = sandbox.create_project()
    sandbox.put_users(project, [{"email": "has@example.com", "dataFields": {"nickname": "xo"}}])
    list_id = sandbox.create_list(project, "l", ["has@example.com", "lacks@example.com"])
    template_id = sandbox.create_template(
        project, name="t", subject='{{#ifContainsStr nickname "x"}}yes{{else}}no{{/ifContainsStr}}'
    )
    summary = await sandbox.send(
        project, templateId=template_id, listId=list_id, campaignId=3, webhook={"url": receiver.url}
    )
    assert (summary["sent"], summary["skipped"]) == (1, 1)
    sends = {s["email"]: s for s in sandbox.sends(project)}
    assert sends["has@example.com"]["subject"] == "yes"
    assert sends["lacks@example.com"]["status"] == "skipped" and "ifContainsStr" in sends["lacks@example.com"]["error"]
    assert sorted((e["email"], e["eventName"]) for e in receiver.received) == [
        ("has@example.com", "emailSend"),
        ("lacks@example.com", "emailSendSkip"),
    ]


async def test_project_webhooks_with_basic_auth_and_retries(
    sandbox: SandboxHandle, campaign: dict[str, Any], receiver: Receiver
) -> None:
    sandbox.add_webhook(campaign["project"], receiver.url, authType="Basic", username="iterable", password="pw")
    sandbox.add_webhook(campaign["project"], "http://127.0.0.1:9/never", enabled=False)
    receiver.fail_first = 2  # the first POST fails twice, then is retried successfully
    request = send_request(campaign, receiver)
    del request["webhook"]
    summary = await sandbox.send(campaign["project"], **request)
    assert summary["deliveries"] == {"targets": 1, "posts": 10, "succeeded": 10, "failed": 0}
    expected = "Basic " + base64.b64encode(b"iterable:pw").decode()
    assert len(receiver.received) == 10 and all(h["authorization"] == expected for h in receiver.headers)


async def test_send_errors(sandbox: SandboxHandle, campaign: dict[str, Any], receiver: Receiver) -> None:
    with pytest.raises(AssertionError, match="404"):
        await sandbox.send(campaign["project"], **send_request(campaign, receiver, templateId=1))
    with pytest.raises(AssertionError, match="422"):
        await sandbox.send(campaign["project"], **send_request(campaign, receiver, engagement={"default": {"open": 2}}))


async def test_basic_auth_is_bare_for_system_webhooks_and_rfc7617_for_journeys(
    sandbox: SandboxHandle, campaign: dict[str, Any], receiver: Receiver
) -> None:
    request = send_request(campaign, receiver)
    request["webhook"] = {"url": receiver.url, "authType": "Basic", "token": "hook-secret-value"}
    await sandbox.send(campaign["project"], **request)
    journey = "Basic " + base64.b64encode(b"iterable:hook-secret-value").decode()
    seen = {(e["eventName"], h["authorization"]) for e, h in zip(receiver.received, receiver.headers, strict=True)}
    assert seen == {
        ("emailSend", "hook-secret-value"),
        ("emailOpen", "hook-secret-value"),
        ("emailClick", "hook-secret-value"),
        ("purchase", journey),
    }
