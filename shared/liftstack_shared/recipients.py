"""Who a recipient is: the one identity key every service computes the same way.

A recipient is known to Iterable by email or by userId. liftstack needs one string
per recipient to split them into variants (the assignment hash), to dedupe them
(one assignment, one counted open per recipient), to attribute an engagement event
back to the variant that recipient was assigned, and to key `engagement.events`
(one recipient's events in order). All of those must agree, so they all call
`recipient_key`.

Emails compare case-insensitively, as Iterable treats them (it stores and reports
them lowercase): `Ann@Example.com` and `ann@example.com` are one recipient, one
variant. userIds are exact (Iterable's are case-sensitive), prefixed `userId:` so a
userId can never collide with an email.
"""

from __future__ import annotations

from typing import Literal

# How a campaign's recipients were identified when they were assigned: all by
# email, all by userId (a userID-based project), or some of each (hybrid).
Identity = Literal["email", "user_id", "mixed"]

USER_ID_PREFIX = "userId:"


def recipient_key(email: str | None, user_id: str | None, identity: Identity = "email") -> str | None:
    """The recipient's key, or None when there is neither an email nor a userId.

    `identity` "user_id": the userId wins when there is one (a userID-based project's
    events also carry Iterable's placeholder email, which is not who was assigned).
    Otherwise the email wins, and the userId is the fallback."""
    email = (email or "").strip()
    user_id = user_id or ""
    if identity == "user_id" and user_id:
        return USER_ID_PREFIX + user_id
    if email:
        return email.lower()
    if user_id:
        return USER_ID_PREFIX + user_id
    return None
