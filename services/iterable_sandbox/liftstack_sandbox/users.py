"""User profiles: POST /api/users/bulkUpdate semantics, field types, lookups.

Fidelity notes (what Iterable documents, and our choices where it doesn't):
- Updates are applied immediately. Real Iterable applies them eventually (seconds to
  minutes), so a client must not rely on read-after-write; the sandbox is stricter
  only in being faster.
- Top-level fields in dataFields replace the stored ones; with mergeNestedObjects
  nested objects are merged recursively (other keys survive), otherwise replaced.
- A field's type is fixed by the first non-null value written to it in the project
  (nested keys are fields too, named by dotted path). Types: string, date (strings
  like "2024-01-31" or "2024-01-31 12:00:00 +00:00"), long, double, boolean, object,
  nested (arrays of objects); an array of scalars has its elements' type. A long may
  be written to a double field, a date-shaped string to a string field; anything
  else that differs rejects that user (failedUpdates.invalidData*), not the request.
- createNewFields (default: the project's `create_new_fields` setting): when false,
  fields the project doesn't have are dropped and listed in filteredOutFields. When
  true, new fields past the project's `field_limit` (Iterable's soft limit of 1,000
  unique fields, nested keys counted) are dropped and listed the same way. Either
  way the user counts as a success, as at Iterable.
- Emails are stored lowercase and matched case-insensitively (Iterable lowercases
  every email); reads and failure lists answer them lowercase.
- Identity (project.identity; spec: preferUserId "only respected in email-based
  projects"): in an email-based project a userId that doesn't exist creates a user
  (with a placeholder email) only with preferUserId=true, else the user fails;
  userId-based and hybrid projects create it. An email that doesn't exist is created,
  except in userId-based projects, where the user fails. Such failures count in
  failCount and the deprecated top-level lists only: bulkUpdate never reports
  notFound* (per the spec those are for subscribe/unsubscribe). Email and userId together look up
  by the project's primary identifier and attach the other one, unless it belongs to
  another user (conflictEmails / conflictUserIds).
- `email` / `userId` inside dataFields are validated (invalidEmails/invalidUserIds,
  as the spec describes) but not stored as fields: they are identifiers.
- Forgotten (GDPR) users are reported in forgotten* and never written.
- The deprecated top-level invalidEmails / invalidUserIds list every failed user's
  email / userId (the spec: "users that failed to update").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from liftstack_sandbox.errors import IterableError, bad_json, bad_params
from liftstack_sandbox.state import Project, User, normalise_email, now_ms

ENDPOINT = "/api/users/bulkUpdate"

_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?: ?(?:Z|[+-]\d{2}:?\d{2}))?)?$")
MAX_USER_ID_LENGTH = 512  # Iterable only says "too long"; 512 is our documented cap.
SYSTEM_FIELDS = {"email": "string", "userId": "string", "signupDate": "date", "profileUpdatedAt": "date"}


def is_valid_email(value: str) -> bool:
    return len(value) <= 254 and _EMAIL_RE.match(value) is not None


def is_valid_user_id(value: str) -> bool:
    """The spec: not empty, not too long, printable ASCII, no trailing space."""
    return 0 < len(value) <= MAX_USER_ID_LENGTH and value.isascii() and value.isprintable() and not value.endswith(" ")


# -- field types ---------------------------------------------------------------------


class TypeConflict(Exception):
    pass


def scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "date" if _DATE_RE.match(value) else "string"
    if isinstance(value, dict):
        return "object"
    raise TypeConflict(f"unsupported value {type(value).__name__}")


def flatten_types(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, type) for every non-null value in `data`, parents first."""
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, dict):
            out.append((path, "object"))
            out.extend(flatten_types(value, path + "."))
        elif isinstance(value, list):
            items = [v for v in value if v is not None]
            if not items:
                continue
            if all(isinstance(v, dict) for v in items):
                out.append((path, "nested"))
                for item in items:
                    out.extend(flatten_types(item, path + "."))
            else:
                types = {scalar_type(v) for v in items}
                if "object" in types or any(isinstance(v, list) for v in items):
                    raise TypeConflict(f"{path}: mixed array")
                out.append((path, _unify(types, path)))
        else:
            out.append((path, scalar_type(value)))
    return out


def _unify(types: set[str], path: str) -> str:
    if len(types) == 1:
        return next(iter(types))
    if types == {"long", "double"}:
        return "double"
    if types == {"string", "date"}:
        return "string"
    raise TypeConflict(f"{path}: mixed array types {sorted(types)}")


def compatible(existing: str, new: str) -> bool:
    return existing == new or (existing, new) in {("double", "long"), ("string", "date")}


# -- request validation ----------------------------------------------------------------


def _play_error(params: dict[str, Any], path: str, key: str) -> None:
    params.setdefault(path, []).append({"msg": [key], "args": []})


def validate_bulk_body(body: Any) -> tuple[list[dict[str, Any]], bool | None]:
    """Structural validation, as Iterable's JSON reader does it: any type error
    rejects the whole request (400 BadJsonBody, Play-style params)."""
    params: dict[str, Any] = {}
    if not isinstance(body, dict):
        raise bad_json(ENDPOINT, {"obj": [{"msg": ["error.expected.jsobject"], "args": []}]})
    users = body.get("users")
    if users is None:
        _play_error(params, "obj.users", "error.path.missing")
    elif not isinstance(users, list):
        _play_error(params, "obj.users", "error.expected.jsarray")
    create_new = body.get("createNewFields")
    if create_new is not None and not isinstance(create_new, bool):
        _play_error(params, "obj.createNewFields", "error.expected.jsboolean")
    if isinstance(users, list):
        for i, user in enumerate(users):
            where = f"obj.users[{i}]"
            if not isinstance(user, dict):
                _play_error(params, where, "error.expected.jsobject")
                continue
            for name in ("email", "userId"):
                if user.get(name) is not None and not isinstance(user[name], str):
                    _play_error(params, f"{where}.{name}", "error.expected.jsstring")
            for name in ("preferUserId", "mergeNestedObjects"):
                if user.get(name) is not None and not isinstance(user[name], bool):
                    _play_error(params, f"{where}.{name}", "error.expected.jsboolean")
            data = user.get("dataFields")
            if data is not None and not isinstance(data, dict):
                _play_error(params, f"{where}.dataFields", "error.expected.jsobject")
    if params:
        raise bad_json(ENDPOINT, params)
    assert isinstance(users, list)
    for i, user in enumerate(users):
        if user.get("email") is None and user.get("userId") is None:
            raise bad_params(
                f"users[{i}]: each user must have an email or a userId",
                {"index": i},
            )
    return users, create_new


# -- bulk update -------------------------------------------------------------------------


# notFoundEmails/notFoundUserIds exist in FailedUserUpdates, but per the spec they are
# for lists/subscribe and unsubscribe: bulkUpdate never reports them.
FAILURE_LISTS = (
    "invalidEmails",
    "invalidUserIds",
    "forgottenEmails",
    "forgottenUserIds",
    "conflictEmails",
    "conflictUserIds",
    "invalidDataEmails",
    "invalidDataUserIds",
)


@dataclass
class BulkResult:
    success: int = 0
    fail_count: int = 0
    created_fields: list[str] = field(default_factory=list)
    filtered_out: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=lambda: {n: [] for n in FAILURE_LISTS})
    failed_emails: list[str] = field(default_factory=list)
    failed_user_ids: list[str] = field(default_factory=list)

    def fail(
        self,
        kind: str,
        email: str | None,
        user_id: str | None,
        culprit: str | None = None,
        value: str | None = None,
    ) -> None:
        """Record one failed user in failedUpdates.<kind>Emails or <kind>UserIds.
        `culprit` ("email"/"userId") names the identifier at fault (default: email
        when given); `value` overrides what is listed (a bad dataFields.email)."""
        culprit = culprit or ("email" if email is not None else "userId")
        listed = value if value is not None else (email if culprit == "email" else user_id)
        suffix = "Emails" if culprit == "email" else "UserIds"
        self.failed[f"{kind}{suffix}"].append(str(listed))
        self.fail_count += 1
        if email is not None:
            self.failed_emails.append(email)
        if user_id is not None:
            self.failed_user_ids.append(user_id)

    def fail_unlisted(self, email: str | None, user_id: str | None) -> None:
        """A user that failed without a failedUpdates category: counted in failCount
        and named only in the deprecated top-level lists."""
        self.fail_count += 1
        if email is not None:
            self.failed_emails.append(email)
        if user_id is not None:
            self.failed_user_ids.append(user_id)

    def body(self) -> dict[str, Any]:
        return {
            "successCount": self.success,
            "failCount": self.fail_count,
            "createdFields": self.created_fields,
            "filteredOutFields": self.filtered_out,
            "failedUpdates": self.failed,
            "invalidEmails": self.failed_emails,
            "invalidUserIds": self.failed_user_ids,
        }


def without_names(body: dict[str, Any]) -> dict[str, Any]:
    """The fault `bulk_unnamed_failures`: the counts stay, every list of failed
    users is emptied."""
    return {
        **body,
        "failedUpdates": {name: [] for name in body["failedUpdates"]},
        "invalidEmails": [],
        "invalidUserIds": [],
    }


def bulk_update(project: Project, users: list[dict[str, Any]], create_new: bool | None) -> BulkResult:
    """Apply a validated bulkUpdate; the caller holds the state lock."""
    if create_new is None:
        create_new = project.config.create_new_fields
    result = BulkResult()
    created: set[str] = set()
    filtered: set[str] = set()
    for entry in users:
        if _update_one(project, entry, create_new, result, created, filtered):
            result.success += 1
    result.created_fields = sorted(created)
    result.filtered_out = sorted(filtered)
    return result


def _update_one(
    project: Project,
    entry: dict[str, Any],
    create_new: bool,
    result: BulkResult,
    created: set[str],
    filtered: set[str],
) -> bool:
    email: str | None = entry.get("email")
    user_id: str | None = entry.get("userId")
    data: dict[str, Any] = entry.get("dataFields") or {}

    # 1. Identifiers, top level and in dataFields. Iterable stores emails lowercase
    # and reports them lowercase.
    if email is not None and not is_valid_email(email):
        result.fail("invalid", email, user_id, "email")
        return False
    if email is not None:
        email = normalise_email(email)
    if user_id is not None and not is_valid_user_id(user_id):
        result.fail("invalid", email, user_id, "userId")
        return False
    inner_email, inner_uid = data.get("email"), data.get("userId")
    if inner_email is not None and not (isinstance(inner_email, str) and is_valid_email(inner_email)):
        result.fail("invalid", email, user_id, "email", str(inner_email))
        return False
    if inner_uid is not None and not (isinstance(inner_uid, str) and is_valid_user_id(inner_uid)):
        result.fail("invalid", email, user_id, "userId", str(inner_uid))
        return False
    if "email" in data or "userId" in data:
        data = {k: v for k, v in data.items() if k not in ("email", "userId")}

    # A per-user write failure injected by the project's faults (config.py).
    failing = project.config.faults.bulk_fail_users
    if failing and ((email is not None and email in failing) or (user_id is not None and user_id in failing)):
        result.fail("invalidData", email, user_id)
        return False

    # 2. GDPR-forgotten users are never written.
    if email is not None and email in project.forgotten_emails:
        result.fail("forgotten", email, user_id, "email")
        return False
    if user_id is not None and user_id in project.forgotten_user_ids:
        result.fail("forgotten", email, user_id, "userId")
        return False

    # 3. Find (or decide to create) the profile.
    found = _resolve(project, email, user_id, bool(entry.get("preferUserId")), result)
    if found is None:
        return False
    user, attach_email, attach_uid = found

    # 4. Drop unknown fields unless creating them (and within the project's field
    # limit); check types against the project.
    limit = project.config.field_limit
    if not create_new:
        data = _prune_unknown(project.field_types, data, "", filtered, None)
    elif limit is not None:
        room = [max(0, limit - len(project.field_types))]
        data = _prune_unknown(project.field_types, data, "", filtered, room)
    try:
        typed = flatten_types(data)
    except TypeConflict:
        result.fail("invalidData", email, user_id)
        return False
    seen: dict[str, str] = {}
    for path, kind in typed:
        existing = project.field_types.get(path) or seen.setdefault(path, kind)
        if not compatible(existing, kind):
            result.fail("invalidData", email, user_id)
            return False

    # 5. Apply.
    if user is None:
        user = project.new_user(attach_email, attach_uid)
    else:
        if not project.is_stored(user):
            project.store_user(user)  # a generated list member gets a real profile
        if attach_email is not None:
            if user.placeholder_email and user.email is not None:
                project.users_by_email.pop(user.email, None)
            user.email, user.placeholder_email = attach_email, False
            project.users_by_email[attach_email] = user
        if attach_uid is not None:
            user.user_id = attach_uid
            project.users_by_id[attach_uid] = user
    for path, kind in typed:
        if path not in project.field_types:
            project.field_types[path] = kind
            created.add(path)
    if entry.get("mergeNestedObjects"):
        deep_merge(user.data, data)
    else:
        user.data.update(data)
    user.updated_ms = now_ms()
    return True


def _resolve(
    project: Project,
    email: str | None,
    user_id: str | None,
    prefer_user_id: bool,
    result: BulkResult,
) -> tuple[User | None, str | None, str | None] | None:
    """(existing user or None to create, email to attach, userId to attach), or None
    after recording a failure."""
    by_email = project.find_user(email=email) if email is not None else None
    by_uid = project.find_user(user_id=user_id) if user_id is not None else None

    if email is not None and user_id is not None:
        primary_is_email = project.identity != "userId"
        if by_email is not None and by_uid is not None and not _same_user(by_email, by_uid):
            # The other identifier already belongs to someone else.
            result.fail("conflict", email, user_id, "userId" if primary_is_email else "email")
            return None
        user = by_email or by_uid
        if user is None:
            return None, email, user_id
        attach_email = email if user.email != email else None
        attach_uid = user_id if user.user_id != user_id else None
        if attach_email is not None and not user.placeholder_email and user.email is not None:
            # Changing an existing email is an updateEmail, not a bulkUpdate.
            result.fail("conflict", email, user_id, "email")
            return None
        if attach_uid is not None and user.user_id is not None:
            result.fail("conflict", email, user_id, "userId")
            return None
        return user, attach_email, attach_uid

    if email is not None:
        if by_email is not None:
            return by_email, None, None
        if project.identity == "userId":
            result.fail_unlisted(email, None)
            return None
        return None, email, None

    assert user_id is not None
    if by_uid is not None:
        return by_uid, None, None
    if project.identity == "email" and not prefer_user_id:
        result.fail_unlisted(None, user_id)
        return None
    return None, None, user_id


def _same_user(a: User, b: User) -> bool:
    # Generated list members are rebuilt on each lookup: compare by identity fields.
    return a is b or (a.email == b.email and a.user_id == b.user_id)


def _prune_unknown(
    types: dict[str, str],
    data: dict[str, Any],
    prefix: str,
    dropped: set[str],
    room: list[int] | None,
) -> dict[str, Any]:
    """`data` without the fields the project lacks, each dropped path added to
    `dropped`. `room`: how many new fields may still be created (a one-item list,
    counted down); None = none may (createNewFields false)."""
    kept: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path not in types:
            if value is None and room is None:
                continue
            if value is not None:
                if room is None or room[0] <= 0:
                    dropped.add(path)
                    continue
                room[0] -= 1
        if isinstance(value, dict):
            kept[key] = _prune_unknown(types, value, path + ".", dropped, room)
        else:
            kept[key] = value
    return kept


def deep_merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            deep_merge(current, value)
        else:
            target[key] = value


# -- reads ---------------------------------------------------------------------------------


def user_api_view(user: User) -> dict[str, Any]:
    """GET /api/users/getByEmail etc.: `{"user": {email, userId?, dataFields}}`.
    dataFields also carries Iterable's system fields, as Iterable's does."""
    data: dict[str, Any] = dict(user.data)
    data["email"] = user.email
    data["signupDate"] = _iterable_date(user.signup_ms)
    data["profileUpdatedAt"] = _iterable_date(user.updated_ms)
    view: dict[str, Any] = {"email": user.email, "dataFields": data}
    if user.user_id is not None:
        view["userId"] = user.user_id
        data["userId"] = user.user_id
    return {"user": view}


def _iterable_date(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d} +00:00"


def user_fields(project: Project) -> dict[str, str]:
    fields = dict(SYSTEM_FIELDS)
    fields.update(project.field_types)
    return fields


def require_write_identity(body: Any, endpoint: str) -> tuple[str | None, str | None]:
    """For single-user bodies (users/forget): exactly the UserRequest shape."""
    if not isinstance(body, dict):
        raise bad_json(endpoint, {"obj": [{"msg": ["error.expected.jsobject"], "args": []}]})
    email, user_id = body.get("email"), body.get("userId")
    for name, value in (("email", email), ("userId", user_id)):
        if value is not None and not isinstance(value, str):
            raise bad_json(endpoint, {f"obj.{name}": [{"msg": ["error.expected.jsstring"], "args": []}]})
    if email is None and user_id is None:
        raise bad_params("Either email or userId must be provided")
    if email is not None and not is_valid_email(email):
        raise IterableError(400, "InvalidEmailAddressError", f"Invalid email: {email}")
    return email, user_id
