"""Publishing to the Iterable sandbox: upsert once, then update by templateId only;
no write for unchanged content; other templates are never touched."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from liftstack_shared.credentials import IterableCredentials
from liftstack_shared.handlebars import HandlebarsRenderer
from liftstack_shared.iterable import IterableAuthError, IterableClient, NoRateLimits, Region
from liftstack_shared.mongo import database
from liftstack_shared.settings import CommonSettings
from liftstack_templates.generate import TemplateSpec, Variant, client_template_id, generate
from liftstack_templates.models import PublishStatus, TemplateRecord
from liftstack_templates.publish import Publisher
from liftstack_templates.store import TemplateStore
from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.secrets import WatchedSecrets

pytestmark = pytest.mark.integration


@dataclass
class Calls:
    """Every request the Iterable client sent, as "METHOD /api/path"."""

    seen: list[str] = field(default_factory=list)

    async def hook(self, request: httpx.Request) -> None:
        self.seen.append(f"{request.method} {request.url.path.split('/api/', 1)[1]}")

    def take(self) -> list[str]:
        out, self.seen = self.seen, []
        return out


@dataclass
class World:
    sandbox: SandboxHandle
    store: TemplateStore
    renderer: HandlebarsRenderer
    publisher: Publisher
    calls: Calls
    workspace: str
    watched_keys: WatchedSecrets

    def connect(self, region: str = "US", key_type: str = "server_side", **config: object) -> IterableCredentials:
        project = self.sandbox.create_project(region=region, **config)
        key = self.sandbox.create_key(project, type=key_type)
        self.watched_keys.add(key)
        return IterableCredentials(
            connection_id=f"conn-{project.id}",
            workspace_id=self.workspace,
            api_key=SecretStr(key),
            region=Region(region),
        )

    @staticmethod
    def project_id(creds: IterableCredentials) -> int:
        return int(creds.connection_id.removeprefix("conn-"))

    async def save(self, spec: TemplateSpec) -> TemplateRecord:
        generated = await generate(spec, self.renderer)
        return await self.store.save_generated(
            self.workspace,
            spec,
            generated,
            client_template_id(self.workspace, spec.campaign_key),
            "user-1",
        )


@pytest.fixture
async def world(
    sandbox: SandboxHandle,
    settings: CommonSettings,
    mongo_client: AsyncMongoClient,
    renderer: HandlebarsRenderer,
    watched_keys: WatchedSecrets,
) -> World:
    store = TemplateStore(database(mongo_client, settings))
    await store.ensure_indexes()
    calls = Calls()

    def clients(creds: IterableCredentials) -> IterableClient:
        return IterableClient(
            creds.api_key,
            creds.region,
            sandbox_base_url=sandbox.base_url,
            rate_limits=NoRateLimits(),
            event_hooks={"request": [calls.hook]},
        )

    async def no_sleep(_: float) -> None:
        return None

    return World(
        sandbox,
        store,
        renderer,
        Publisher(store, clients, sleep=no_sleep),
        calls,
        workspace=f"ws-{uuid.uuid4().hex[:8]}",
        watched_keys=watched_keys,
    )


def spec(campaign: str = "cmp-1", subject_b: str = "B subject") -> TemplateSpec:
    return TemplateSpec(
        campaign_key=campaign,
        control="A",
        variants=[
            Variant(key="A", subject="A subject", preheader="pre", html="<p>A {{firstName}}</p>"),
            Variant(key="B", subject=subject_b, html="<p>B {{firstName}}</p>"),
        ],
    )


async def test_upsert_once_then_update_by_id_and_no_write_when_unchanged(world: World) -> None:
    creds = world.connect()
    project = world.project_id(creds)
    record = await world.save(spec())

    first = await world.publisher.publish(record, creds)
    assert first.status == PublishStatus.CREATED
    assert world.calls.take() == [
        "GET templates/getByClientTemplateId",
        "POST templates/email/upsert",
        "GET templates/getByClientTemplateId",
        "POST templates/email/update",
    ]
    [template] = world.sandbox.templates(project)
    assert template["templateId"] == first.template_id
    assert template["clientTemplateId"] == record.client_template_id
    assert (template["name"], template["subject"], template["preheaderText"], template["html"]) == (
        record.generated.name,
        record.generated.subject,
        record.generated.preheader,
        record.generated.html,
    )
    stored = await world.store.get(world.workspace, "cmp-1")
    assert stored is not None
    assert (stored.template_id, stored.published_hash) == (first.template_id, first.content_hash)

    # Same content again: not a single request.
    requests_before = world.sandbox.stats(project)
    again = await world.publisher.publish(await world.save(spec()), creds)
    assert again.status == PublishStatus.UNCHANGED and again.template_id == first.template_id
    assert world.calls.take() == []
    assert world.sandbox.stats(project) == requests_before

    # Changed content: one update, addressed by templateId.
    changed = await world.publisher.publish(await world.save(spec(subject_b="New B")), creds)
    assert changed.status == PublishStatus.UPDATED and changed.template_id == first.template_id
    assert world.calls.take() == ["POST templates/email/update"]
    [template] = world.sandbox.templates(project)
    assert "New B" in template["subject"]

    # `force` writes even when unchanged.
    forced = await world.publisher.publish(await world.save(spec(subject_b="New B")), creds, force=True)
    assert forced.status == PublishStatus.UPDATED
    assert world.calls.take() == ["POST templates/email/update"]


@pytest.mark.parametrize("upsert_match", ["clientTemplateId", "name"])
async def test_other_templates_are_never_touched(world: World, upsert_match: str) -> None:
    """Even if Iterable's upsert matched by name (its spec says both), and even if the
    customer has a template with exactly the name we give ours."""
    creds = world.connect(template_upsert_match=upsert_match)
    project = world.project_id(creds)
    record = await world.save(spec())
    bystanders = [
        world.sandbox.create_template(
            project,
            name=record.generated.name,
            subject="theirs 1",
            html="<p>theirs</p>",
            clientTemplateId="their-own-id",
        ),
        world.sandbox.create_template(
            project, name=record.generated.name + " (copy)", subject="theirs 2", html="<p>theirs 2</p>"
        ),
        world.sandbox.create_template(project, name=record.client_template_id + "-2", subject="theirs 3"),
    ]
    before = {t: world.sandbox.template(project, t) for t in bystanders}

    first = await world.publisher.publish(record, creds)
    await world.publisher.publish(await world.save(spec(subject_b="changed")), creds)

    assert first.template_id not in bystanders
    assert {t: world.sandbox.template(project, t) for t in bystanders} == before
    assert len(world.sandbox.templates(project)) == len(bystanders) + 1
    ours = world.sandbox.template(project, first.template_id)
    assert ours is not None and "changed" in ours["subject"]


async def test_lost_mapping_adopts_the_existing_template(world: World) -> None:
    creds = world.connect()
    project = world.project_id(creds)
    first = await world.publisher.publish(await world.save(spec()), creds)
    # As if the service had stopped right after creating it, before remembering it.
    col = world.store._col  # simulating a crash between two writes
    await col.update_one(
        {"workspace_id": world.workspace, "campaign_key": "cmp-1"},
        {"$set": {"template_id": None, "connection_id": None}},
    )
    world.calls.take()

    again = await world.publisher.publish(await world.save(spec(subject_b="later")), creds)
    assert again.status == PublishStatus.UPDATED and again.template_id == first.template_id
    assert world.calls.take() == [
        "GET templates/getByClientTemplateId",
        "POST templates/email/update",
    ]
    assert len(world.sandbox.templates(project)) == 1


async def test_template_deleted_in_iterable_is_created_again(world: World) -> None:
    creds = world.connect()
    project = world.sandbox.project(world.project_id(creds))
    first = await world.publisher.publish(await world.save(spec()), creds)
    with world.sandbox.state.lock:
        del project.templates[first.template_id]

    again = await world.publisher.publish(await world.save(spec(subject_b="x")), creds)
    assert again.status == PublishStatus.CREATED and again.template_id != first.template_id
    assert [t["templateId"] for t in world.sandbox.templates(project)] == [again.template_id]


async def test_another_connection_gets_its_own_template(world: World) -> None:
    us, eu = world.connect("US"), world.connect("EU")
    record = await world.save(spec())
    one = await world.publisher.publish(record, us)
    two = await world.publisher.publish(await world.save(spec()), eu)
    assert two.status == PublishStatus.CREATED
    assert len(world.sandbox.templates(world.project_id(us))) == 1
    assert len(world.sandbox.templates(world.project_id(eu))) == 1
    assert one.client_template_id == two.client_template_id


async def test_concurrent_first_publishes_create_one_template(world: World) -> None:
    creds = world.connect()
    record = await world.save(spec())
    results = await asyncio.gather(*(world.publisher.publish(record, creds) for _ in range(5)))
    assert len({r.template_id for r in results}) == 1
    assert sorted(r.status for r in results) == ["created"] + ["unchanged"] * 4
    assert len(world.sandbox.templates(world.project_id(creds))) == 1


async def test_read_only_key_is_an_auth_error(world: World) -> None:
    creds = world.connect(key_type="read_only")
    with pytest.raises(IterableAuthError):
        await world.publisher.publish(await world.save(spec()), creds)
    assert world.sandbox.templates(world.project_id(creds)) == []


async def test_first_publish_copes_with_eventual_consistency(world: World) -> None:
    """Iterable applies writes eventually: right after the upsert the new template
    answers email/get with 404 (and update as unknown) for a while. Publishing retries
    (bounded) instead of failing; the sandbox's template_read_delay_ms plays that."""
    creds = world.connect(template_read_delay_ms=1200)
    project = world.project_id(creds)
    # Real sleeps: the sandbox's delay is wall-clock time.
    publisher = Publisher(world.store, world.publisher._clients)
    record = await world.save(spec())
    started = asyncio.get_running_loop().time()
    result = await publisher.publish(record, creds)
    took = asyncio.get_running_loop().time() - started
    assert result.status == PublishStatus.CREATED
    seen = world.calls.take()
    assert seen[:3] == [
        "GET templates/getByClientTemplateId",
        "POST templates/email/upsert",
        "GET templates/getByClientTemplateId",
    ]
    # Update refused while the template was not visible, checked with get (404)...
    assert seen.count("POST templates/email/update") >= 2 and "GET templates/email/get" in seen
    assert world.sandbox.stats(project)["templates/email/get"][404] >= 1
    # ...then done, well within the bound.
    assert 1.0 <= took < 8.0
    [template] = world.sandbox.templates(project)
    assert template["templateId"] == result.template_id
    assert template["html"] == record.generated.html
