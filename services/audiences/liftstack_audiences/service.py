"""The audiences service's use cases, independent of HTTP: list a connection's
audiences, one audience's size, start a sync, read a sync, retry a sync.

Failures with a clear explanation (Iterable, credentials, Kafka) become their API
errors (failures.py); a key Iterable rejected is forgotten, so a rotated key is used
at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from liftstack_audiences.audiences import as_audience, audience_type, audiences_of, pick_audience
from liftstack_audiences.failures import KNOWN_FAILURES, to_api_error
from liftstack_audiences.identifiers import PROJECT_TYPE_NAMES, ProjectIdentity
from liftstack_audiences.models import Audience, AudienceSize, SyncRecord, SyncRequest
from liftstack_audiences.runner import ClientFactory, SyncRunner
from liftstack_audiences.settings import AudiencesSettings
from liftstack_audiences.store import SizeCache, SyncStore, is_fresh, now
from liftstack_shared.credentials import CredentialsSource, IterableCredentials
from liftstack_shared.errors import ApiError
from liftstack_shared.iterable import IterableAuthError, IterableRateLimited


def sync_identity(request: SyncRequest, key: IterableCredentials) -> ProjectIdentity:
    """The project's type rules: the connection's, which an explicit `identity` may
    repeat but not contradict (Iterable can't tell us which is right, and the wrong
    one misreads every member whose userId contains "@")."""
    if request.identity is not None and request.identity != key.project_type:
        raise ApiError(
            400,
            "identity_mismatch",
            f"identity: this connection's Iterable project is {key.project_type!r}"
            f" ({PROJECT_TYPE_NAMES[key.project_type]}), not {request.identity!r}. Leave"
            " identity out to use the connection's project type, or change the"
            " connection's project type in Settings > Integrations.",
            field="identity",
        )
    return key.project_type


class AudienceService:
    def __init__(
        self,
        settings: AudiencesSettings,
        store: SyncStore,
        sizes: SizeCache,
        credentials: CredentialsSource,
        clients: ClientFactory,
        runner: SyncRunner,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sizes = sizes
        self._credentials = credentials
        self._clients = clients
        self._runner = runner

    async def list_audiences(self, workspace_id: str, connection_id: str) -> list[Audience]:
        """Lists and segments, with a size only where one is already known (the
        listing never calls lists/{id}/size: 5 requests per minute per project)."""
        with self._explained(connection_id):
            key = await self._credentials.get(workspace_id, connection_id)
            async with self._clients(key) as client:
                lists = audiences_of(await client.get_lists())
                known = await self._sizes.get_many(connection_id, [lst.id for lst in lists])
        return [as_audience(lst, known.get(lst.id)) for lst in lists]

    async def size(self, workspace_id: str, connection_id: str, list_id: int) -> AudienceSize:
        """lists/{id}/size, cached for `audience_size_ttl_s`; waiting at most
        `audience_size_wait_s` for the budget, then the stale size if any, else 429."""
        settings = self._settings
        with self._explained(connection_id, list_id):
            key = await self._credentials.get(workspace_id, connection_id)
            async with self._clients(key) as client:
                cached = await self._sizes.get(connection_id, list_id)
                if cached is not None and is_fresh(cached, settings.audience_size_ttl_s):
                    return cached
                pick_audience(await client.get_lists(), list_id)
                try:
                    # The client waits for the 5/min budget; don't hold the request longer.
                    size = await asyncio.wait_for(client.get_list_size(list_id), settings.audience_size_wait_s)
                except (TimeoutError, IterableRateLimited):
                    if cached is not None:
                        return cached  # stale, but `size_as_of` says how old
                    raise ApiError(
                        429,
                        "iterable_rate_limited",
                        "Iterable allows 5 list-size requests per minute per project; try again in a minute.",
                    ) from None
        return await self._sizes.put(connection_id, list_id, size, "iterable")

    async def start_sync(
        self, workspace_id: str, connection_id: str, list_id: int, request: SyncRequest, user_id: str
    ) -> tuple[SyncRecord, bool]:
        """The sync started (pending), or a live one of the same audience with the same
        options (True: it already existed). Checks permission, list and Iterable first."""
        alive_since = now() - timedelta(seconds=self._settings.audience_stale_after_s)
        with self._explained(connection_id, list_id):
            # Fresh, not cached: the project type decides how every line is read, and
            # a type just corrected in Settings > Integrations must apply to this sync
            # (starting one is rare: getUsers allows 5 per minute).
            self._credentials.invalidate(connection_id)
            key = await self._credentials.get(workspace_id, connection_id)
            identity = sync_identity(request, key)
            # A double-click (or a second tab) joins the running sync instead of
            # spending another getUsers call of the project's 5 per minute.
            active = await self._store.find_active(workspace_id, connection_id, list_id, alive_since)
            if active is not None and (active.prefer_user_id, active.identity) == (request.prefer_user_id, identity):
                return active, True
            # Up-front checks give clear errors now: permission, unknown list, outage.
            async with self._clients(key) as client:
                lst = pick_audience(await client.get_lists(), list_id)
        created = now()
        record = SyncRecord(
            sync_id=uuid.uuid4().hex,
            workspace_id=workspace_id,
            connection_id=connection_id,
            list_id=list_id,
            list_name=lst.name,
            list_type=audience_type(lst),
            prefer_user_id=request.prefer_user_id,
            identity=identity,
            status="pending",
            requested_by=user_id,
            created_at=created,
            updated_at=created,
        )
        await self._store.create(record)
        await self._runner.publish_progress(record)
        self._runner.start(record.sync_id)
        return record, False

    async def get_sync(self, workspace_id: str, sync_id: str) -> SyncRecord:
        record = await self._store.get(sync_id)
        if record is None or record.workspace_id != workspace_id:
            raise ApiError(404, "sync_not_found", "No such audience sync in this workspace.")
        return record

    async def retry_sync(self, workspace_id: str, sync_id: str) -> SyncRecord:
        """Run a failed (or dead) sync again with the same id, from its checkpoint."""
        record = await self.get_sync(workspace_id, sync_id)
        if record.status == "completed":
            raise ApiError(409, "sync_completed", "This sync has completed; start a new sync to refresh the audience.")
        dead_before = now() - timedelta(seconds=self._settings.audience_stale_after_s)
        claimed = await self._store.claim_retry(record.sync_id, dead_before)
        if claimed is None:
            raise ApiError(409, "sync_active", "This sync is still running.")
        await self._runner.publish_progress(claimed)
        self._runner.start(claimed.sync_id)
        return claimed

    @contextmanager
    def _explained(self, connection_id: str, list_id: int | None = None) -> Iterator[None]:
        """Known failures as their API errors; a key Iterable rejected is forgotten."""
        try:
            yield
        except KNOWN_FAILURES as exc:
            if isinstance(exc, IterableAuthError):
                self._credentials.invalidate(connection_id)
            raise to_api_error(exc, list_id) from None
