"""Validating the identifiers getUsers returns, one per line.

What a line may be depends on the sync's `preferUserId`:
- false (default, email projects): Iterable answers each member's email, so every
  line must be a valid email. A line like `not-an-email` is invalid, even though it
  would be a syntactically valid userId.
- true (userID-based or hybrid projects): the member's userId when it has one, else
  its email. A line with an `@` must be a valid email; any other line must be a
  valid userId (Iterable's rule: 1..512 printable ASCII characters).
Identity follows the project's type (the connection's `project_type`): in a
userID-based project every user has a userId, so every line IS a userId, `@` or not
(`alice@corp` is a valid userId, and treating it as an email would write to the
wrong profile or none).
Only hybrid projects need the `@` rule, and there it is Iterable's own ambiguity.
Invalid lines are counted and skipped, never published.

De-duplication keys: emails compare case-insensitively (as Iterable treats them),
userIds exactly; a member is published as Iterable spelled it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from liftstack_shared.connections_client import ProjectType
from liftstack_shared.messages import AudienceMember

# How an Iterable project identifies users (Iterable: email-based, userID-based,
# hybrid): the connection's `project_type`.
ProjectIdentity = ProjectType
PROJECT_TYPE_NAMES: dict[ProjectType, str] = {
    "email": "email-based",
    "userId": "userID-based",
    "hybrid": "hybrid",
}

MAX_EMAIL_LENGTH = 254
MAX_USER_ID_LENGTH = 512

# Pragmatic, not RFC 5322: a local part without spaces/specials and no leading,
# trailing or doubled dot; a domain of dot-separated labels (letters, digits, inner
# hyphens) with an alphabetic TLD. Non-ASCII letters are allowed (IDN addresses).
_EMAIL = re.compile(
    r"[^\s@\"(),:;<>\[\]\\.]+(?:\.[^\s@\"(),:;<>\[\]\\.]+)*"
    r"@"
    r"(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.)+[^\W\d_]{2,63}"
)


@dataclass(frozen=True, slots=True)
class Identifier:
    key: str  # de-duplication key: "e:<lowercased email>" or "u:<userId>"
    member: AudienceMember


def is_valid_email(value: str) -> bool:
    return len(value) <= MAX_EMAIL_LENGTH and _EMAIL.fullmatch(value) is not None


def is_valid_user_id(value: str) -> bool:
    return 0 < len(value) <= MAX_USER_ID_LENGTH and value.isascii() and value.isprintable()


def parse_identifier(line: str, allow_user_ids: bool = False, identity: ProjectIdentity = "email") -> Identifier | None:
    """The member a getUsers line names, or None if the line is not a valid identifier.
    `identity` "userId": the line is a userId whatever it looks like."""
    value = line.strip().lstrip("\ufeff")
    if not value:
        return None
    if identity == "userId":
        if not is_valid_user_id(value):
            return None
        return Identifier("u:" + value, AudienceMember.model_construct(user_id=value))
    if "@" in value:
        if not is_valid_email(value):
            return None
        # model_construct: the value is validated above; this runs once per line.
        return Identifier("e:" + value.lower(), AudienceMember.model_construct(email=value))
    if not allow_user_ids or not is_valid_user_id(value):
        return None
    return Identifier("u:" + value, AudienceMember.model_construct(user_id=value))
