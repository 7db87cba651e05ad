"""One configuration schema for every process, local or in containers.

Every setting is an environment variable with the `LIFTSTACK_` prefix, so the local
runner (`deploy/local/stack.py`), docker-compose and CI all configure services the
same way. A service subclasses `CommonSettings` only to add what is its own (its port).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFTSTACK_", extra="ignore")

    # Infrastructure
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongo_url: str = "mongodb://127.0.0.1:27017/"
    mongo_db: str = "liftstack"
    # Prefix for every topic and consumer group, so several stacks (or test runs)
    # can share one Kafka cluster without seeing each other's messages.
    topic_prefix: str = ""
    # How `ensure_topics` creates topics: copies of each partition, and how many of
    # them must have a write before it is acknowledged (acks=all). 1/None suit one
    # local broker; a cluster wants 3 and 2, so losing one broker loses no
    # acknowledged message and writes go on.
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int | None = Field(default=None, ge=1)

    # Secrets. SecretStr keeps them out of reprs and logs.
    # Comma-separated Fernet-style master keys, newest first (rotation = prepend).
    master_keys: SecretStr = SecretStr("")
    # Shared credential services use for internal endpoints; never a user token.
    service_token: SecretStr = SecretStr("")

    # User tokens: access tokens of the OpenID Connect identity provider, verified
    # against its published keys (see auth.py). No service holds a signing key.
    oidc_issuer: str = ""
    oidc_jwks_url: str = ""
    # The `aud` user tokens must carry (the liftstack API as the provider knows it).
    oidc_audience: str = "urn:liftstack:api"
    # Which claims of the token say the user's workspace and role.
    oidc_workspace_claim: str = "workspace"
    oidc_role_claim: str = "role"

    # Where services find each other.
    connections_url: str = "http://127.0.0.1:8101"
    ingest_public_url: str = "http://127.0.0.1:8102"
    # Overrides Iterable's hosts (US/EU) with one base URL: the project's sandbox.
    iterable_base_url: str | None = None

    host: str = "127.0.0.1"
    port: int = 8100
    log_level: str = "INFO"
    log_json: bool = False

    # Every HTTP request body is capped at this many bytes (413 past it); a service
    # may lower it for particular routes (ingest's webhooks: 256 KiB).
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # How long a MongoDB operation waits to find a server: short, so a request
    # answers 503 soon when MongoDB is away instead of hanging.
    mongo_server_selection_timeout_ms: int = Field(default=3000, gt=0)

    # Headroom kept below Iterable's published rate limits (0.9 = use 90%).
    iterable_rate_headroom: float = Field(default=0.9, gt=0, le=1)

    def topic(self, name: str) -> str:
        """The physical topic name for a logical one (see `topics.py`)."""
        return f"{self.topic_prefix}{name}"
