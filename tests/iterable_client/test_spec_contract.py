"""The client's requests (and the canned responses the unit tests use) validated
against Iterable's own Swagger 2.0 spec, so neither can drift from Iterable's
contract. The sandbox contract tests run the same checks over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from liftstack_shared.iterable import (
    BulkUpdateUser,
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    IterableClient,
    LinkParam,
    TemplateType,
)

from . import samples, spec


def answer(request: httpx.Request) -> httpx.Response:
    path = request.url.path.removeprefix("/us").removeprefix("/eu")
    if path == "/api/lists/getUsers":
        return httpx.Response(200, text="a@x.test\n")
    if path.endswith("/size"):
        return httpx.Response(200, text="1")
    return httpx.Response(200, json=samples.BY_ROUTE[(request.method, path)])


async def exercise(client: IterableClient) -> None:
    """Every method, with every optional field the client models set."""
    await client.bulk_update(
        [
            BulkUpdateUser(
                email="a@x.test",
                dataFields={"lf_assignments": {"cmp-1": "B"}, "n": 1.5},
                preferUserId=False,
                mergeNestedObjects=True,
            ),
            BulkUpdateUser(userId="u2", dataFields={}),
        ],
        create_new_fields=True,
    )
    await client.get_user_fields()
    await client.get_lists()
    [_ async for _ in client.iter_list_users(42, prefer_user_id=True)]
    await client.get_list_size(42)
    await client.get_templates(TemplateType.TRIGGERED, "Email", page=3, page_size=1000)
    await client.get_email_template(11, locale="en")
    await client.get_templates_by_client_template_id("lf-welcome")
    content = dict(
        name="Welcome",
        subject="Hi",
        preheaderText="pre",
        fromName="Acme",
        fromEmail="news@acme.test",
        replyToEmail="r@acme.test",
        html="<p/>",
        plainText="Hi",
        locale="en",
        isDefaultLocale=True,
        creatorUserId="a@acme.test",
        ccEmails=["c@x.test"],
        bccEmails=["b@x.test"],
        googleAnalyticsCampaignName="ga",
        linkParams=[LinkParam(key="utm_source", value="iterable")],
        dataFeedIds=[1, 2],
    )
    await client.upsert_email_template(
        EmailTemplateUpsert(
            clientTemplateId="lf-welcome",
            messageTypeId=5,
            dataFeedId=3,
            cacheDataFeed={},
            mergeDataFeedContext=True,
            **content,
        )
    )
    await client.update_email_template(
        EmailTemplateUpdate(
            templateId=11,
            clientTemplateId="lf-welcome",
            messageTypeId=5,
            dataFeedId=3,
            campaignDataFields={"k": "v"},
            cacheDataFeed={},
            mergeDataFeedContext={},
            **content,
        )
    )
    await client.get_webhooks()


async def test_every_request_matches_the_spec(make_client) -> None:
    captured: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return answer(request)

    async with make_client(handler, sandbox_base_url="http://sandbox.test") as client:
        await exercise(client)
    assert len(captured) == 11
    operations = {spec.find_operation(r.method, r.url.path)[1]["operationId"] for r in captured}
    assert operations == {
        "bulkUpdateUser",
        "getUserFields",
        "getLists",
        "getUsers",
        "getListCount",
        "getTemplates",
        "getEmailTemplate",
        "getByClientTemplateId",
        "upsertEmailTemplate",
        "updateEmailTemplate",
        "getWebhooks",
    }
    problems = {f"{r.method} {r.url.path}": spec.request_problems(r) for r in captured}
    assert {k: v for k, v in problems.items() if v} == {}


@pytest.mark.parametrize(("route", "body"), list(samples.BY_ROUTE.items()))
def test_canned_responses_match_the_spec(route, body) -> None:
    method, path = route
    request = httpx.Request(method, f"https://api.iterable.com{path}")
    assert spec.response_problems(request, 200, json.dumps(body).encode()) == []


def test_the_validator_is_not_vacuous() -> None:
    def post(path: str, body: object, params: dict | None = None) -> list[str]:
        request = httpx.Request(
            "POST", f"https://api.iterable.com{path}", params=params, json=body, headers={"Api-Key": "k"}
        )
        return spec.request_problems(request)

    assert post("/api/users/bulkUpdate", {"users": [{"email": 1}]})
    assert post("/api/users/bulkUpdate", {"createNewFields": True})  # users required
    assert post("/api/templates/email/update", {"subject": "no templateId"})
    assert post("/api/templates/email/upsert", {"clientTemplateId": "x", "linkParams": [{}]})
    assert post("/api/users/bulkUpdate", {"users": []}, params={"bogus": "1"})
    get = httpx.Request("GET", "https://api.iterable.com/api/templates?templateType=Nope")
    assert spec.request_problems(get)  # enum, and no Api-Key
    with pytest.raises(AssertionError, match="not an operation"):
        spec.find_operation("DELETE", "/api/users/bulkUpdate")
    bad = httpx.Request("GET", "https://api.iterable.com/api/lists")
    assert spec.response_problems(bad, 200, b'{"lists": [{"id": "x"}]}')
