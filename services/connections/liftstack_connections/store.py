"""The `connections` collection: one document per connection, credentials encrypted.

No transactions (FerretDB has none), so every write is one document: uniqueness is
enforced by unique indexes, concurrent edits by conditional updates on `rev` fields.

Those conditional updates are compare-and-set only if no other update of the same
document overlaps them: FerretDB applies an update as an unisolated read-modify-write
of the whole document (liftstack_shared.mongo), so two overlapping updates can both
pass the `rev` check, and either can wipe out the other's fields (a test result
written back over a key that was just replaced, putting the old key back). So every
update and delete of a connection goes through this store's `SingleWriter`: one at a
time per connection in this process, which makes the `rev` / `credentials_rev` checks
exact. That holds within one process: on FerretDB, run the connections service as
ONE instance. (rotation.py, a separate process, checks its own work afterwards.)

Document fields:
    _id, workspace_id, name, name_key (casefolded; unique per workspace), platform,
    region, project_type ("email" | "userId" | "hybrid"; missing in documents written
    before it existed, read as "email"), event_types, status, last_test,
    api_key_enc, api_key_hint, credentials_rev (bumped when key or region changes, so
    a test that ran with the old ones can't mark the new ones Connected),
    webhook_secret_enc, webhook_secret_hint,
    previous_webhook_secret_enc, previous_webhook_secret_until (rotation grace),
    webhook_token_hash (sha256 of the URL token; unique), webhook_token_enc,
    created_at, updated_at, created_by, updated_by
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from liftstack_shared.mongo import SingleWriter, is_duplicate_key

Doc = dict[str, Any]
COLLECTION = "connections"
# Every field that holds a Fernet ciphertext (what key rotation re-encrypts).
ENCRYPTED_FIELDS = (
    "api_key_enc",
    "webhook_secret_enc",
    "previous_webhook_secret_enc",
    "webhook_token_enc",
)


class NameTaken(Exception):
    """Another connection in the workspace already has this name."""


class ConnectionStore:
    """One per process: its `SingleWriter` is what keeps a connection's updates apart."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._col: AsyncCollection = db[COLLECTION]
        self._writer = SingleWriter()

    async def ensure_indexes(self) -> None:
        await self._col.create_index(
            [("workspace_id", ASCENDING), ("name_key", ASCENDING)],
            unique=True,
            name="workspace_name_unique",
        )
        await self._col.create_index("webhook_token_hash", unique=True, name="webhook_token_unique")
        await self._col.create_index([("workspace_id", ASCENDING), ("created_at", ASCENDING)], name="workspace_created")

    async def insert(self, doc: Doc) -> None:
        try:
            await self._col.insert_one(doc)
        except (DuplicateKeyError, OperationFailure) as exc:
            if is_duplicate_key(exc) and await self._name_exists(doc["workspace_id"], doc["name_key"]):
                raise NameTaken from None
            raise

    async def get(self, workspace_id: str, connection_id: str) -> Doc | None:
        # Always filtered by workspace too: an id from another workspace is "not found".
        return await self._col.find_one({"_id": connection_id, "workspace_id": workspace_id})

    async def get_by_id(self, connection_id: str) -> Doc | None:
        """For internal (service) callers only."""
        return await self._col.find_one({"_id": connection_id})

    async def get_by_webhook_token_hash(self, token_hash: str) -> Doc | None:
        return await self._col.find_one({"webhook_token_hash": token_hash})

    async def list(self, workspace_id: str) -> list[Doc]:
        cursor = self._col.find({"workspace_id": workspace_id}).sort([("created_at", ASCENDING), ("_id", ASCENDING)])
        return [doc async for doc in cursor]

    async def update(
        self,
        workspace_id: str,
        connection_id: str,
        changes: dict[str, Any],
        expect: dict[str, Any] | None = None,
    ) -> Doc | None:
        """Apply a `$set`/`$inc`/`$unset` update if the document (still) matches
        `expect`; the updated document, or None if it is gone or no longer matches."""
        query = {"_id": connection_id, "workspace_id": workspace_id, **(expect or {})}
        try:
            return await self._writer.run(
                connection_id,
                lambda: self._col.find_one_and_update(query, changes, return_document=ReturnDocument.AFTER),
            )
        except (DuplicateKeyError, OperationFailure) as exc:
            if is_duplicate_key(exc):
                raise NameTaken from None
            raise

    async def delete(self, workspace_id: str, connection_id: str) -> Doc | None:
        return await self._writer.run(
            connection_id, lambda: self._col.find_one_and_delete({"_id": connection_id, "workspace_id": workspace_id})
        )

    async def all(self) -> AsyncIterator[Doc]:
        async for doc in self._col.find({}).sort("_id", ASCENDING):
            yield doc

    async def _name_exists(self, workspace_id: str, key: str) -> bool:
        return await self._col.count_documents({"workspace_id": workspace_id, "name_key": key}, limit=1) > 0
