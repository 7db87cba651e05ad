"""A connection's audiences for the wizard: Iterable lists (Standard) and segments
(Dynamic), with their size where it is cheap to know.

Sizes. lists/{id}/size is limited to 5 requests per minute per project, so listing
never calls it: a listing shows the size already known, either from that endpoint
(cached for `audience_size_ttl_s`) or the exact member count of the audience's last
completed sync. The size of one audience is fetched on demand (`audience_size`),
e.g. when the user selects it in the wizard.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from liftstack_audiences.failures import audience_not_found
from liftstack_audiences.models import Audience, AudienceSize, AudienceType
from liftstack_audiences.store import SizeCache, is_fresh
from liftstack_shared.errors import ApiError
from liftstack_shared.iterable import IterableClient, IterableList, IterableRateLimited, ListType

# Suppression and Internal lists are not audiences one sends a campaign to.
AUDIENCE_TYPES: dict[str, AudienceType] = {ListType.STANDARD: "list", ListType.DYNAMIC: "segment"}


def audience_type(lst: IterableList) -> AudienceType | None:
    return AUDIENCE_TYPES.get(str(lst.listType))


async def list_audiences(client: IterableClient, sizes: SizeCache, connection_id: str) -> list[Audience]:
    lists = [lst for lst in await client.get_lists() if audience_type(lst)]
    known = await sizes.get_many(connection_id, [lst.id for lst in lists])
    audiences = []
    for lst in lists:
        size = known.get(lst.id)
        audiences.append(
            Audience(
                id=lst.id,
                name=lst.name,
                type=audience_type(lst) or "list",
                iterable_type=str(lst.listType),
                created_at=(datetime.fromtimestamp(lst.createdAt / 1000, UTC) if lst.createdAt is not None else None),
                size=size.size if size else None,
                size_source=size.size_source if size else None,
                size_as_of=size.size_as_of if size else None,
            )
        )
    return audiences


async def find_audience(client: IterableClient, list_id: int) -> IterableList:
    """The list, or 404 (Iterable itself answers 400 for an unknown list id)."""
    for lst in await client.get_lists():
        if lst.id == list_id:
            if audience_type(lst) is None:
                raise ApiError(
                    422,
                    "not_an_audience",
                    f"Iterable list {list_id} is a {lst.listType} list, not a list or segment"
                    " one can send a campaign to.",
                )
            return lst
    raise audience_not_found(list_id)


async def audience_size(
    client: IterableClient,
    sizes: SizeCache,
    connection_id: str,
    list_id: int,
    ttl_s: float,
    wait_s: float,
) -> AudienceSize:
    cached = await sizes.get(connection_id, list_id)
    if cached is not None and is_fresh(cached, ttl_s):
        return cached
    await find_audience(client, list_id)
    try:
        # The client waits for the 5/min budget; don't hold the request longer.
        size = await asyncio.wait_for(client.get_list_size(list_id), wait_s)
    except (TimeoutError, IterableRateLimited):
        if cached is not None:
            return cached  # stale, but `size_as_of` says how old
        raise ApiError(
            429,
            "iterable_rate_limited",
            "Iterable allows 5 list-size requests per minute per project; try again in a minute.",
        ) from None
    return await sizes.put(connection_id, list_id, size, "iterable")
