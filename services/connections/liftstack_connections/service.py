"""What the API does, independent of HTTP: create, edit, test and delete connections,
and the decrypted internal view other services fetch.

Secrets are decrypted only where they are used (the probe, the internal view, a
comparison) and never logged or returned to users.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from liftstack_connections.crypto import CredentialCipher
from liftstack_connections.iterable_probe import IterableProbe, ProbeTarget
from liftstack_connections.models import (
    Connection,
    ConnectionCreate,
    ConnectionStatus,
    ConnectionSummary,
    ConnectionUpdate,
    Platform,
    TestResult,
    hint,
    name_key,
)
from liftstack_connections.publisher import EventPublisher
from liftstack_connections.settings import ConnectionsSettings
from liftstack_connections.store import ConnectionStore, Doc, NameTaken
from liftstack_shared.auth import Principal
from liftstack_shared.connections_client import ProjectType, Region
from liftstack_shared.errors import ApiError
from liftstack_shared.messages.connections import ConnectionChanged
from liftstack_shared.retry import backoff

log = logging.getLogger("liftstack.connections")
# An edit whose `rev` compare-and-set lost to another edit is re-read and recomputed
# this many times, briefly backing off, before answering 409.
_UPDATE_ATTEMPTS = 5
NOT_FOUND = "Connection not found."


def now() -> datetime:
    # Millisecond precision: what BSON stores, so values read back compare equal.
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def project_type(doc: Doc) -> ProjectType:
    """Connections saved before the field existed are email-based (what every
    connection was treated as then): read a missing value as "email"."""
    value: ProjectType = doc.get("project_type") or "email"
    return value


def not_found() -> ApiError:
    return ApiError(404, "not_found", NOT_FOUND)


class _EditedConcurrently(Exception):
    """Another edit of the connection was saved between our read and our write."""


def name_taken(name: str) -> ApiError:
    return ApiError(
        422, "name_taken", f"name: a connection named {name!r} already exists in this workspace.", field="name"
    )


class ConnectionService:
    def __init__(
        self,
        settings: ConnectionsSettings,
        store: ConnectionStore,
        cipher: CredentialCipher,
        events: EventPublisher,
        probe: IterableProbe,
    ) -> None:
        self._settings = settings
        self._store = store
        self._cipher = cipher
        self._events = events
        self._probe = probe

    # --- user-facing -----------------------------------------------------------------

    async def create(self, who: Principal, body: ConnectionCreate) -> Connection:
        ws = who.workspace_id
        at = now()
        token = secrets.token_urlsafe(32)
        api_key = body.api_key.get_secret_value()
        doc: Doc = {
            # Prefixed and shorter than 32 hex characters, so the log redaction
            # (which scrubs API-key-shaped hex runs) leaves connection ids readable.
            "_id": f"conn_{uuid.uuid4().hex[:24]}",
            "workspace_id": ws,
            "name": body.name,
            "name_key": name_key(body.name),
            "platform": str(body.platform),
            "region": str(body.region),
            "project_type": body.project_type,
            "event_types": [str(e) for e in body.event_types],
            "status": str(ConnectionStatus.ACTIVE),
            "last_test": None,
            "api_key_enc": self._cipher.encrypt(ws, api_key),
            "api_key_hint": hint(api_key),
            "credentials_rev": 1,
            "rev": 1,
            "webhook_token_hash": token_hash(token),
            "webhook_token_enc": self._cipher.encrypt(ws, token),
            "webhook_secret_enc": None,
            "webhook_secret_hint": None,
            "previous_webhook_secret_enc": None,
            "previous_webhook_secret_until": None,
            "webhook_header": body.webhook_header,
            "created_at": at,
            "updated_at": at,
            "created_by": who.user_id,
            "updated_by": who.user_id,
        }
        if body.webhook_secret is not None:
            secret = body.webhook_secret.get_secret_value()
            doc["webhook_secret_enc"] = self._cipher.encrypt(ws, secret)
            doc["webhook_secret_hint"] = hint(secret)
        try:
            await self._store.insert(doc)
        except NameTaken:
            raise name_taken(body.name) from None
        log.info("connection %s created in workspace %s by %s", doc["_id"], ws, who.user_id)
        await self._publish(doc, "created")
        return self.card(doc)

    async def list(self, who: Principal) -> list[Connection] | list[ConnectionSummary]:
        docs = await self._store.list(who.workspace_id)
        if who.role.manages:
            return [self.card(d) for d in docs]
        return [self.summary(d) for d in docs]

    async def get(self, who: Principal, connection_id: str) -> Connection:
        return self.card(await self._load(who.workspace_id, connection_id))

    async def update(self, who: Principal, connection_id: str, body: ConnectionUpdate) -> Connection:
        # Optimistic concurrency on `rev`: re-read and recompute if someone else wrote.
        try:
            async for attempt in backoff(
                attempts=_UPDATE_ATTEMPTS, first_s=0.02, max_s=0.2, retry_on=(_EditedConcurrently,)
            ):
                with attempt:
                    return await self._update_once(who, connection_id, body)
        except _EditedConcurrently:
            pass
        raise ApiError(409, "conflict", "The connection is being edited concurrently; try again.")

    async def _update_once(self, who: Principal, connection_id: str, body: ConnectionUpdate) -> Connection:
        ws = who.workspace_id
        doc = await self._load(ws, connection_id)
        changes = self._changes(doc, body)
        if not changes["$set"]:
            return self.card(doc)
        changes["$set"] |= {"updated_at": now(), "updated_by": who.user_id}
        changes.setdefault("$inc", {})["rev"] = 1
        try:
            updated = await self._store.update(ws, connection_id, changes, expect={"rev": doc["rev"]})
        except NameTaken:
            raise name_taken(body.name or "") from None
        if updated is None:
            raise _EditedConcurrently
        log.info(
            "connection %s updated (%s) by %s", connection_id, ", ".join(sorted(body.model_fields_set)), who.user_id
        )
        await self._publish(updated, "updated")
        return self.card(updated)

    async def delete(self, who: Principal, connection_id: str) -> None:
        doc = await self._store.delete(who.workspace_id, connection_id)
        if doc is None:
            raise not_found()
        log.info("connection %s deleted by %s", connection_id, who.user_id)
        await self._publish(doc, "deleted")

    async def test(self, who: Principal, connection_id: str) -> TestResult:
        doc = await self._load(who.workspace_id, connection_id)
        region = Region(doc["region"])
        result = await self._probe.run(
            ProbeTarget(
                api_key=self._cipher.decrypt(doc["workspace_id"], doc["api_key_enc"]),
                region=region,
                webhook_url=self.webhook_url(doc),
            )
        )
        outcome = TestResult(
            ok=result.ok,
            status=ConnectionStatus.CONNECTED if result.ok else ConnectionStatus.ERROR,
            message=result.message,
            checks=result.checks,
            region=region,
            suggested_region=result.suggested_region,
            tested_at=now(),
        )
        # Only if the key and region are still the ones tested.
        updated = await self._store.update(
            who.workspace_id,
            connection_id,
            {"$set": {"status": str(outcome.status), "last_test": outcome.model_dump(mode="json")}},
            expect={"credentials_rev": doc["credentials_rev"]},
        )
        if updated is None:
            await self._load(who.workspace_id, connection_id)  # 404 if deleted meanwhile
            raise ApiError(409, "changed_during_test", "The key or region changed while the test ran; test again.")
        log.info("connection %s tested by %s: %s", connection_id, who.user_id, outcome.status)
        await self._publish(updated, "tested")
        return outcome

    # --- internal (service-token) view ---------------------------------------------------

    async def internal_by_id(self, connection_id: str) -> dict[str, Any]:
        doc = await self._store.get_by_id(connection_id)
        if doc is None:
            raise not_found()
        return self.internal(doc)

    async def internal_by_webhook_token(self, token: str) -> dict[str, Any]:
        doc = await self._store.get_by_webhook_token_hash(token_hash(token))
        if doc is None:
            raise not_found()
        return self.internal(doc)

    def internal(self, doc: Doc) -> dict[str, Any]:
        """`InternalConnection` as JSON with the secrets revealed (pydantic would mask
        SecretStr on dump): only ever sent to an authenticated service."""
        ws = doc["workspace_id"]
        return {
            "connection_id": doc["_id"],
            "workspace_id": ws,
            "name": doc["name"],
            "platform": doc["platform"],
            "region": doc["region"],
            "project_type": project_type(doc),
            "api_key": self._cipher.decrypt(ws, doc["api_key_enc"]),
            "webhook_secrets": self.webhook_secrets(doc),
            "webhook_header": doc.get("webhook_header"),
            "event_types": doc["event_types"],
            "status": doc["status"],
        }

    def webhook_secrets(self, doc: Doc) -> builtins.list[str]:  # `list` here is the method above
        ws = doc["workspace_id"]
        found: list[str] = []
        if doc.get("webhook_secret_enc"):
            found.append(self._cipher.decrypt(ws, doc["webhook_secret_enc"]))
        until = doc.get("previous_webhook_secret_until")
        if doc.get("previous_webhook_secret_enc") and until is not None and until > now():
            found.append(self._cipher.decrypt(ws, doc["previous_webhook_secret_enc"]))
        return found

    # --- views -------------------------------------------------------------------------

    def webhook_url(self, doc: Doc) -> str:
        token = self._cipher.decrypt(doc["workspace_id"], doc["webhook_token_enc"])
        return f"{self._settings.ingest_public_url.rstrip('/')}/webhooks/iterable/{token}"

    def summary(self, doc: Doc) -> ConnectionSummary:
        return ConnectionSummary(
            id=doc["_id"], name=doc["name"], platform=Platform(doc["platform"]), status=ConnectionStatus(doc["status"])
        )

    def card(self, doc: Doc) -> Connection:
        last = doc.get("last_test")
        return Connection(
            **self.summary(doc).model_dump(),
            region=Region(doc["region"]),
            project_type=project_type(doc),
            api_key_hint=doc["api_key_hint"],
            webhook_secret_hint=doc.get("webhook_secret_hint"),
            webhook_header=doc.get("webhook_header"),
            webhook_url=self.webhook_url(doc),
            event_types=doc["event_types"],
            last_test=TestResult.model_validate(last) if last else None,
            created_at=doc["created_at"],
            updated_at=doc["updated_at"],
        )

    # --- helpers ---------------------------------------------------------------------

    async def _load(self, workspace_id: str, connection_id: str) -> Doc:
        doc = await self._store.get(workspace_id, connection_id)
        if doc is None:
            raise not_found()
        return doc

    def _changes(self, doc: Doc, body: ConnectionUpdate) -> dict[str, Any]:
        """The Mongo update for `body` against `doc`; `$set` empty if nothing changes."""
        ws = doc["workspace_id"]
        given = body.model_fields_set
        set_: dict[str, Any] = {}
        credentials_changed = False
        if "name" in given and body.name is not None and body.name != doc["name"]:
            set_ |= {"name": body.name, "name_key": name_key(body.name)}
        if "api_key" in given and body.api_key is not None:
            key = body.api_key.get_secret_value()
            if key != self._cipher.decrypt(ws, doc["api_key_enc"]):
                set_ |= {"api_key_enc": self._cipher.encrypt(ws, key), "api_key_hint": hint(key)}
                credentials_changed = True
        if "region" in given and body.region is not None and str(body.region) != doc["region"]:
            set_["region"] = str(body.region)
            credentials_changed = True
        if "project_type" in given and body.project_type is not None and body.project_type != project_type(doc):
            # Not a credential: the last test still holds for the key and region.
            set_["project_type"] = body.project_type
        if "event_types" in given and body.event_types is not None:
            types = [str(e) for e in body.event_types]
            if types != doc["event_types"]:
                set_["event_types"] = types
        if "webhook_secret" in given:
            set_ |= self._secret_changes(doc, body)
        if "webhook_header" in given and body.webhook_header != doc.get("webhook_header"):
            set_["webhook_header"] = body.webhook_header
        update: dict[str, Any] = {"$set": set_}
        if credentials_changed:
            # The last test said nothing about these credentials: back to Active.
            set_ |= {"status": str(ConnectionStatus.ACTIVE), "last_test": None}
            update["$inc"] = {"credentials_rev": 1}
        return update

    def _secret_changes(self, doc: Doc, body: ConnectionUpdate) -> dict[str, Any]:
        ws = doc["workspace_id"]
        current_enc = doc.get("webhook_secret_enc")
        if body.webhook_secret is None:
            if current_enc is None and doc.get("previous_webhook_secret_enc") is None:
                return {}
            # Removing the secret is deliberate: no grace period for the old one.
            return {
                "webhook_secret_enc": None,
                "webhook_secret_hint": None,
                "previous_webhook_secret_enc": None,
                "previous_webhook_secret_until": None,
            }
        new = body.webhook_secret.get_secret_value()
        if current_enc is not None and self._cipher.decrypt(ws, current_enc) == new:
            return {}
        changes: dict[str, Any] = {
            "webhook_secret_enc": self._cipher.encrypt(ws, new),
            "webhook_secret_hint": hint(new),
            "previous_webhook_secret_enc": None,
            "previous_webhook_secret_until": None,
        }
        grace = self._settings.webhook_secret_grace_s
        if current_enc is not None and grace > 0:
            # Keep the replaced secret valid while the customer updates Iterable.
            changes["previous_webhook_secret_enc"] = current_enc
            changes["previous_webhook_secret_until"] = now() + timedelta(seconds=grace)
        return changes

    async def _publish(self, doc: Doc, change: str) -> None:
        await self._events.publish(
            ConnectionChanged(
                connection_id=doc["_id"],
                workspace_id=doc["workspace_id"],
                change=change,
                status=doc["status"],
            )
        )
