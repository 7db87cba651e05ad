"""Lists (audiences): creation, membership and the getUsers line stream.

Static lists ("Standard") hold explicit members (stored users) and/or a generated
range (state.GeneratedMembers, for lists of a million members without a million
profiles). Dynamic lists ("Dynamic", Iterable's segments) are the same, plus optional
`criteria` evaluated live over stored users at read time. Forgotten users leave every
list.

GET /api/lists/getUsers streams one identifier per line (`text/plain`): the email,
or the userId with preferUserId=true when the member has one. Lines are produced
lazily and written in chunks of `stream_chunk_lines`, so memory stays flat whatever
the list size.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from liftstack_sandbox.config import FaultConfig
from liftstack_sandbox.errors import DropConnection
from liftstack_sandbox.state import (
    Criterion,
    GeneratedMembers,
    ListType,
    Project,
    SandboxList,
    SandboxState,
    User,
    now_ms,
)
from liftstack_sandbox.users import is_valid_email, is_valid_user_id


def create_list(
    state: SandboxState,
    project: Project,
    name: str,
    list_type: ListType = "Standard",
    members: list[str] | None = None,
    generate: GeneratedMembers | None = None,
    criteria: list[Criterion] | None = None,
    description: str | None = None,
) -> SandboxList:
    with state.lock:
        lst = SandboxList(
            id=state.next_list_id(),
            name=name,
            list_type=list_type,
            created_ms=now_ms(),
            description=description,
            generated=generate,
            criteria=criteria,
        )
        project.lists[lst.id] = lst
        if members:
            add_members(project, lst, members)
        return lst


def add_members(project: Project, lst: SandboxList, members: list[str]) -> int:
    """Add explicit members (emails, or userIds when not email-shaped; always userIds
    in a userID-based project), creating
    their profiles like a list subscribe does. Returns how many were added."""
    present = {id(u) for u in lst.members}
    added = 0
    for ident in members:
        user = _member_user(project, ident)
        if id(user) not in present:
            lst.members.append(user)
            present.add(id(user))
            added += 1
    return added


def _member_user(project: Project, ident: str) -> User:
    # In a userID-based project every member is a userId, "@" or not.
    if "@" in ident and project.identity != "userId":
        if not is_valid_email(ident):
            raise ValueError(f"invalid email {ident!r}")
        user = project.find_user(email=ident)
        if user is None:
            return project.new_user(ident, None)
    else:
        if not is_valid_user_id(ident):
            raise ValueError(f"invalid userId {ident!r}")
        user = project.find_user(user_id=ident)
        if user is None:
            return project.new_user(None, ident)
    if not project.is_stored(user):
        project.store_user(user)
    return user


def iter_identifiers(project: Project, lst: SandboxList, prefer_user_id: bool) -> Iterator[str]:
    """Every member's identifier, once each, without materialising the list."""
    # Snapshot the explicit members' length: a concurrent add must not break the loop.
    count = len(lst.members)
    seen_explicit: set[str] = set()
    for i in range(count):
        user = lst.members[i]
        if user.forgotten:
            continue
        ident = _identifier(user.email, user.user_id, prefer_user_id)
        seen_explicit.add(user.email or "")
        yield ident
    spec = lst.generated
    if spec is not None:
        forgotten_emails = project.forgotten_emails
        forgotten_uids = project.forgotten_user_ids
        for i in range(spec.start, spec.start + spec.count):
            email = spec.email(i)
            uid = spec.user_id(i)
            if email in forgotten_emails or (uid is not None and uid in forgotten_uids):
                continue
            if seen_explicit and email in seen_explicit:
                continue
            yield _identifier(email, uid, prefer_user_id)
    if lst.criteria:
        for user in list(project.users_by_email.values()):
            if user.forgotten or user.email in seen_explicit:
                continue
            if spec is not None and user.email and spec.index_of_email(user.email) is not None:
                continue
            if all(c.matches(user.data) for c in lst.criteria):
                yield _identifier(user.email, user.user_id, prefer_user_id)


def _identifier(email: str | None, user_id: str | None, prefer_user_id: bool) -> str:
    if prefer_user_id and user_id is not None:
        return user_id
    return email or user_id or ""


def list_size(project: Project, lst: SandboxList) -> int:
    if lst.criteria:
        return sum(1 for _ in iter_identifiers(project, lst, False))
    size = sum(1 for u in lst.members if not u.forgotten)
    spec = lst.generated
    if spec is not None:
        explicit = {u.email for u in lst.members if not u.forgotten}
        gone = 0
        for email in project.forgotten_emails:
            if spec.index_of_email(email) is not None:
                gone += 1
        for uid in project.forgotten_user_ids:
            i = spec.index_of_user_id(uid)
            if i is not None and spec.email(i) not in project.forgotten_emails:
                gone += 1
        overlap = sum(1 for e in explicit if e and spec.index_of_email(e) is not None)
        size += spec.count - gone - overlap
    return size


def stream_lines(
    project: Project, lst: SandboxList, prefer_user_id: bool, chunk_lines: int, faults: FaultConfig
) -> Iterator[bytes]:
    """The getUsers body in chunks, with the configured stream faults applied:
    invalid and duplicate lines, and a dropped connection after N lines."""
    cut_after = faults.stream_cut_after_lines
    invalid_every = faults.stream_invalid_every
    duplicate_every = faults.stream_duplicate_every
    rng = random.Random(faults.seed)
    buffer: list[str] = []
    sent = 0
    if cut_after == 0:
        raise DropConnection()

    def emit(line: str) -> bool:
        """Buffer one line; False once the cut point is reached."""
        nonlocal sent
        buffer.append(line)
        sent += 1
        return cut_after is None or sent < cut_after

    for members, ident in enumerate(iter_identifiers(project, lst, prefer_user_id), start=1):
        keep_going = emit(ident)
        # Faults are placed by member count, so they don't shift each other.
        if keep_going and duplicate_every and members % duplicate_every == 0:
            keep_going = emit(ident)
        if keep_going and invalid_every and members % invalid_every == 0:
            keep_going = emit(_invalid_line(rng))
        if not keep_going:
            break
        if len(buffer) >= chunk_lines:
            yield ("\n".join(buffer) + "\n").encode()
            buffer.clear()
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()
    if cut_after is not None and sent >= cut_after:
        raise DropConnection()


def _invalid_line(rng: random.Random) -> str:
    return rng.choice(["not-an-email", "missing-at.example.com", "two@@example.com", " ", "user@"])


def list_admin_view(project: Project, lst: SandboxList) -> dict[str, Any]:
    view = lst.api_view()
    view["size"] = list_size(project, lst)
    view["explicitMembers"] = sum(1 for u in lst.members if not u.forgotten)
    view["generated"] = lst.generated.describe() if lst.generated else None
    view["criteria"] = (
        [{"field": c.field, "op": c.op, "value": c.value} for c in lst.criteria] if lst.criteria else None
    )
    return view
