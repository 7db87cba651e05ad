"""The reverse direction of the judge: liftstack's Python client parses every response
shape Iterable's official client accepts.

The bodies come from `fixtures.mjs`, which walks the official client's zod schemas
(pinned @iterable/api) and checks each body it builds with the schema itself:
"required" (only required fields), "full" (every optional field) and "extra" (plus an
unknown field in every object, as when Iterable adds one). On top of those, the forms
where Iterable's sources disagree and the client must take both: template dates as
the spec's date-time strings, `totalTemplatesCount` as a string or the spec's object,
`locales` as the spec's objects, numbers as numeric strings and nulls for optional
fields. Each body is served to the real `IterableClient` (httpx transport in place of
the network) through the method liftstack calls.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from liftstack_shared.iterable import (
    BulkUpdateUser,
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    IterableBadRequest,
    IterableClient,
    NoRateLimits,
)

HERE = Path(__file__).parent
KEY = "0123456789abcdef0123456789abcdef"


@cache
def official_fixtures() -> dict[str, dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "@iterable" / "api").exists():
        pytest.fail("needs node and `npm ci` in tests/iterable_official (deploy/local/bootstrap)", pytrace=False)
    done = subprocess.run([node, "fixtures.mjs"], cwd=HERE, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"fixtures.mjs failed:\n{done.stderr}"
    return json.loads(done.stdout)


Call = Callable[[IterableClient], Awaitable[Any]]

# Endpoint (fixtures.mjs's names) -> how liftstack calls it, and a check of the result.
CALLS: dict[str, tuple[Call, Callable[[Any, Any], None]]] = {
    "users/bulkUpdate": (
        lambda c: c.bulk_update([BulkUpdateUser(email="ada@example.com", dataFields={"a": 1})]),
        lambda r, body: assert_equal(r.successCount, int(body["successCount"])),
    ),
    "users/getFields": (
        lambda c: c.get_user_fields(),
        lambda r, body: assert_equal(r.fields, body["fields"]),
    ),
    "users/getByEmail": (
        lambda c: c.get_user(email="ada@example.com"),
        lambda r, body: assert_equal(r, body.get("user")),  # None when Iterable knows no such user
    ),
    "users/byUserId": (
        lambda c: c.get_user(user_id="u-1"),
        lambda r, body: assert_equal(r, body.get("user")),
    ),
    "lists": (
        lambda c: c.get_lists(),
        lambda r, body: assert_equal(
            [(x.id, x.createdAt) for x in r],
            [(int(x["id"]), 1704067200000) for x in body["lists"]],  # one type, whatever the form
        ),
    ),
    "templates": (
        lambda c: c.get_templates(page=1, page_size=10),
        lambda r, body: assert_equal(
            [(t.templateId, type(t.createdAt)) for t in r.templates],
            [(int(t["templateId"]), int) for t in body["templates"]],
        ),
    ),
    "templates/email/get": (
        lambda c: c.get_email_template(42),
        lambda r, body: assert_equal(r.templateId, int(body["templateId"])),
    ),
    "templates/getByClientTemplateId": (
        lambda c: c.get_templates_by_client_template_id("lf-x"),
        lambda r, body: assert_equal(
            [(e.templateId, e.locales) for e in r],
            [(int(e["templateId"]), locale_tags(e["locales"])) for e in body["templates"]],
        ),
    ),
    "templates/email/upsert": (
        lambda c: c.upsert_email_template(EmailTemplateUpsert(clientTemplateId="lf-x")),
        lambda r, body: assert_equal(r.msg, body["msg"]),
    ),
    "templates/email/update": (
        lambda c: c.update_email_template(EmailTemplateUpdate(templateId=42)),
        lambda r, body: assert_equal(r.msg, body["msg"]),
    ),
    "webhooks": (
        lambda c: c.get_webhooks(),
        lambda r, body: assert_equal([w.id for w in r], [int(w["id"]) for w in body["webhooks"]]),
    ),
}


def assert_equal(got: Any, expected: Any) -> None:
    assert got == expected


def locale_tags(locales: list[Any]) -> list[str]:
    return [x if isinstance(x, str) else x["languageTag"] for x in locales]


def both_forms(endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The same answer in the other form Iterable (or its spec) uses, or None."""
    other = copy.deepcopy(body)
    if endpoint == "templates":
        for t in other["templates"]:
            t["createdAt"], t["updatedAt"] = "2024-01-01T00:00:00.000Z", "2024-01-02T03:04:05+00:00"
            t["templateId"] = str(t["templateId"])
        other["totalTemplatesCount"] = str(other["totalTemplatesCount"])
        other["nextPageUrl"] = None
        return other
    if endpoint == "templates/getByClientTemplateId":
        for e in other["templates"]:
            e["locales"] = [{"displayLanguage": "English", "languageTag": "en"}]
            e["campaignId"] = None
        return other
    if endpoint == "templates/email/get":
        other["metadata"] = {
            "templateId": other["templateId"],
            "createdAt": "2024-01-01T00:00:00Z",
            "name": None,
            "somethingNew": 1,
        }
        other["messageTypeId"] = "42"
        other["linkParams"] = None
        return other
    if endpoint == "users/bulkUpdate":
        other["successCount"], other["failCount"] = "1", "0"
        other["failedUpdates"] = None
        other["filteredOutFields"] = None
        return other
    if endpoint in ("users/getByEmail", "users/byUserId"):
        return {}  # no such user: Iterable answers an empty object
    if endpoint == "lists":
        for x in other["lists"]:
            x["createdAt"] = "1704067200000"
            x["description"] = None
        return other
    if endpoint == "users/getFields":
        other["fields"] = {"email": "string", "lf_assignments": "object", "lf_assignments.c1": "string"}
        return other
    if endpoint in ("templates/email/upsert", "templates/email/update"):
        other["params"] = None  # Iterable's usual value; the schema allows an object too
        return other
    if endpoint == "webhooks":
        for w in other["webhooks"]:
            w["id"] = str(w["id"])
            w["channelIds"] = None
        return other
    return None


def cases() -> list[tuple[str, str]]:
    out = []
    for endpoint in CALLS:
        for variant in ("required", "full", "extra", "other forms"):
            out.append((endpoint, variant))
    return out


def body_for(endpoint: str, variant: str) -> dict[str, Any] | None:
    fixtures = official_fixtures()[endpoint]
    if variant == "other forms":
        return both_forms(endpoint, fixtures["full"])
    return fixtures[variant]


def client_answering(status: int, body: Any) -> IterableClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return IterableClient(
        KEY,
        base_url="https://api.iterable.com",
        transport=httpx.MockTransport(handler),
        rate_limits=NoRateLimits(),
    )


@pytest.mark.parametrize(("endpoint", "variant"), cases())
async def test_python_client_parses_what_the_official_client_accepts(endpoint: str, variant: str) -> None:
    body = body_for(endpoint, variant)
    if body is None:
        pytest.fail(f"no '{variant}' body for {endpoint}: add one to both_forms()", pytrace=False)
    call, check = CALLS[endpoint]
    async with client_answering(200, body) as client:
        result = await call(client)
    check(result, body)


@pytest.mark.parametrize("variant", ["required", "full", "extra"])
async def test_python_client_reads_official_error_bodies(variant: str) -> None:
    body = official_fixtures()["error"][variant]
    async with client_answering(400, body) as client:
        with pytest.raises(IterableBadRequest) as caught:
            await client.get_lists()
    assert caught.value.message == body["msg"] and caught.value.code == body["code"]


def test_fixtures_cover_every_endpoint_the_client_calls() -> None:
    """A new endpoint in client.py needs its official schema in fixtures.mjs."""
    assert set(official_fixtures()) == set(CALLS) | {"error"}
    source = (Path(__file__).parents[2] / "shared/liftstack_shared/iterable/client.py").read_text()
    called = {line.split('"/api/', 1)[1].split('"', 1)[0] for line in source.splitlines() if '"/api/' in line}
    # Streamed text and a bare number have no JSON schema (lists/getUsers, lists/{id}/size).
    assert called - {"lists/getUsers", "lists/{int(list_id)}/size"} == set(CALLS)


def test_request_models_stay_strict() -> None:
    """Lenient responses, strict requests: a typo must fail here, not be sent."""
    from pydantic import ValidationError

    from liftstack_shared.iterable import LinkParam

    with pytest.raises(ValidationError):
        EmailTemplateUpsert(clientTemplateId="lf-x", subjcet="typo")  # type: ignore[call-arg]  # the misspelt field is the point
    with pytest.raises(ValidationError):
        LinkParam(key="utm_source", value="x", extra="no")  # type: ignore[call-arg]  # the unknown field is the point
    with pytest.raises(ValidationError):
        BulkUpdateUser(email="a@example.com", datafields={})  # type: ignore[call-arg]  # the unknown field is the point
