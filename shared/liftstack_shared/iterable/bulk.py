"""users/bulkUpdate: the user model, per-user result parsing and request packing.

Iterable answers a partially failed bulkUpdate with HTTP 200 and lists the failed
identifiers by category; everything submitted and not listed succeeded. This module
turns that into one outcome per submitted user, so a writeback can count, retry
(never a GDPR-forgotten user) and report precisely.

Two things Iterable counts as success are not: a user whose dataFields included a
field Iterable dropped (`filteredOutFields`, e.g. past the project's field limit or
with createNewFields off) was not written as asked, so fails with `field_dropped`;
and a `failCount` larger than the users Iterable names is kept as
`unattributed_fail_count` for the caller to surface.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from liftstack_shared.iterable.models import RequestModel, ResponseModel

# Iterable's documented cap is "4MB"; 4,000,000 is under both readings (10^6 and 2^20).
MAX_BODY_BYTES = 4_000_000
# No documented count limit; 1,000 per request is Iterable's own recommendation.
MAX_USERS_PER_REQUEST = 1_000


def dumps(body: Any) -> bytes:
    """The one JSON serialisation the client sends, so sizes measured here are exact."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class BulkUpdateUser(RequestModel):
    """`OptionalApiUser`: identified by `email` or `userId`, never both."""

    email: str | None = None
    userId: str | None = None
    dataFields: dict[str, Any] = Field(default_factory=dict)
    preferUserId: bool | None = None
    # Needed to write one key into a nested object (e.g. lf_assignments.<campaign>)
    # without replacing the others.
    mergeNestedObjects: bool | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> BulkUpdateUser:
        if (self.email is None) == (self.userId is None):
            raise ValueError("a bulkUpdate user needs exactly one of email or userId")
        return self

    @property
    def identifier(self) -> str:
        identifier = self.email if self.email is not None else self.userId
        if identifier is None:  # only a model built without validation (_one_identifier) gets here
            raise ValueError("a bulkUpdate user needs exactly one of email or userId")
        return identifier


class BulkUpdateRequest(RequestModel):
    """The `users/bulkUpdate` body."""

    users: list[BulkUpdateUser]
    createNewFields: bool


class FailedUpdates(ResponseModel):
    invalidEmails: list[str] = Field(default_factory=list)
    invalidUserIds: list[str] = Field(default_factory=list)
    notFoundEmails: list[str] = Field(default_factory=list)
    notFoundUserIds: list[str] = Field(default_factory=list)
    forgottenEmails: list[str] = Field(default_factory=list)
    forgottenUserIds: list[str] = Field(default_factory=list)
    conflictEmails: list[str] = Field(default_factory=list)
    conflictUserIds: list[str] = Field(default_factory=list)
    invalidDataEmails: list[str] = Field(default_factory=list)
    invalidDataUserIds: list[str] = Field(default_factory=list)


class BulkUpdateResponse(ResponseModel):
    """`UserBulkUpdateListResponse`, as Iterable sends it."""

    successCount: int
    failCount: int
    createdFields: list[str] = Field(default_factory=list)
    filteredOutFields: list[str] = Field(default_factory=list)
    failedUpdates: FailedUpdates = Field(default_factory=FailedUpdates)
    # Deprecated by Iterable in favour of failedUpdates, still honoured.
    invalidEmails: list[str] = Field(default_factory=list)
    invalidUserIds: list[str] = Field(default_factory=list)


class FailureReason(StrEnum):
    INVALID = "invalid"  # malformed email/userId
    NOT_FOUND = "not_found"
    FORGOTTEN = "forgotten"  # GDPR: never retry
    CONFLICT = "conflict"
    INVALID_DATA = "invalid_data"  # e.g. a field whose type doesn't match the project's
    FIELD_DROPPED = "field_dropped"  # a field it carried is in filteredOutFields


# Nothing bulkUpdate reports is worth resubmitting unchanged: per the spec,
# notFound* is for lists/subscribe and unsubscribe (not bulkUpdate), conflict* means
# an existing email/userId blocked the identity update (deterministic), and the
# others (malformed, mistyped, forgotten, dropped field) fail the same way every time.
DEFAULT_RETRYABLE: frozenset[FailureReason] = frozenset()

# Checked in this order: a user listed twice gets the first (most final) reason.
_CATEGORIES: list[tuple[FailureReason, str, str]] = [
    (FailureReason.FORGOTTEN, "forgottenEmails", "forgottenUserIds"),
    (FailureReason.INVALID, "invalidEmails", "invalidUserIds"),
    (FailureReason.INVALID_DATA, "invalidDataEmails", "invalidDataUserIds"),
    (FailureReason.CONFLICT, "conflictEmails", "conflictUserIds"),
    (FailureReason.NOT_FOUND, "notFoundEmails", "notFoundUserIds"),
]


def field_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    """Every field path in `data` as Iterable names them (dotted, parents too)."""
    paths: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict):
            paths |= field_paths(value, path + ".")
    return paths


def _email_key(email: str) -> str:
    # Iterable may report an email normalised (lower-cased); match case-insensitively.
    return email.strip().casefold()


@dataclass(frozen=True)
class UserOutcome:
    user: BulkUpdateUser
    reason: FailureReason | None  # None: succeeded

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class BulkUpdateResult:
    """One outcome per submitted user (in submission order) plus Iterable's counts.

    Kept as two parallel lists, the users and their reasons, rather than an object
    per user: a writeback batch is 1,000 users and this is on its hot path
    (`outcomes` pairs them up on demand)."""

    users: list[BulkUpdateUser]
    reasons: list[FailureReason | None]  # None: succeeded
    successCount: int
    failCount: int
    createdFields: list[str] = field(default_factory=list)
    filteredOutFields: list[str] = field(default_factory=list)
    # Failures Iterable reported for identifiers that match no submitted user (e.g. a
    # malformed email inside dataFields of a user we can't tie it to).
    unmatched: dict[str, FailureReason] = field(default_factory=dict)

    @classmethod
    def from_response(cls, users: list[BulkUpdateUser], response: BulkUpdateResponse) -> BulkUpdateResult:
        failed = response.failedUpdates
        named = [(reason, getattr(failed, emails), getattr(failed, uids)) for reason, emails, uids in _CATEGORIES]
        # The deprecated top-level lists only fill in users not already classified.
        named.append((FailureReason.INVALID, response.invalidEmails, response.invalidUserIds))
        if not response.filteredOutFields and not any(emails or user_ids for _, emails, user_ids in named):
            # Nobody named, nothing dropped (the usual answer): every user succeeded,
            # no need to index them.
            return cls(
                users=users,
                reasons=[None] * len(users),
                successCount=response.successCount,
                failCount=response.failCount,
                createdFields=list(response.createdFields),
            )
        by_email: dict[str, list[int]] = {}
        by_user_id: dict[str, list[int]] = {}
        # Secondary: Iterable also lists malformed emails/userIds found in dataFields.
        by_data_email: dict[str, list[int]] = {}
        by_data_user_id: dict[str, list[int]] = {}
        for i, user in enumerate(users):
            if user.email is not None:
                by_email.setdefault(_email_key(user.email), []).append(i)
            else:
                by_user_id.setdefault(user.userId or "", []).append(i)
            data_email, data_uid = user.dataFields.get("email"), user.dataFields.get("userId")
            if isinstance(data_email, str):
                by_data_email.setdefault(_email_key(data_email), []).append(i)
            if isinstance(data_uid, str):
                by_data_user_id.setdefault(data_uid, []).append(i)

        reasons: list[FailureReason | None] = [None] * len(users)
        unmatched: dict[str, FailureReason] = {}

        def mark(identifier: str, is_email: bool, reason: FailureReason) -> None:
            key = _email_key(identifier) if is_email else identifier
            primary, secondary = (by_email, by_data_email) if is_email else (by_user_id, by_data_user_id)
            hits = primary.get(key) or secondary.get(key)
            if not hits:
                unmatched.setdefault(identifier, reason)
                return
            for i in hits:
                if reasons[i] is None:
                    reasons[i] = reason

        for reason, emails, user_ids in named:
            for email in emails:
                mark(email, True, reason)
            for user_id in user_ids:
                mark(user_id, False, reason)
        # Iterable counts a user whose field it dropped as a success; it is not one.
        dropped = set(response.filteredOutFields)
        if dropped:
            for i, user in enumerate(users):
                if reasons[i] is None and dropped & field_paths(user.dataFields):
                    reasons[i] = FailureReason.FIELD_DROPPED

        return cls(
            users=users,
            reasons=reasons,
            successCount=response.successCount,
            failCount=response.failCount,
            createdFields=list(response.createdFields),
            filteredOutFields=list(response.filteredOutFields),
            unmatched=unmatched,
        )

    @property
    def outcomes(self) -> list[UserOutcome]:
        return [UserOutcome(u, r) for u, r in zip(self.users, self.reasons)]

    @property
    def succeeded(self) -> list[str]:
        """Identifiers (email or userId) of users that were updated."""
        return [u.identifier for u, r in zip(self.users, self.reasons) if r is None]

    @property
    def failed(self) -> dict[str, FailureReason]:
        """Identifier -> reason for every submitted user that failed."""
        return {u.identifier: r for u, r in zip(self.users, self.reasons) if r is not None}

    @property
    def failed_by_reason(self) -> dict[FailureReason, int]:
        counts: dict[FailureReason, int] = {}
        for reason in self.reasons:
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
        return counts

    @property
    def unattributed_fail_count(self) -> int:
        """Failures Iterable counted but named no identifier for: which users they
        are is unknown (they are reported as succeeded because nothing names them),
        so callers must surface this count rather than drop it."""
        named = sum(1 for r in self.reasons if r not in (None, FailureReason.FIELD_DROPPED))
        return max(0, self.failCount - named)

    def retryable(self, reasons: Iterable[FailureReason] = DEFAULT_RETRYABLE) -> list[BulkUpdateUser]:
        """Users worth resubmitting unchanged. Forgotten users are never included, even
        if asked for."""
        wanted = set(reasons) - {FailureReason.FORGOTTEN}
        return [u for u, r in zip(self.users, self.reasons) if r in wanted]

    @classmethod
    def empty(cls) -> BulkUpdateResult:
        return cls(users=[], reasons=[], successCount=0, failCount=0)


def bulk_update_body(users: list[BulkUpdateUser], create_new_fields: bool) -> bytes:
    """The body exactly as sent: the users are already validated models, so they are
    serialised in one pass of pydantic's serializer (no per-user dicts, no `json`
    module; this is the hot path of every writeback batch). Same JSON as `to_body()`
    for each user (omitted Nones, compact, UTF-8)."""
    body = BulkUpdateRequest.model_construct(users=users, createNewFields=create_new_fields)
    return body.__pydantic_serializer__.to_json(body, exclude_none=True)


def _user_bytes(user: BulkUpdateUser) -> int:
    """The user's share of `bulk_update_body` (same serializer, so sizes are exact)."""
    return len(user.__pydantic_serializer__.to_json(user, exclude_none=True))


def _envelope_bytes(create_new_fields: bool) -> int:
    return len(bulk_update_body([], create_new_fields))


def pack_users(
    users: Iterable[BulkUpdateUser],
    *,
    max_users: int = MAX_USERS_PER_REQUEST,
    max_bytes: int = MAX_BODY_BYTES,
    create_new_fields: bool = True,
) -> Iterator[list[BulkUpdateUser]]:
    """Split users into bulkUpdate requests of at most `max_users` users whose
    serialised body (exactly as the client sends it) is at most `max_bytes`.

    Raises ValueError for a single user too large to fit any request.
    """
    envelope = _envelope_bytes(create_new_fields)
    batch: list[BulkUpdateUser] = []
    size = envelope
    for user in users:
        user_bytes = _user_bytes(user)
        if envelope + user_bytes > max_bytes:
            raise ValueError(
                f"bulkUpdate user {user.identifier!r} alone serialises to {user_bytes} bytes,"
                f" over the {max_bytes}-byte body cap"
            )
        # +1 for the comma between users.
        added = user_bytes + (1 if batch else 0)
        if batch and (len(batch) >= max_users or size + added > max_bytes):
            yield batch
            batch, size, added = [], envelope, user_bytes
        batch.append(user)
        size += added
    if batch:
        yield batch
