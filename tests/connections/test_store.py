"""The `connections` collection on the real MongoDB-wire server. FerretDB applies
overlapping updates of one document without isolation, so the `rev` and
`credentials_rev` compare-and-sets hold only because the store writes one connection's
document one update at a time (in this process)."""

from __future__ import annotations

import asyncio
import uuid

from pymongo import AsyncMongoClient

from liftstack_connections.store import ConnectionStore
from liftstack_shared.mongo import database
from liftstack_shared.settings import CommonSettings

ROUNDS = 20


async def new_connection(store: ConnectionStore, ws: str) -> str:
    cid = uuid.uuid4().hex
    await store.insert(
        {
            "_id": cid,
            "workspace_id": ws,
            "name": cid,
            "name_key": cid,
            "webhook_token_hash": uuid.uuid4().hex,
            "rev": 1,
            "credentials_rev": 1,
            "api_key_enc": "old",
            "status": "active",
            "last_test": None,
        }
    )
    return cid


async def test_one_compare_and_set_wins_among_overlapping_edits(
    settings: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    store = ConnectionStore(database(mongo_client, settings))
    await store.ensure_indexes()
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    for _ in range(ROUNDS):
        cid = await new_connection(store, ws)
        results = await asyncio.gather(
            *(
                store.update(
                    ws,
                    cid,
                    {"$set": {"name": f"edit-{i}", "name_key": f"{cid}-{i}"}, "$inc": {"rev": 1}},
                    expect={"rev": 1},
                )
                for i in range(8)
            )
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        doc = await store.get(ws, cid)
        assert doc is not None and doc["rev"] == 2 and doc["name"] == winners[0]["name"]


async def test_a_test_result_overlapping_a_key_change_never_puts_the_old_key_back(
    settings: CommonSettings, mongo_client: AsyncMongoClient
) -> None:
    store = ConnectionStore(database(mongo_client, settings))
    ws = f"ws-{uuid.uuid4().hex[:8]}"
    for _ in range(ROUNDS):
        cid = await new_connection(store, ws)
        replaced, tested = await asyncio.gather(
            # An edit replacing the key (ConnectionService.update)...
            store.update(
                ws,
                cid,
                {"$set": {"api_key_enc": "new", "status": "active"}, "$inc": {"rev": 1, "credentials_rev": 1}},
                expect={"rev": 1},
            ),
            # ...and a test of the old key finishing at the same moment (.test).
            store.update(
                ws, cid, {"$set": {"status": "connected", "last_test": {"ok": True}}}, expect={"credentials_rev": 1}
            ),
        )
        doc = await store.get(ws, cid)
        assert replaced is not None and doc is not None
        assert doc["api_key_enc"] == "new" and doc["credentials_rev"] == 2
        # Either the test landed first (and the key change reset the status), or it
        # came second and found the credentials changed: never "connected" for the new key.
        assert doc["status"] == "active"
