"""The readiness gate's read-back: look up sampled recipients through Iterable's
user lookup (GET /api/users/getByEmail or /api/users/byUserId) with the connection's
key, and compare `lf_assignments.<campaign key>` with their assigned variant. The
shared client paces the calls at Iterable's published users/get limit; a sample is
at most plan.READ_BACK_SAMPLE lookups, and one campaign's answer is kept for
`ttl_s` so a wizard that polls doesn't spend the budget again."""

from __future__ import annotations

import time

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.campaigns import Campaign
from liftstack_experiments.readiness import ReadBack
from liftstack_shared.connections_client import ConnectionNotFound, ConnectionsClient
from liftstack_shared.iterable.client import IterableClient
from liftstack_shared.iterable.errors import IterableError
from liftstack_shared.settings import CommonSettings

USER_ID_PREFIX = "userId:"
# Mismatched recipients named in the wizard, at most.
NAMED = 3


class ReadBackProbe:
    def __init__(self, settings: CommonSettings, connections: ConnectionsClient, ttl_s: float = 15.0) -> None:
        self._settings = settings
        self._connections = connections
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, ReadBack]] = {}

    async def read_back(self, campaign: Campaign, run_key: str) -> ReadBack:
        """`run_key` names the writeback run read back (a new run reads again)."""
        key = (campaign.id, run_key)
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        answer = await self._read(campaign)
        self._cache[key] = (time.monotonic() + self._ttl_s, answer)
        return answer

    async def _read(self, campaign: Campaign) -> ReadBack:
        sample = campaign.assignment.sample if campaign.assignment else []
        try:
            connection = await self._connections.get(campaign.connection_id)
        except ConnectionNotFound:
            return ReadBack(sampled=len(sample), matched=0, error="the connection is gone")
        matched, mismatched = 0, list[str]()
        try:
            async with IterableClient.from_settings(self._settings, connection.api_key, connection.region) as iterable:
                for recipient in sample:
                    if recipient.startswith(USER_ID_PREFIX):
                        user = await iterable.get_user(user_id=recipient.removeprefix(USER_ID_PREFIX))
                    else:
                        user = await iterable.get_user(email=recipient)
                    fields = (user or {}).get("dataFields") or {}
                    written = (fields.get("lf_assignments") or {}).get(campaign.key)
                    if written == assign_variant(campaign.key, recipient, campaign.variant_names, campaign.weights):
                        matched += 1
                    elif len(mismatched) < NAMED:
                        mismatched.append(recipient)
        except IterableError as exc:
            return ReadBack(sampled=len(sample), matched=matched, error=str(exc))
        return ReadBack(sampled=len(sample), matched=matched, mismatched=mismatched)
