"""Each typed method: the request it sends and how it reads the answer."""

from __future__ import annotations

import json

import httpx
import pytest

from liftstack_shared.iterable import (
    BulkUpdateUser,
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    IterableClient,
    IterableError,
    ListType,
    Region,
    TemplateType,
)
from liftstack_shared.settings import CommonSettings

from . import samples
from .conftest import KEY


class Capture:
    def __init__(self, routes: dict[tuple[str, str], object] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.routes = routes if routes is not None else samples.BY_ROUTE

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/us").removeprefix("/eu")
        body = self.routes[(request.method, path)]
        if isinstance(body, httpx.Response):
            return body
        return httpx.Response(200, json=body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.mark.parametrize(
    ("region", "sandbox_url", "expected"),
    [
        (Region.US, None, "https://api.iterable.com/api/lists"),
        (Region.EU, None, "https://api.eu.iterable.com/api/lists"),
        ("US", "http://127.0.0.1:8999/", "http://127.0.0.1:8999/us/api/lists"),
        ("EU", "http://127.0.0.1:8999", "http://127.0.0.1:8999/eu/api/lists"),
    ],
)
async def test_hosts_and_sandbox_prefix(make_client, region, sandbox_url, expected) -> None:
    capture = Capture()
    async with make_client(capture, region=region, sandbox_base_url=sandbox_url) as client:
        await client.get_lists()
    assert str(capture.last.url) == expected
    assert capture.last.headers["Api-Key"] == KEY


async def test_exact_base_url_wins(make_client) -> None:
    capture = Capture()
    async with make_client(
        capture, region="US", sandbox_base_url="http://ignored", base_url="http://127.0.0.1:8999/eu/"
    ) as client:
        await client.get_lists()
    assert str(capture.last.url) == "http://127.0.0.1:8999/eu/api/lists"


def test_from_settings() -> None:
    settings = CommonSettings(iterable_base_url="http://sandbox:9000", iterable_rate_headroom=0.5)
    client = IterableClient.from_settings(settings, KEY, Region.EU)
    assert client.base_url == "http://sandbox:9000/eu"
    assert client.rate_limits.headroom == 0.5  # type: ignore[attr-defined]  # the default limiter registry has headroom; the protocol doesn't


async def test_bulk_update_request_and_result(make_client) -> None:
    capture = Capture()
    users = [
        BulkUpdateUser(email="a@x.test", dataFields={"lf_assignments": {"cmp-1": "B"}}, mergeNestedObjects=True),
        BulkUpdateUser(userId="u2", dataFields={"plan": "pro"}, preferUserId=True),
    ]
    async with make_client(capture) as client:
        result = await client.bulk_update(users, create_new_fields=False)
    request = capture.last
    assert request.method == "POST"
    assert request.url.path == "/api/users/bulkUpdate"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "users": [
            {"email": "a@x.test", "dataFields": {"lf_assignments": {"cmp-1": "B"}}, "mergeNestedObjects": True},
            {"userId": "u2", "dataFields": {"plan": "pro"}, "preferUserId": True},
        ],
        "createNewFields": False,
    }
    assert result.succeeded == ["a@x.test", "u2"]
    assert result.createdFields == ["lf_assignments"]


async def test_bulk_update_empty_sends_nothing(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        result = await client.bulk_update([])
    assert capture.requests == [] and result.outcomes == []


async def test_get_user_fields(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        fields = await client.get_user_fields()
    assert capture.last.url.path == "/api/users/getFields"
    assert fields.fields["lf_assignments"] == "object"


async def test_get_lists(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        lists = await client.get_lists()
    assert [(x.id, x.listType) for x in lists] == [(1, ListType.STANDARD), (2, ListType.DYNAMIC)]
    assert lists[0].description == "weekly" and lists[1].description is None


async def test_unknown_list_type_and_extra_fields_are_kept(make_client) -> None:
    body = {"lists": [{"id": 9, "name": "n", "listType": "Future", "createdAt": 1, "new": 1}]}
    capture = Capture({("GET", "/api/lists"): body})
    async with make_client(capture) as client:
        (only,) = await client.get_lists()
    assert only.listType == "Future" and only.model_extra == {"new": 1}


@pytest.mark.parametrize("text", ["1234", " 1234\n", '"1234"'])
async def test_get_list_size(make_client, text: str) -> None:
    capture = Capture({("GET", "/api/lists/42/size"): httpx.Response(200, text=text)})
    async with make_client(capture) as client:
        assert await client.get_list_size(42) == 1234


async def test_get_list_size_garbage(make_client) -> None:
    capture = Capture({("GET", "/api/lists/42/size"): httpx.Response(200, text="<html>")})
    async with make_client(capture) as client:
        with pytest.raises(IterableError, match="expected a number"):
            await client.get_list_size(42)


async def test_get_templates_params(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        page = await client.get_templates(TemplateType.BLAST, page=2, page_size=50)
        await client.get_templates(message_medium=None)
    first, second = capture.requests
    assert dict(first.url.params) == {
        "templateType": "Blast",
        "messageMedium": "Email",
        "page": "2",
        "pageSize": "50",
    }
    assert dict(second.url.params) == {"page": "1", "pageSize": "100"}
    assert page.templates[0].templateId == 11 and page.templates[0].name == "Welcome"


async def test_get_templates_rejects_bad_page_size(make_client) -> None:
    async with make_client(Capture()) as client:
        with pytest.raises(ValueError):
            await client.get_templates(page_size=1001)


async def test_get_email_template(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        template = await client.get_email_template(11)
    assert dict(capture.last.url.params) == {"templateId": "11"}
    assert template.subject == "Hi {{firstName}}"
    assert template.linkParams and template.linkParams[0].key == "utm_source"


async def test_get_templates_by_client_template_id(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        entries = await client.get_templates_by_client_template_id("lf-welcome")
    assert dict(capture.last.url.params) == {"clientTemplateId": "lf-welcome"}
    assert [e.templateId for e in entries] == [11]
    assert entries[0].locales == ["en", "fr"]  # locale strings, as Iterable sends them


async def test_get_templates_by_client_template_id_none(make_client) -> None:
    routes = {
        ("GET", "/api/templates/getByClientTemplateId"): httpx.Response(
            404, json={"msg": "not found", "code": "NotFound", "params": None}
        )
    }
    async with make_client(Capture(routes)) as client:
        assert await client.get_templates_by_client_template_id("nope") == []


async def test_upsert_and_update(make_client) -> None:
    capture = Capture()
    async with make_client(capture) as client:
        upserted = await client.upsert_email_template(
            EmailTemplateUpsert(clientTemplateId="lf-welcome", name="Welcome", html="<p/>")
        )
        updated = await client.update_email_template(EmailTemplateUpdate(templateId=11, subject="New subject"))
    upsert_req, update_req = capture.requests
    assert json.loads(upsert_req.content) == {"clientTemplateId": "lf-welcome", "name": "Welcome", "html": "<p/>"}
    assert json.loads(update_req.content) == {"templateId": 11, "subject": "New subject"}
    assert upserted.ids_in_msg() == [11]
    assert updated.code == "Success"


def test_request_models_reject_unknown_fields() -> None:
    with pytest.raises(ValueError):
        EmailTemplateUpsert(clientTemplateId="x", subjcet="typo")  # type: ignore[call-arg]  # the misspelt field is the point


async def test_get_webhooks(make_client) -> None:
    async with make_client(Capture()) as client:
        (hook,) = await client.get_webhooks()
    assert hook.endpoint.startswith("https://") and hook.authType == "Basic"


async def test_unexpected_body_is_an_iterable_error(make_client) -> None:
    capture = Capture({("GET", "/api/lists"): {"nope": []}})
    async with make_client(capture) as client:
        with pytest.raises(IterableError, match="unexpected response body"):
            await client.get_lists()
