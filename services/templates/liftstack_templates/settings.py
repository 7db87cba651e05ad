"""The templates service's settings: the common ones plus its own."""

from __future__ import annotations

from pydantic import Field

from liftstack_shared.settings import CommonSettings


class TemplatesSettings(CommonSettings):
    port: int = 8104
    # shared/handlebars (render-server.js + node_modules); None: found from the repo.
    handlebars_dir: str | None = None
    # Whole-email HTML for every variant travels in one request body.
    max_body_bytes: int = Field(default=8_000_000, gt=0)
