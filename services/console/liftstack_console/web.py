"""What every console route shares: its dependencies (`Deps`, built by app.py),
sign-in checks, rendering and error answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from liftstack_console import session
from liftstack_console.demo_signer import DemoSigner
from liftstack_console.oidc import OidcClient
from liftstack_console.services import Services
from liftstack_console.session import SessionStore
from liftstack_console.settings import ConsoleSettings
from liftstack_shared import bounds
from liftstack_shared.auth import Principal
from liftstack_shared.http import read_body
from liftstack_shared.service_calls import ServiceCallError

HERE = Path(__file__).parent
STATUS_LABEL = {"active": "Active", "connected": "Connected", "error": "Error"}


@dataclass(frozen=True)
class Deps:
    """What the console's handlers need; built by app.py."""

    settings: ConsoleSettings
    services: Services
    sessions: SessionStore
    templates: Jinja2Templates
    # The sign-in methods this deployment has (at least one).
    demo: DemoSigner | None
    oidc: OidcClient | None


@dataclass(frozen=True)
class User:
    principal: Principal
    token: str

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def role(self) -> str:
        return str(self.principal.role)

    @property
    def manages(self) -> bool:
        return self.principal.role.manages


class SignInRequired(Exception):
    pass


def deps(request: Request) -> Deps:
    return cast(Deps, request.app.state.deps)


def user(request: Request) -> User:
    found = session.current(request)
    if found is None:
        raise SignInRequired
    return User(found.principal, found.token)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["when"] = _when
    env.filters["num"] = lambda n: "–" if n is None else f"{int(n):,}"
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * x:.1f}%"
    env.filters["signed_pct"] = lambda x: "–" if x is None else f"{100 * x:+.1f}%"
    # A difference of two rates, in percentage points.
    env.filters["signed_points"] = lambda x: "–" if x is None else f"{100 * x:+.2f} pts"
    return templates


def _when(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    found = session.current(request)
    context.setdefault("user", User(found.principal, found.token) if found else None)
    context.setdefault("demo_signin", deps(request).settings.demo_signin)
    context.setdefault("status_label", STATUS_LABEL)
    return deps(request).templates.TemplateResponse(request, name, context, status_code=status)


def error_page(request: Request, exc: ServiceCallError | Exception, title: str = "Something went wrong") -> Response:
    if isinstance(exc, ServiceCallError):
        return page(request, "error.html", status=exc.status, title=title, message=exc.message)
    return page(request, "error.html", status=500, title=title, message=str(exc))


async def json_value(request: Request) -> Any:
    """The request's JSON (None if the body is empty), read within the body cap and
    parsed within `liftstack_shared.bounds` (depth, int64, encoding): 400 otherwise."""
    raw = await read_body(request, deps(request).settings.max_body_bytes)
    if not raw.strip():
        return None
    try:
        return bounds.loads_json(raw)
    except bounds.OutOfBounds as exc:
        raise ServiceCallError(400, exc.code, exc.message, exc.field) from None


def api_error(exc: ServiceCallError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status)


async def on_signin_required(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse(
            {"error": {"code": "unauthenticated", "message": "Sign in first.", "field": None}},
            status_code=401,
        )
    return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)


async def on_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceCallError)
    if request.url.path.startswith("/api/"):
        return api_error(exc)
    return error_page(request, exc)
