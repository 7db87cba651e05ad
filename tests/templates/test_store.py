"""The `templates` collection on a real MongoDB-wire server (FerretDB locally)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pymongo import AsyncMongoClient

from liftstack_shared.handlebars import HandlebarsRenderer
from liftstack_shared.mongo import database
from liftstack_shared.settings import CommonSettings
from liftstack_templates.generate import TemplateSpec, Variant, client_template_id, generate
from liftstack_templates.store import COLLECTION, TemplateStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(settings: CommonSettings, mongo_client: AsyncMongoClient) -> TemplateStore:
    store = TemplateStore(database(mongo_client, settings))
    await store.ensure_indexes()
    return store


def spec(campaign: str, subject: str = "Hi") -> TemplateSpec:
    return TemplateSpec(
        campaign_key=campaign,
        control="A",
        variants=[
            Variant(key="A", subject=subject, html="<p>A</p>"),
            Variant(key="B", html="<p>B</p>", blocks={}),
        ],
    )


async def test_save_get_and_publication_fields(store: TemplateStore, renderer: HandlebarsRenderer) -> None:
    ws, campaign = f"ws-{uuid.uuid4().hex[:6]}", "cmp-1.x"
    s = spec(campaign)
    generated = await generate(s, renderer)
    cid = client_template_id(ws, campaign)
    record = await store.save_generated(ws, s, generated, cid, "user-1")
    assert record.spec == s and record.generated == generated
    assert record.client_template_id == cid and record.template_id is None

    await store.set_target(ws, campaign, "conn-1", 4711)
    await store.mark_published(ws, campaign, generated.content_hash)
    got = await store.get(ws, campaign)
    assert got is not None
    assert (got.connection_id, got.template_id, got.published_hash) == (
        "conn-1",
        4711,
        generated.content_hash,
    )
    assert got.published_at is not None

    # Re-generating keeps where it is published (and what it last received).
    s2 = spec(campaign, subject="Hello")
    generated2 = await generate(s2, renderer)
    await store.save_generated(ws, s2, generated2, cid, "user-2")
    got = await store.get(ws, campaign)
    assert got is not None
    assert got.generated == generated2 and got.template_id == 4711
    assert got.published_hash == generated.content_hash

    # A new target forgets what the old one received.
    await store.set_target(ws, campaign, "conn-2", 99)
    got = await store.get(ws, campaign)
    assert got is not None and got.published_hash is None and got.connection_id == "conn-2"

    assert await store.get(ws, "unknown") is None
    assert await store.get("other-ws", campaign) is None


async def test_one_document_per_workspace_and_campaign_even_when_racing(
    store: TemplateStore,
    renderer: HandlebarsRenderer,
    settings: CommonSettings,
    mongo_client: AsyncMongoClient,
) -> None:
    ws, campaign = f"ws-{uuid.uuid4().hex[:6]}", "race"
    s = spec(campaign)
    generated = await generate(s, renderer)
    cid = client_template_id(ws, campaign)
    # One store serialises its own writes of a document; separate stores (as separate
    # processes would) still race at the server.
    stores = [store] + [TemplateStore(database(mongo_client, settings)) for _ in range(7)]
    await asyncio.gather(*(st.save_generated(ws, s, generated, cid, f"user-{i}") for i, st in enumerate(stores)))
    col = database(mongo_client, settings)[COLLECTION]
    assert await col.count_documents({"workspace_id": ws, "campaign_key": campaign}) == 1
    # The unique index itself.
    with pytest.raises(Exception):  # noqa: B017 - DuplicateKeyError or FerretDB's failure
        await col.insert_one({"workspace_id": ws, "campaign_key": campaign})


async def test_overlapping_writes_of_one_campaign_all_land(store: TemplateStore, renderer: HandlebarsRenderer) -> None:
    """FerretDB rewrites whole documents without isolation: a re-generate overlapping a
    publish's bookkeeping must not wipe out the target it set, nor the reverse. The
    store writes one campaign's document one write at a time."""
    ws = f"ws-{uuid.uuid4().hex[:6]}"
    first, second = spec("overlap"), spec("overlap", subject="Changed")
    generated1, generated2 = await generate(first, renderer), await generate(second, renderer)
    for i in range(20):
        campaign = f"overlap-{i}"
        s1 = first.model_copy(update={"campaign_key": campaign})
        s2 = second.model_copy(update={"campaign_key": campaign})
        g1 = generated1.model_copy(update={"campaign_key": campaign})
        g2 = generated2.model_copy(update={"campaign_key": campaign})
        cid = client_template_id(ws, campaign)
        await store.save_generated(ws, s1, g1, cid, "user-1")
        await asyncio.gather(
            store.set_target(ws, campaign, "conn-1", 1000 + i),
            store.save_generated(ws, s2, g2, cid, "user-2"),
            store.mark_published(ws, campaign, g1.content_hash),
        )
        got = await store.get(ws, campaign)
        assert got is not None
        assert (got.connection_id, got.template_id) == ("conn-1", 1000 + i), i
        assert got.generated == g2 and got.spec == s2, i


async def test_publication_updates_need_a_saved_template(store: TemplateStore) -> None:
    with pytest.raises(LookupError):
        await store.mark_published("ws-none", "nothing", "hash")


async def test_block_names_with_dots_survive(store: TemplateStore, renderer: HandlebarsRenderer) -> None:
    ws = f"ws-{uuid.uuid4().hex[:6]}"
    s = TemplateSpec(
        campaign_key="c",
        control="A",
        layout="<!-- lf_block:a.b --><!-- lf_block:$x -->",
        variants=[Variant(key="A", subject="s", blocks={"a.b": "1"})],
    )
    # "$x" is no slot name (the marker pattern has no "$"): the layout has one slot.
    generated = await generate(s, renderer)
    await store.save_generated(ws, s, generated, client_template_id(ws, "c"), None)
    got = await store.get(ws, "c")
    assert got is not None and got.spec.variants[0].blocks == {"a.b": "1"}
