"""The sandbox application: Iterable's API (api.py) under /api, /us/api and /eu/api,
the admin API (admin.py) under /_sandbox, and /healthz.

    app = create_app()                  # a fresh, empty state
    app = create_app(state)             # share a state object (the pytest fixture)
    app.state.sandbox                   # the SandboxState
"""

from __future__ import annotations

from starlette.applications import Starlette

from liftstack_sandbox import admin, api
from liftstack_sandbox.middleware import SandboxMiddleware
from liftstack_sandbox.state import SandboxState


class SandboxApp(SandboxMiddleware):
    """The ASGI app to serve: the Starlette app inside the region/drop middleware."""

    def __init__(self, starlette: Starlette, state: SandboxState) -> None:
        super().__init__(starlette)
        self.starlette = starlette
        self.sandbox = state


def create_app(state: SandboxState | None = None) -> SandboxApp:
    state = state or SandboxState()
    starlette = Starlette(routes=[*admin.ROUTES, *api.ROUTES])
    starlette.state.sandbox = state
    return SandboxApp(starlette, state)
