"""Demo sign-in: the console mints a user JWT (as liftstack's identity service would)
and keeps it in an HttpOnly cookie; every call to a service carries it as a bearer.

The cookie holds the token only; who the user is comes from verifying it, so a
tampered or expired cookie is simply "signed out".
"""

from __future__ import annotations

import jwt
from starlette.requests import Request
from starlette.responses import Response

from liftstack_shared.auth import Principal, Role, issue_user_token
from liftstack_console.settings import ConsoleSettings

COOKIE = "lf_session"
TTL_S = 12 * 3600
DEMO_USERS = {Role.OWNER: "demo-owner", Role.ADMIN: "demo-admin", Role.MEMBER: "demo-member"}


def sign_in(response: Response, settings: ConsoleSettings, role: Role) -> str:
    token = issue_user_token(
        settings, DEMO_USERS[role], settings.demo_workspace, role, ttl_s=TTL_S
    )
    response.set_cookie(
        COOKIE, token, max_age=TTL_S, httponly=True, samesite="lax",
        secure=settings.cookie_secure, path="/",
    )
    return token


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")


def current(request: Request, settings: ConsoleSettings) -> tuple[Principal, str] | None:
    """The signed-in user and their token, or None."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        claims = jwt.decode(
            token, settings.jwt_secret.get_secret_value(), algorithms=["HS256"],
            options={"require": ["exp", "sub"]},
        )
        principal = Principal(str(claims["sub"]), str(claims["ws"]), Role(claims["role"]))
    except (jwt.PyJWTError, KeyError, ValueError):
        return None
    return principal, token
