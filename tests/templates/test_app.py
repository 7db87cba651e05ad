"""The templates service over real HTTP: roles, errors, preview, and an end-to-end
publish to the Iterable sandbox followed by a send through it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from liftstack_shared.auth import Role
from liftstack_shared.credentials import IterableCredentials, StaticCredentials
from liftstack_shared.iterable import IterableClient, NoRateLimits
from liftstack_shared.settings import CommonSettings
from liftstack_templates.app import create_app
from liftstack_templates.settings import TemplatesSettings
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import user_token
from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.secrets import WatchedSecrets

pytestmark = pytest.mark.integration

CAMPAIGN = "spring-sale"


@dataclass
class Service:
    url: str
    settings: TemplatesSettings
    credentials: StaticCredentials
    workspace: str
    watched_keys: WatchedSecrets

    def connect(self, connection_id: str, api_key: str, workspace: str | None = None) -> None:
        self.watched_keys.add(api_key)
        self.credentials.add(workspace_id=workspace or self.workspace, connection_id=connection_id, api_key=api_key)

    def headers(self, role: Role = Role.ADMIN, workspace: str | None = None) -> dict[str, str]:
        token = user_token(self.settings, "user-1", workspace or self.workspace, role)
        return {"Authorization": f"Bearer {token}"}

    def path(self, action: str = "") -> str:
        return f"{self.url}/v1/workspaces/{self.workspace}/templates{action}"


@pytest.fixture
def service(settings: CommonSettings, sandbox: SandboxHandle, watched_keys: WatchedSecrets) -> Iterator[Service]:
    templates_settings = TemplatesSettings(**settings.model_dump())
    credentials = StaticCredentials()

    def clients(creds: IterableCredentials) -> IterableClient:
        return IterableClient(
            creds.api_key, creds.region, sandbox_base_url=sandbox.base_url, rate_limits=NoRateLimits()
        )

    app = create_app(templates_settings, credentials=credentials, iterable_clients=clients)
    with serve_asgi(app) as url:
        yield Service(url, templates_settings, credentials, f"ws-{uuid.uuid4().hex[:8]}", watched_keys)


def spec_json() -> dict[str, Any]:
    return {
        "campaign_key": CAMPAIGN,
        "control": "control",
        "variants": [
            {
                "key": "control",
                "subject": "Spring is here, {{firstName}}",
                "preheader": "New arrivals",
                "html": "<p>Hello {{firstName}}</p>\n<p>A</p>",
            },
            {
                "key": "urgency",
                "subject": "{{firstName}}, 48 hours left",
                "html": "<p>Hurry {{firstName}}!</p>\n{{#if vip}}<p>VIP</p>{{/if}}",
            },
            {"key": "discount-20", "preheader": "20% off", "html": "<p>20% & more</p>"},
        ],
    }


async def test_generate_publish_send_end_to_end(service: Service, sandbox: SandboxHandle) -> None:
    project = sandbox.create_project()
    key = sandbox.create_key(project)
    service.connect("conn-1", key)
    profiles = {
        "a@example.com": {"firstName": "Ann", "lf_assignments": {CAMPAIGN: "control"}},
        "b@example.com": {"firstName": "Bob", "vip": True, "lf_assignments": {CAMPAIGN: "urgency", "other": "x"}},
        "c@example.com": {"firstName": "Cid", "lf_assignments": {CAMPAIGN: "discount-20"}},
        "d@example.com": {"firstName": "Dee"},
        "e@example.com": {"firstName": "Eve", "lf_assignments": {"winter-sale": "urgency"}},
    }
    sandbox.put_users(project, [{"email": e, "dataFields": f} for e, f in profiles.items()], create_new_fields=True)
    list_id = sandbox.create_list(project, "spring", list(profiles))

    async with httpx.AsyncClient(headers=service.headers(Role.OWNER), timeout=30) as http:
        response = await http.post(service.path("/publish"), json={"connection_id": "conn-1", "template": spec_json()})
        assert response.status_code == 200, response.text
        published = response.json()
        assert published["status"] == "created"
        again = await http.post(service.path("/publish"), json={"connection_id": "conn-1", "template": spec_json()})
        assert again.json()["status"] == "unchanged"
        saved = await http.get(service.path(), params={"campaign_key": CAMPAIGN})
        assert saved.status_code == 200
        assert saved.json()["template_id"] == published["template_id"]

    await sandbox.send(
        project, templateId=published["template_id"], listId=list_id, campaignId=77, campaignKey=CAMPAIGN
    )
    got = {
        s["email"]: (s["status"], s["subject"], s["preheaderText"], s["html"])
        for s in sandbox.sends(project, campaign_id=77)
    }
    control = ("Spring is here, {0}", "New arrivals", "<p>Hello {0}</p>\n<p>A</p>")
    assert got == {
        "a@example.com": ("sent", *(p.format("Ann") for p in control)),
        "b@example.com": ("sent", "Bob, 48 hours left", "New arrivals", "<p>Hurry Bob!</p>\n<p>VIP</p>"),
        "c@example.com": ("sent", "Spring is here, Cid", "20% off", "<p>20% & more</p>"),
        "d@example.com": ("sent", *(p.format("Dee") for p in control)),
        "e@example.com": ("sent", *(p.format("Eve") for p in control)),
    }


async def test_preview_renders_every_variant_and_the_unassigned(service: Service) -> None:
    async with httpx.AsyncClient(headers=service.headers(Role.MEMBER), timeout=30) as http:
        response = await http.post(
            service.path("/preview"),
            json={
                "template": spec_json(),
                "profile": {"firstName": "Ann", "lf_assignments": {"other": "x"}},
            },
        )
    assert response.status_code == 200, response.text
    previews = {p["variant"]: p for p in response.json()["previews"]}
    assert list(previews) == ["control", "discount-20", "urgency", None]
    assert previews["urgency"]["subject"] == "Ann, 48 hours left"
    assert previews["discount-20"]["preheader"] == "20% off"
    assert previews[None]["html"] == previews["control"]["html"] == "<p>Hello Ann</p>\n<p>A</p>"
    assert all(p["error"] is None for p in previews.values())


async def test_preview_of_the_saved_template_and_send_failures(service: Service) -> None:
    spec = spec_json()
    spec["variants"][2]["html"] = '{{#ifContainsStr tags "x"}}T{{/ifContainsStr}}'
    async with httpx.AsyncClient(headers=service.headers(Role.ADMIN), timeout=30) as http:
        assert (await http.post(service.path("/generate"), json=spec)).status_code == 200
        response = await http.post(
            service.path("/preview"),
            json={
                "campaign_key": CAMPAIGN,
                "profile": {"firstName": "Ann"},
            },
        )
        missing = await http.post(service.path("/preview"), json={"campaign_key": "nope"})
    previews = {p["variant"]: p for p in response.json()["previews"]}
    # Iterable fails the send for this recipient: the preview says so.
    assert "missing" in previews["discount-20"]["error"]
    assert previews["control"]["error"] is None
    assert missing.status_code == 404


async def test_invalid_content_is_a_422_naming_the_variant(service: Service) -> None:
    spec = spec_json()
    spec["variants"][1]["html"] = "<p>{{#if vip}}VIP</p>"
    async with httpx.AsyncClient(headers=service.headers(), timeout=30) as http:
        response = await http.post(service.path("/generate"), json=spec)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_template"
    assert error["message"].startswith('variant "urgency": html: Parse error')
    assert error["problems"][0]["variant"] == "urgency"


async def test_roles_and_workspaces(service: Service) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        member = service.headers(Role.MEMBER)
        assert (await http.post(service.path("/generate"), json=spec_json(), headers=member)).status_code == 403
        assert (
            await http.post(
                service.path("/publish"), headers=member, json={"connection_id": "c", "template": spec_json()}
            )
        ).status_code == 403
        assert (await http.post(service.path("/generate"), json=spec_json())).status_code == 401
        other = service.headers(Role.OWNER, workspace="someone-else")
        assert (await http.post(service.path("/generate"), json=spec_json(), headers=other)).status_code == 404
        assert (
            await http.post(service.path("/generate"), json=spec_json(), headers=service.headers(Role.OWNER))
        ).status_code == 200


async def test_connection_of_another_workspace_is_not_found(service: Service, sandbox: SandboxHandle) -> None:
    project = sandbox.create_project()
    key = sandbox.create_key(project)
    service.connect("theirs", key, workspace="other-ws")
    async with httpx.AsyncClient(headers=service.headers(), timeout=30) as http:
        for connection_id in ("theirs", "unknown"):
            response = await http.post(
                service.path("/publish"), json={"connection_id": connection_id, "template": spec_json()}
            )
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "connection_not_found"
        bad_id = await http.post(
            service.path("/publish"), json={"connection_id": "../webhooks/x", "template": spec_json()}
        )
        assert bad_id.status_code == 422
    assert sandbox.templates(project) == []


async def test_read_only_key_says_so(service: Service, sandbox: SandboxHandle) -> None:
    project = sandbox.create_project()
    key = sandbox.create_key(project, type="read_only")
    service.connect("ro", key)
    async with httpx.AsyncClient(headers=service.headers(), timeout=30) as http:
        response = await http.post(service.path("/publish"), json={"connection_id": "ro", "template": spec_json()})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "iterable_auth"


async def test_health_and_openapi(service: Service) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        health = await http.get(f"{service.url}/healthz")
        openapi = (await http.get(f"{service.url}/openapi.json")).json()
    assert health.status_code == 200 and health.json()["checks"] == {
        "mongo": "ok",
        "handlebars": "ok",
    }
    paths = openapi["paths"]
    base = "/v1/workspaces/{workspace_id}/templates"
    assert {base, base + "/generate", base + "/publish", base + "/preview"} <= set(paths)
    assert "TemplateSpec" in openapi["components"]["schemas"]
