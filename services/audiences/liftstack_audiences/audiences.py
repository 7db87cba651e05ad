"""Which Iterable lists are audiences, and how the wizard shows them (pure: the
lists and known sizes are read by the caller).

Iterable Standard lists are "list" audiences and Dynamic lists "segment" audiences;
Suppression and Internal lists are not audiences one sends a campaign to.
"""

from __future__ import annotations

from datetime import UTC, datetime

from liftstack_audiences.failures import audience_not_found
from liftstack_audiences.models import Audience, AudienceSize, AudienceType
from liftstack_shared.errors import ApiError
from liftstack_shared.iterable import IterableList, ListType

AUDIENCE_TYPES: dict[str, AudienceType] = {ListType.STANDARD: "list", ListType.DYNAMIC: "segment"}


def audience_type(lst: IterableList) -> AudienceType | None:
    return AUDIENCE_TYPES.get(str(lst.listType))


def audiences_of(lists: list[IterableList]) -> list[IterableList]:
    """The lists that are audiences, in Iterable's order."""
    return [lst for lst in lists if audience_type(lst)]


def as_audience(lst: IterableList, size: AudienceSize | None) -> Audience:
    """The wizard's view of an audience list, with its size if already known."""
    return Audience(
        id=lst.id,
        name=lst.name,
        type=audience_type(lst) or "list",
        iterable_type=str(lst.listType),
        created_at=(datetime.fromtimestamp(lst.createdAt / 1000, UTC) if lst.createdAt is not None else None),
        size=size.size if size else None,
        size_source=size.size_source if size else None,
        size_as_of=size.size_as_of if size else None,
    )


def pick_audience(lists: list[IterableList], list_id: int) -> IterableList:
    """The audience `list_id` among the project's lists: 404 if it isn't there
    (Iterable itself answers 400 for an unknown list id), 422 if it is no audience."""
    for lst in lists:
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
