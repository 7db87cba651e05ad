"""Email templates: upsert by clientTemplateId, update by templateId, get, list."""

from __future__ import annotations

import re
import time

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.conftest import Api


def upsert(api: Api, **fields: object) -> list[int]:
    response = api.client.post("/api/templates/email/upsert", json=fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == "Success" and body["params"] is None
    # As at Iterable, the ids are only in the message.
    match = re.fullmatch(r"Upserted (\d+) templates with IDs: ([\d, ]+)", body["msg"])
    assert match, body["msg"]
    ids = [int(x) for x in match.group(2).split(", ")]
    assert len(ids) == int(match.group(1))
    return ids


def test_upsert_creates_then_updates_the_same_template(sandbox: SandboxHandle, api: Api) -> None:
    [created] = upsert(api, clientTemplateId="cmp-1", name="Spring", subject="Hi {{firstName}}", html="<p>A</p>")
    by_client = api.client.get("/api/templates/getByClientTemplateId", params={"clientTemplateId": "cmp-1"}).json()
    # locales: an array of locale strings, as Iterable's official client requires.
    assert by_client == {"templates": [{"templateId": created, "locales": ["en"]}]}
    [again] = upsert(api, clientTemplateId="cmp-1", html="<p>B</p>")
    assert again == created
    got = api.client.get("/api/templates/email/get", params={"templateId": created}).json()
    # Only the given fields changed.
    assert (got["name"], got["subject"], got["html"], got["clientTemplateId"]) == (
        "Spring",
        "Hi {{firstName}}",
        "<p>B</p>",
        "cmp-1",
    )
    assert got["metadata"]["templateId"] == created and got["metadata"]["name"] == "Spring"
    assert len(sandbox.templates(api.project)) == 1


def test_upsert_updates_every_match(sandbox: SandboxHandle, api: Api) -> None:
    first = sandbox.create_template(api.project, name="one", clientTemplateId="dup", subject="1")
    second = sandbox.create_template(api.project, name="two", clientTemplateId="dup", subject="2")
    other = sandbox.create_template(api.project, name="three", clientTemplateId="other", subject="3")
    assert upsert(api, clientTemplateId="dup", subject="same") == [first, second]
    assert [sandbox.template(api.project, t)["subject"] for t in (first, second, other)] == ["same", "same", "3"]
    found = api.client.get("/api/templates/getByClientTemplateId", params={"clientTemplateId": "dup"}).json()
    assert [t["templateId"] for t in found["templates"]] == [first, second]
    assert api.client.get("/api/templates/getByClientTemplateId", params={"clientTemplateId": "none"}).json() == {
        "templates": []
    }


def test_upsert_can_match_by_name(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.configure(api.project, template_upsert_match="name")
    tid = sandbox.create_template(api.project, name="Welcome", clientTemplateId="a")
    assert upsert(api, clientTemplateId="b", name="Welcome", subject="s") == [tid]
    assert sandbox.template(api.project, tid)["clientTemplateId"] == "b"


def test_update_by_template_id(sandbox: SandboxHandle, api: Api) -> None:
    tid = sandbox.create_template(
        api.project,
        name="T",
        subject="Old",
        preheaderText="pre",
        html="<b>x</b>",
        plainText="x",
        fromName="Shop",
        fromEmail="shop@example.com",
    )
    response = api.client.post(
        "/api/templates/email/update", json={"templateId": tid, "subject": "New", "html": "<i>y</i>"}
    )
    assert response.status_code == 200 and response.json()["code"] == "Success"
    got = sandbox.template(api.project, tid)
    assert (got["subject"], got["html"], got["preheaderText"], got["fromName"], got["fromEmail"]) == (
        "New",
        "<i>y</i>",
        "pre",
        "Shop",
        "shop@example.com",
    )
    updated = got["metadata"]["updatedAt"]
    assert updated >= got["metadata"]["createdAt"]
    response = api.client.post("/api/templates/email/update", json={"templateId": 424242, "subject": "x"})
    assert response.status_code == 400 and response.json()["code"] == "BadParams"


def test_validation_errors(sandbox: SandboxHandle, api: Api) -> None:
    response = api.client.post("/api/templates/email/upsert", json={"name": "no client id"})
    assert response.status_code == 400 and response.json()["code"] == "BadJsonBody"
    assert response.json()["params"] == {"obj.clientTemplateId": [{"msg": ["error.path.missing"], "args": []}]}
    response = api.client.post(
        "/api/templates/email/upsert", json={"clientTemplateId": "x", "subject": 5, "ccEmails": "a"}
    )
    assert response.status_code == 400 and set(response.json()["params"]) == {"obj.subject", "obj.ccEmails"}
    response = api.client.post(
        "/api/templates/email/upsert", json={"clientTemplateId": "x", "fromEmail": "not-an-email"}
    )
    assert response.status_code == 400 and response.json()["code"] == "BadParams"
    response = api.client.post("/api/templates/email/update", json={"subject": "x"})
    assert response.status_code == 400
    response = api.client.post("/api/templates/email/update", json={"templateId": "12", "subject": "x"})
    assert response.status_code == 400
    assert sandbox.templates(api.project) == []
    for params in ({}, {"templateId": "x"}, {"templateId": "999"}):
        response = api.client.get("/api/templates/email/get", params=params)
        assert response.status_code == 400 and response.json()["code"] == "BadParams", params
    assert api.client.get("/api/templates/getByClientTemplateId").status_code == 400


def test_get_unknown_locale_is_404(sandbox: SandboxHandle, api: Api) -> None:
    tid = sandbox.create_template(api.project, name="T")
    assert api.client.get("/api/templates/email/get", params={"templateId": tid, "locale": "en"}).status_code == 200
    response = api.client.get("/api/templates/email/get", params={"templateId": tid, "locale": "fr"})
    assert response.status_code == 404 and response.json()["code"] == "NotFound"


def test_list_templates_paging_and_sorting(sandbox: SandboxHandle, api: Api) -> None:
    ids = [sandbox.create_template(api.project, name=f"t{i:02d}") for i in range(25)]
    first = api.client.get("/api/templates").json()  # default page size 20
    assert [t["templateId"] for t in first["templates"]] == ids[:20]
    assert first["totalTemplatesCount"] == 25  # a number, as Iterable sends it
    sandbox.configure(api.project, templates_total_count=False)  # the spec's reading
    assert "totalTemplatesCount" not in api.client.get("/api/templates").json()
    assert "previousPageUrl" not in first
    assert first["nextPageUrl"].startswith(f"{sandbox.api_url(api.project)}/api/templates?")
    second = api.client.get(first["nextPageUrl"]).json()
    assert [t["templateId"] for t in second["templates"]] == ids[20:]
    assert "nextPageUrl" not in second and "page=1" in second["previousPageUrl"]
    page = api.client.get("/api/templates", params={"page": 2, "pageSize": 10, "sort": "-id"}).json()
    assert [t["templateId"] for t in page["templates"]] == list(reversed(ids))[10:20]
    by_name = api.client.get("/api/templates", params={"pageSize": 3, "sort": "-name"}).json()
    assert [t["name"] for t in by_name["templates"]] == ["t24", "t23", "t22"]
    assert api.client.get("/api/templates", params={"messageMedium": "Push"}).json()["templates"] == []
    assert (
        len(api.client.get("/api/templates", params={"templateType": "Base", "pageSize": 100}).json()["templates"])
        == 25
    )
    for params in (
        {"pageSize": 1001},
        {"page": 0},
        {"sort": "color"},
        {"templateType": "Nope"},
        {"startDateTime": "yesterday"},
    ):
        response = api.client.get("/api/templates", params=params)
        assert response.status_code == 400 and response.json()["code"] == "BadParams", params


def test_template_dates_are_epoch_ms_or_iso_by_config(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.create_template(api.project, name="t")
    [entry] = api.client.get("/api/templates").json()["templates"]
    assert isinstance(entry["createdAt"], int) and isinstance(entry["updatedAt"], int)
    sandbox.configure(api.project, template_dates="iso")  # the spec's reading
    iso = api.client.get("/api/templates").json()["templates"][0]["createdAt"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00", iso)


def test_webhooks_listing(sandbox: SandboxHandle, api: Api) -> None:
    assert api.client.get("/api/webhooks").json() == {"webhooks": []}
    hook = sandbox.add_webhook(api.project, "https://hooks.example.com/iterable", authType="OAuth2", token="s3cret")
    body = api.client.get("/api/webhooks").json()
    assert body == {
        "webhooks": [
            {
                "id": hook,
                "endpoint": "https://hooks.example.com/iterable",
                "authType": "OAuth2",
                "enabled": True,
                "blastSendEnabled": True,
                "triggeredSendEnabled": True,
                "channelIds": [],
                "messageTypeIds": [],
            }
        ]
    }
    assert "s3cret" not in api.client.get("/api/webhooks").text


def test_optional_read_after_write_delay(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.configure(api.project, template_read_delay_ms=400)
    [created] = upsert(api, clientTemplateId="slow", subject="s")
    got = api.client.get("/api/templates/email/get", params={"templateId": created})
    assert got.status_code == 404 and got.json()["code"] == "NotFound"
    update = api.client.post("/api/templates/email/update", json={"templateId": created, "subject": "t"})
    assert update.status_code == 400
    time.sleep(0.45)
    assert api.client.get("/api/templates/email/get", params={"templateId": created}).status_code == 200


def test_unknown_client_template_id_answers(sandbox: SandboxHandle, api: Api) -> None:
    path, params = "/api/templates/getByClientTemplateId", {"clientTemplateId": "nope"}
    assert api.client.get(path, params=params).json() == {"templates": []}
    sandbox.configure(api.project, unknown_client_template_id="400")
    response = api.client.get(path, params=params)
    assert response.status_code == 400 and "No templates found" in response.json()["msg"]
    sandbox.configure(api.project, unknown_client_template_id="404")
    response = api.client.get(path, params=params)
    assert response.status_code == 404 and response.json()["code"] == "NotFound"
