"""Per-project sandbox configuration: rate limiting, fidelity switches for the
behaviours iterable-api.md marks UNCONFIRMED, and fault injection.

Configuration is per project so that tests sharing one sandbox never see each other's
faults or limits. Changed with PATCH /_sandbox/projects/{pid}/config (a deep merge)
or `SandboxHandle.configure(...)`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ErrorStatus = Literal[429, 500, 502, 503, 504]


def _default_error_statuses() -> list[ErrorStatus]:
    return [500, 503]


class FaultConfig(BaseModel):
    """Faults applied to Iterable API requests (never to /_sandbox or /healthz).

    Order of evaluation per request: drop_next, fail_next, drop_rate, error_rate;
    latency is added to every request that is answered. Requests answered by a fault
    do not consume rate-limit budget (they never reached the limiter).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Only requests whose path (without the /us or /eu prefix) starts with one of these
    # are affected, e.g. ["/api/users/bulkUpdate"]. None = every API path.
    paths: list[str] | None = None
    # Fraction (0..1) of requests answered with a random status from error_statuses.
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: list[ErrorStatus] = Field(default_factory=lambda: _default_error_statuses())
    # The next N matching requests answer fail_status (a burst); counts down to 0.
    fail_next: int = Field(default=0, ge=0)
    fail_status: ErrorStatus = 503
    # Fraction of requests whose connection is dropped without any response.
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    # The next N matching requests are dropped; counts down to 0.
    drop_next: int = Field(default=0, ge=0)
    # Added latency, in milliseconds, plus a uniform random jitter in [0, jitter).
    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    # lists/getUsers: drop the connection after this many lines have been sent.
    stream_cut_after_lines: int | None = Field(default=None, ge=0)
    # lists/getUsers: insert an invalid line (not an email/userId) every N lines, and
    # repeat the previous line every M lines (Iterable exports are not deduplicated).
    stream_invalid_every: int | None = Field(default=None, ge=1)
    stream_duplicate_every: int | None = Field(default=None, ge=1)
    # users/bulkUpdate: answer failCount but name no failed user in any list (a
    # partial answer), so callers' handling of unattributed failures can be tested.
    bulk_unnamed_failures: bool = False
    # users/bulkUpdate: these users' updates fail (named in
    # failedUpdates.invalidDataEmails / invalidDataUserIds) and are not applied, the
    # rest of the request succeeds: a per-user write failure, so the profile keeps no
    # lf_assignments and a send renders the template's default (control) branch.
    bulk_fail_users: list[str] = Field(default_factory=list, max_length=100_000)
    # Seed for the random choices above (None = non-deterministic).
    seed: int | None = None


class ProjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Leaky-bucket limits at Iterable's published numbers (ratelimit.py).
    rate_limits: bool = True
    # Whether a 429 carries `Retry-After: <seconds>` (UNCONFIRMED for Iterable, so
    # clients must cope with both). Off by default: the harder case for a client.
    retry_after: bool = False
    # Bucket capacity in periods of the published limit: 1.0 = one second's worth for
    # per-second limits (5 for bulkUpdate), one minute's worth for per-minute ones.
    burst_periods: float = Field(default=1.0, gt=0)

    # users/bulkUpdate body cap. The spec says "4MB"; we enforce the stricter
    # 4,000,000 bytes so a client that passes here passes at Iterable. Iterable's exact
    # answer is undocumented: 413 (what an edge proxy answers) by default, or 400.
    body_limit_bytes: int = Field(default=4_000_000, ge=1)
    body_too_large_status: Literal[400, 413] = 413
    # The project setting used when a bulkUpdate omits createNewFields.
    create_new_fields: bool = True
    # Iterable's soft limit of unique profile fields per project (nested keys count):
    # past it, new fields are dropped and listed in filteredOutFields even with
    # createNewFields true, and the user still counts as a success. None = no limit.
    field_limit: int | None = Field(default=1000, ge=0)

    # The spec says upsert matches by clientTemplateId in one place and by name in
    # another (iterable-api.md): clientTemplateId by default, switchable.
    template_upsert_match: Literal["clientTemplateId", "name"] = "clientTemplateId"
    # Template createdAt/updatedAt. Iterable sends epoch milliseconds (its official
    # client's zod schemas require numbers, and its integration tests run them against
    # the live API); the spec types them `string` `date-time`. "iso" is kept to test a
    # client's tolerance of the spec's reading.
    template_dates: Literal["iso", "epoch_ms"] = "epoch_ms"
    # GET /api/templates' totalTemplatesCount: Iterable sends a number (the official
    # client requires it); the spec types it `object`, an artefact. Off = omitted.
    templates_total_count: bool = True
    # getByClientTemplateId for an id no template has. Iterable's spec lists 200, 400
    # and 401: "empty" answers 200 {"templates": []}; "400" answers 400 NotFound-style
    # ("No templates found for clientTemplateId ..."); "404" answers 404 NotFound.
    unknown_client_template_id: Literal["empty", "400", "404"] = "empty"
    # Eventual consistency: a template created by email/upsert answers email/get with
    # 404 NotFound for this many milliseconds (Iterable applies writes eventually).
    # 0 = read-after-write is immediate.
    template_read_delay_ms: int = Field(default=0, ge=0)

    # lists/getUsers writes this many lines per chunk of the streamed body.
    stream_chunk_lines: int = Field(default=1000, ge=1)

    faults: FaultConfig = Field(default_factory=lambda: FaultConfig())

    def merged(self, changes: dict[str, Any]) -> ProjectConfig:
        """A new config with `changes` deep-merged in (validated)."""
        current = self.model_dump()
        for key, value in changes.items():
            if key == "faults" and isinstance(value, dict):
                current["faults"].update(value)
            else:
                current[key] = value
        return ProjectConfig.model_validate(current)
