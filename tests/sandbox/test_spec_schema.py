"""The sandbox against Iterable's own Swagger 2.0 spec (iterable-openapi.json):
every route it serves exists in the spec, 200 bodies validate against the declared
response schemas (with `#/definitions/...` refs and format checks), error bodies are
IterableApiResponse, and every required query parameter is enforced with a 400.

The spec's location: tests/iterable_client/spec.py (SPEC_PATH).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import httpx
import pytest
from jsonschema import Draft4Validator

from liftstack_sandbox import api as sandbox_api
from tests.fixtures.sandbox import SandboxHandle
from tests.iterable_client.spec import SPEC_PATH
from tests.sandbox.conftest import Api


@cache
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.fail(f"Iterable's spec not found at {SPEC_PATH}; set ITERABLE_OPENAPI.", pytrace=False)
    return json.loads(SPEC_PATH.read_text())


@cache
def definitions() -> dict[str, Any]:
    """The spec's definitions, with the one deliberate exception: Swagger 2.0 cannot
    say "nullable", and Iterable answers `"params": null` (iterable-api.md, and the
    brief's 401/429 bodies), so IterableApiResponse.params may also be null."""
    defs = json.loads(json.dumps(spec()["definitions"]))
    defs["IterableApiResponse"]["properties"]["params"]["type"] = ["object", "null"]
    # Where the spec and Iterable's official client (@iterable/api, whose zod schemas
    # its integration tests run against the live API) disagree, the live API wins
    # (services/iterable_sandbox/README.md, "Where the sources disagree"):
    # template dates are epoch-ms integers, totalTemplatesCount a number, and
    # ApiTemplateEntry.locales an array of strings (the spec's `#/definitions/string`
    # is an object {displayLanguage, languageTag}, an artefact).
    for name in ("createdAt", "updatedAt"):
        defs["ApiTemplateResponse"]["properties"][name] = {"type": "integer", "format": "int64"}
    defs["GetTemplatesResponse"]["properties"]["totalTemplatesCount"] = {"type": "integer"}
    defs["ApiTemplateEntry"]["properties"]["locales"]["items"] = {"type": "string"}
    return defs


def validator(schema: dict[str, Any]) -> Draft4Validator:
    # Swagger 2.0 schema objects are JSON Schema draft 4 (+ ignorable keywords);
    # embedding the definitions resolves "#/definitions/X" refs as they are.
    return Draft4Validator({**schema, "definitions": definitions()}, format_checker=Draft4Validator.FORMAT_CHECKER)


def problems(schema: dict[str, Any], body: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator(schema).iter_errors(body)
    ]


def operation(method: str, template: str) -> dict[str, Any]:
    op = spec()["paths"].get(template, {}).get(method.lower())
    assert op is not None, f"{method} {template} is not in Iterable's spec"
    return op


def test_every_served_route_is_in_the_spec() -> None:
    served = []
    for route in sandbox_api.ROUTES:
        template = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if template == "/api/{rest}":
            continue  # the catch-all 404
        for method in route.methods or ():
            if method != "HEAD":
                operation(method, template)
                served.append((method, template))
    assert len(served) == 16


@pytest.fixture
def populated(sandbox: SandboxHandle, api: Api) -> dict[str, Any]:
    """A project with a bit of everything, so every response has content."""
    sandbox.put_users(
        api.project,
        [
            {
                "email": "ann@example.com",
                "userId": "ann-1",
                "dataFields": {"firstName": "Ann", "lf_assignments": {"cmp-1": "B"}, "score": 1.5, "tags": ["a"]},
            },
        ],
    )
    list_id = sandbox.create_list(api.project, "Newsletter", ["ann@example.com"], description="d")
    sandbox.create_list(api.project, "Segment", generate=3, dynamic=True)
    template_id = sandbox.create_template(
        api.project,
        name="Spring",
        clientTemplateId="cmp-1",
        subject="Hi {{firstName}}",
        html="<p/>",
        fromEmail="shop@example.com",
        ccEmails=["cc@example.com"],
        linkParams=[{"key": "utm", "value": "x"}],
        cacheDataFeed=True,
        campaignDataFields={"a": 1},
    )
    sandbox.add_webhook(api.project, "https://hooks.example.com/i", authType="OAuth2", token="t")
    return {"listId": list_id, "templateId": template_id}


def cases(ids: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(method, spec path template, concrete URL, JSON body)."""
    return [
        (
            "POST",
            "/api/users/bulkUpdate",
            "/api/users/bulkUpdate",
            {"users": [{"email": "ann@example.com", "dataFields": {"x": 1}}, {"email": "bad", "dataFields": {}}]},
        ),
        ("GET", "/api/users/getFields", "/api/users/getFields", None),
        ("GET", "/api/users/getByEmail", "/api/users/getByEmail?email=ann@example.com", None),
        ("GET", "/api/users/getByEmail", "/api/users/getByEmail?email=nobody@example.com", None),
        ("GET", "/api/users/byUserId", "/api/users/byUserId?userId=ann-1", None),
        ("GET", "/api/users/byUserId/{userId}", "/api/users/byUserId/ann-1", None),
        ("GET", "/api/users/{email}", "/api/users/ann@example.com", None),
        ("GET", "/api/lists", "/api/lists", None),
        ("GET", "/api/lists/getUsers", f"/api/lists/getUsers?listId={ids['listId']}", None),
        ("GET", "/api/lists/{listId}/size", f"/api/lists/{ids['listId']}/size", None),
        ("GET", "/api/templates", "/api/templates?pageSize=1", None),
        ("GET", "/api/templates/email/get", f"/api/templates/email/get?templateId={ids['templateId']}", None),
        (
            "GET",
            "/api/templates/getByClientTemplateId",
            "/api/templates/getByClientTemplateId?clientTemplateId=cmp-1",
            None,
        ),
        (
            "POST",
            "/api/templates/email/upsert",
            "/api/templates/email/upsert",
            {"clientTemplateId": "cmp-1", "subject": "s"},
        ),
        (
            "POST",
            "/api/templates/email/update",
            "/api/templates/email/update",
            {"templateId": ids["templateId"], "html": "<b/>"},
        ),
        ("GET", "/api/webhooks", "/api/webhooks", None),
        ("POST", "/api/users/forget", "/api/users/forget", {"email": "gone@example.com"}),
    ]


def test_success_bodies_match_the_spec(sandbox: SandboxHandle, api: Api, populated: dict[str, Any]) -> None:
    sandbox.configure(api.project, rate_limits=False)
    checked = 0
    for method, template, url, body in cases(populated):
        op = operation(method, template)
        response = api.client.request(method, url, json=body)
        assert response.status_code == 200, (url, response.text)
        declared = op["responses"]["200"]
        assert "schema" in declared, template
        schema = declared["schema"]
        if schema == {"type": "string"}:
            # getUsers (produces text/plain) and size (a bare number, iterable-api.md):
            # plain-text bodies, not JSON documents.
            assert response.headers["content-type"].startswith("text/plain"), url
            if template.endswith("/size"):
                assert response.text.isdigit(), response.text
            continue
        assert response.headers["content-type"].startswith("application/json"), url
        found = problems(schema, response.json())
        assert not found, (url, found)
        checked += 1
    assert checked == 15  # JSON bodies; plus getUsers and size as text


def test_the_schema_check_can_fail() -> None:
    """Guard against a validator that accepts anything (e.g. unresolved refs)."""
    lists_schema = operation("GET", "/api/lists")["responses"]["200"]["schema"]
    assert problems(lists_schema, {"lists": [{"id": 1, "name": "x", "listType": "Standard", "createdAt": 1}]}) == []
    assert problems(lists_schema, {"lists": [{"id": "1", "name": "x", "listType": "Other"}]})
    templates_schema = operation("GET", "/api/templates")["responses"]["200"]["schema"]
    assert problems(
        templates_schema,
        {
            "templates": [
                {
                    "templateId": 1,
                    "name": "n",
                    "creatorUserId": "c",
                    "messageTypeId": 1,
                    "createdAt": "2024-01-02 03:04:05 +00:00",
                    "updatedAt": "2024-01-02T03:04:05Z",
                }
            ]
        },
    )  # not an RFC 3339 date-time


def test_error_bodies_are_iterable_api_responses(sandbox: SandboxHandle, api: Api, populated: dict[str, Any]) -> None:
    error_schema = {"$ref": "#/definitions/IterableApiResponse"}
    observed: dict[int, dict[str, Any]] = {}

    def record(response: httpx.Response) -> None:
        observed[response.status_code] = response.json()

    record(httpx.get(f"{sandbox.api_url('US')}/api/lists", headers={"Api-Key": "nope"}))  # 401
    record(api.client.post("/api/users/bulkUpdate", content=b"{", headers={"content-type": "application/json"}))  # 400
    record(
        api.client.get("/api/templates/email/get", params={"templateId": populated["templateId"], "locale": "xx"})
    )  # 404
    sandbox.faults(api.project, fail_next=1, fail_status=500)
    record(api.client.get("/api/lists"))
    sandbox.faults(api.project, fail_next=1, fail_status=503)
    record(api.client.get("/api/lists"))
    sandbox.configure(api.project, body_limit_bytes=10)
    record(api.client.post("/api/users/bulkUpdate", json={"users": []}))  # 413
    sandbox.configure(api.project, body_limit_bytes=4_000_000)
    for _ in range(10):
        api.client.post("/api/users/bulkUpdate", json={"users": []})
    record(api.client.post("/api/users/bulkUpdate", json={"users": []}))  # 429
    assert set(observed) == {400, 401, 404, 413, 429, 500, 503}
    for status, body in observed.items():
        assert not problems(error_schema, body), (status, body)
        assert set(body) == {"msg", "code", "params"}, body


def test_required_query_parameters_are_enforced(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.configure(api.project, rate_limits=False)
    checked = 0
    for route in sandbox_api.ROUTES:
        template = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if "GET" not in (route.methods or ()) or template == "/api/{rest}" or "{" in template:
            continue
        for param in operation("GET", template).get("parameters", []):
            if param["in"] == "query" and param.get("required"):
                response = api.client.get(template)
                assert response.status_code == 400, template
                assert response.json()["code"] == "BadParams"
                assert param["name"] in response.json()["msg"]
                checked += 1
    assert checked == 3  # getUsers listId, email/get templateId, getByClientTemplateId
