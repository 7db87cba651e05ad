"""The sandbox's domain model. All state is in memory, in one `SandboxState`.

Nothing is persisted: restarting the process (or POST /_sandbox/reset) forgets every
project, key, user, list, template, webhook and send. A seed file (seed.py) can
recreate a known demo project at start-up.

Concurrency: the API runs on uvicorn's event loop; tests also touch the state
directly from their own thread (`SandboxHandle.state`). Every mutation and every
multi-step read goes through `SandboxState.lock` (an RLock), held briefly.

IDs (projects, keys, lists, templates, webhooks) are global across projects, like
Iterable's, and never reused after a reset within one process, so a stale id from an
earlier test never finds a later test's object.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from liftstack_sandbox.config import ProjectConfig
from liftstack_sandbox.faults import FaultRng
from liftstack_sandbox.ratelimit import RateLimiter

Region = Literal["US", "EU"]
KeyType = Literal["server_side", "read_only", "js", "mobile"]
# How the project identifies users (Iterable: email-based, userID-based, hybrid).
Identity = Literal["email", "userId", "hybrid"]
ListType = Literal["Standard", "Dynamic", "Suppression", "Internal"]

KEY_TYPES: tuple[KeyType, ...] = ("server_side", "read_only", "js", "mobile")
REGIONS: tuple[Region, ...] = ("US", "EU")


DEFAULT_LOCALE = "en"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ApiKey:
    id: int
    value: str
    type: KeyType
    project_id: int
    disabled: bool = False
    name: str = ""

    def public(self, reveal: bool = False) -> dict[str, Any]:
        """Admin view. The value is only shown when asked (on creation): keys never
        appear in listings or logs."""
        view: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "disabled": self.disabled,
            "name": self.name,
            "hint": self.value[:4] + "...",
        }
        if reveal:
            view["key"] = self.value
        return view


@dataclass(slots=True, eq=False)
class User:
    email: str | None
    user_id: str | None
    data: dict[str, Any]
    signup_ms: int
    updated_ms: int
    placeholder_email: bool = False
    forgotten: bool = False

    def profile(self) -> dict[str, Any]:
        """A detached copy for inspection: identifiers plus exactly the fields written."""
        return {
            "email": self.email,
            "userId": self.user_id,
            "dataFields": copy.deepcopy(self.data),
            "signupDate": self.signup_ms,
            "profileUpdatedAt": self.updated_ms,
        }


def normalise_email(email: str) -> str:
    """Iterable stores every email lowercase and matches emails case-insensitively."""
    return email.lower()


def placeholder_email(user_id: str) -> str:
    """Iterable gives userId-only users a placeholder address in the
    `placeholder.email` domain; ours is derived from the userId so it is stable."""
    digest = hashlib.sha1(user_id.encode()).hexdigest()[:24]
    return f"{digest}@placeholder.email"


@dataclass
class GeneratedMembers:
    """N list members described by a pattern instead of stored one by one, so a list
    of a million members costs a few bytes: `{prefix}{i}@{domain}` (and userId
    `{prefix}{i}` when user_ids) for i in [start, start + count).

    Members have no stored profile until something writes to them (bulkUpdate
    materialises a `User`); until then lookups answer an empty profile.
    """

    count: int
    prefix: str = "user"
    domain: str = "example.com"
    start: int = 0
    user_ids: bool = False

    def __post_init__(self) -> None:
        # Emails are lowercase (as Iterable stores them); userIds keep their case.
        self._email_re = re.compile(rf"^{re.escape(self.prefix.lower())}(\d+)@{re.escape(self.domain.lower())}$")
        self._uid_re = re.compile(rf"^{re.escape(self.prefix)}(\d+)$")

    def email(self, i: int) -> str:
        return f"{self.prefix}{i}@{self.domain}".lower()

    def user_id(self, i: int) -> str | None:
        return f"{self.prefix}{i}" if self.user_ids else None

    def _index(self, match: re.Match[str] | None) -> int | None:
        if match is None:
            return None
        digits = match.group(1)
        i = int(digits)
        if str(i) != digits or not self.start <= i < self.start + self.count:
            return None
        return i

    def index_of_email(self, email: str) -> int | None:
        return self._index(self._email_re.match(email))

    def index_of_user_id(self, user_id: str) -> int | None:
        return self._index(self._uid_re.match(user_id)) if self.user_ids else None

    def describe(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "prefix": self.prefix,
            "domain": self.domain,
            "start": self.start,
            "userIds": self.user_ids,
        }


@dataclass
class Criterion:
    """One condition of a dynamic list (segment), evaluated live over stored users."""

    field: str  # dotted path into dataFields
    op: Literal["equals", "notEquals", "exists"] = "equals"
    value: Any = None

    def matches(self, data: dict[str, Any]) -> bool:
        found, value = lookup_path(data, self.field.split("."))
        if self.op == "exists":
            return found and value is not None
        if self.op == "equals":
            return found and value == self.value
        return not found or value != self.value


@dataclass
class SandboxList:
    id: int
    name: str
    list_type: ListType
    created_ms: int
    description: str | None = None
    members: list[User] = field(default_factory=list)
    generated: GeneratedMembers | None = None
    criteria: list[Criterion] | None = None

    def api_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "listType": self.list_type,
            "createdAt": self.created_ms,
        }
        if self.description is not None:
            view["description"] = self.description
        return view


@dataclass
class Template:
    """An email template. `fields` holds the spec's ApiEmailTemplateModel content
    fields (name, subject, html, clientTemplateId, ...) exactly as last written."""

    id: int
    fields: dict[str, Any]
    created_ms: int
    updated_ms: int
    creator_user_id: str
    message_type_id: int
    template_type: Literal["Base", "Blast", "Triggered", "Workflow"] = "Base"
    campaign_id: int | None = None
    # Eventual consistency (config template_read_delay_ms): reads by templateId
    # answer as if it did not exist until this moment (epoch ms).
    readable_from_ms: int = 0

    @property
    def name(self) -> str:
        return str(self.fields.get("name") or "")

    @property
    def client_template_id(self) -> str | None:
        return self.fields.get("clientTemplateId")

    @property
    def locales(self) -> list[str]:
        """Locales with content: Iterable answers locale strings ("en")."""
        return [str(self.fields.get("locale") or DEFAULT_LOCALE)]

    def readable(self) -> bool:
        return now_ms() >= self.readable_from_ms


@dataclass
class Webhook:
    """A system webhook. Auth secrets stay in the sandbox; the API view omits them."""

    id: int
    endpoint: str
    auth_type: Literal["NoAuth", "Basic", "OAuth2"] = "NoAuth"
    enabled: bool = True
    blast_send_enabled: bool = True
    triggered_send_enabled: bool = True
    # OAuth2: `Authorization: <token_type> <token>`; Basic: the token bare (system
    # webhooks) or RFC 7617 from username/password (journey webhooks; send.py).
    token: str | None = None
    token_type: str = "OAuth2"
    username: str | None = None
    password: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def api_view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "authType": self.auth_type,
            "enabled": self.enabled,
            "blastSendEnabled": self.blast_send_enabled,
            "triggeredSendEnabled": self.triggered_send_enabled,
            "channelIds": [],
            "messageTypeIds": [],
        }


@dataclass(eq=False)
class Project:
    id: int
    name: str
    region: Region
    identity: Identity
    config: ProjectConfig
    message_type_id: int
    creator_user_id: str = "sandbox-owner@example.com"
    created_ms: int = field(default_factory=now_ms)
    keys: dict[str, ApiKey] = field(default_factory=dict)
    users_by_email: dict[str, User] = field(default_factory=dict)
    users_by_id: dict[str, User] = field(default_factory=dict)
    forgotten_emails: set[str] = field(default_factory=set)
    forgotten_user_ids: set[str] = field(default_factory=set)
    # Field path (dotted, as getFields reports it) -> type fixed by its first write.
    field_types: dict[str, str] = field(default_factory=dict)
    lists: dict[int, SandboxList] = field(default_factory=dict)
    templates: dict[int, Template] = field(default_factory=dict)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    # What each recipient was sent (send.py), and the webhook events generated.
    sends: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # (bucket name, HTTP status) -> count, for tests and benchmarks.
    stats: Counter[tuple[str, int]] = field(default_factory=Counter)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    fault_rng: FaultRng = field(default_factory=FaultRng)

    def __post_init__(self) -> None:
        self.limiter.reset(self.config.burst_periods)

    def set_config(self, config: ProjectConfig) -> None:
        if config.burst_periods != self.config.burst_periods or (config.rate_limits and not self.config.rate_limits):
            # New capacity, or limits switched back on: start with empty buckets.
            self.limiter.reset(config.burst_periods)
        self.fault_rng.reset()
        self.config = config

    # -- users ------------------------------------------------------------------

    def generated_specs(self) -> list[GeneratedMembers]:
        return [lst.generated for lst in self.lists.values() if lst.generated is not None]

    def find_user(self, email: str | None = None, user_id: str | None = None) -> User | None:
        """The stored user, or a virtual (unstored) one if the identifier belongs to a
        generated list member. Forgotten users are gone. Emails match case-insensitively."""
        if email is not None:
            email = normalise_email(email)
            user = self.users_by_email.get(email)
            if user is not None:
                return user
            if email in self.forgotten_emails:
                return None
            for spec in self.generated_specs():
                i = spec.index_of_email(email)
                if i is not None:
                    return self._virtual(spec, i)
            return None
        if user_id is not None:
            user = self.users_by_id.get(user_id)
            if user is not None:
                return user
            if user_id in self.forgotten_user_ids:
                return None
            for spec in self.generated_specs():
                i = spec.index_of_user_id(user_id)
                if i is not None:
                    return self._virtual(spec, i)
        return None

    def _virtual(self, spec: GeneratedMembers, i: int) -> User | None:
        email, user_id = spec.email(i), spec.user_id(i)
        if email in self.forgotten_emails or (user_id and user_id in self.forgotten_user_ids):
            return None
        # Another identifier of the same member may already be stored.
        stored = self.users_by_email.get(email) or (user_id and self.users_by_id.get(user_id))
        if stored:
            return stored
        created = self.created_ms
        return User(email=email, user_id=user_id, data={}, signup_ms=created, updated_ms=created)

    def is_stored(self, user: User) -> bool:
        if user.email is not None:
            return self.users_by_email.get(user.email) is user
        return user.user_id is not None and self.users_by_id.get(user.user_id) is user

    def store_user(self, user: User) -> User:
        if user.email is not None:
            self.users_by_email[user.email] = user
        if user.user_id is not None:
            self.users_by_id[user.user_id] = user
        return user

    def new_user(self, email: str | None, user_id: str | None) -> User:
        placeholder = False
        if email is not None:
            email = normalise_email(email)
        if email is None:
            assert user_id is not None
            email, placeholder = placeholder_email(user_id), True
        ts = now_ms()
        user = User(email, user_id, {}, ts, ts, placeholder_email=placeholder)
        return self.store_user(user)

    def forget(self, email: str | None = None, user_id: str | None = None) -> bool:
        """GDPR forget: delete the profile and refuse future writes for its ids."""
        if email is not None:
            email = normalise_email(email)
        user = self.find_user(email=email, user_id=user_id)
        if email is not None:
            self.forgotten_emails.add(email)
        if user_id is not None:
            self.forgotten_user_ids.add(user_id)
        if user is None:
            return False
        user.forgotten = True
        if user.email is not None:
            self.forgotten_emails.add(user.email)
            self.users_by_email.pop(user.email, None)
        if user.user_id is not None:
            self.forgotten_user_ids.add(user.user_id)
            self.users_by_id.pop(user.user_id, None)
        return True


def lookup_path(data: Any, path: list[str]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


class SandboxState:
    """Every project. Create through the methods here (or the admin API)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.projects: dict[int, Project] = {}
        self.keys: dict[str, ApiKey] = {}
        self._ids = itertools.count(1)
        self._list_ids = itertools.count(1001)
        self._template_ids = itertools.count(100_001)
        self._webhook_ids = itertools.count(501)
        self._key_ids = itertools.count(1)

    def reset(self) -> None:
        with self.lock:
            self.projects.clear()
            self.keys.clear()

    # -- projects and keys ---------------------------------------------------------

    def create_project(
        self,
        name: str | None = None,
        region: Region = "US",
        identity: Identity = "email",
        config: ProjectConfig | None = None,
    ) -> Project:
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}")
        with self.lock:
            pid = next(self._ids)
            project = Project(
                id=pid,
                name=name or f"sandbox-project-{pid}",
                region=region,
                identity=identity,
                config=config or ProjectConfig(),
                message_type_id=10_000 + pid,
            )
            self.projects[pid] = project
            return project

    def project(self, project_id: int) -> Project:
        with self.lock:
            try:
                return self.projects[project_id]
            except KeyError:
                raise KeyError(f"no project {project_id}") from None

    def create_key(
        self,
        project: Project,
        type: KeyType = "server_side",
        disabled: bool = False,
        value: str | None = None,
        name: str = "",
    ) -> ApiKey:
        if type not in KEY_TYPES:
            raise ValueError(f"key type must be one of {KEY_TYPES}")
        with self.lock:
            # Server-side keys are 32 lowercase hex characters; we use the same shape
            # for every type so nothing depends on the format.
            value = value or secrets.token_hex(16)
            if value in self.keys:
                raise ValueError("that key already exists")
            key = ApiKey(next(self._key_ids), value, type, project.id, disabled, name)
            self.keys[value] = key
            project.keys[value] = key
            return key

    def find_key(self, value: str) -> ApiKey | None:
        with self.lock:
            return self.keys.get(value)

    def key_by_id(self, project: Project, key_id: int) -> ApiKey:
        with self.lock:
            for key in project.keys.values():
                if key.id == key_id:
                    return key
        raise KeyError(f"no key {key_id} in project {project.id}")

    def next_list_id(self) -> int:
        return next(self._list_ids)

    def next_template_id(self) -> int:
        return next(self._template_ids)

    def next_webhook_id(self) -> int:
        return next(self._webhook_ids)
