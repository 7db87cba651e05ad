"""Process settings, from LIFTSTACK_SANDBOX_* environment variables."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFTSTACK_SANDBOX_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8200
    # A JSON seed file (see seed.py) applied at start-up, e.g. a demo project with a
    # known key. Empty = start with no projects.
    seed_file: str | None = None
    log_level: str = "INFO"
    log_json: bool = False
