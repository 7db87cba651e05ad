"""Who is calling: users (signed JWTs with a workspace role) or other services.

User tokens are HS256 JWTs issued by liftstack's identity service with claims
`sub` (user id), `ws` (workspace id) and `role` (owner/admin/member). Service calls
carry a separate shared token in `X-Liftstack-Service-Token`; a user JWT is never
accepted there and a service token is never accepted as a user.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt
from starlette.requests import Request

from liftstack_shared.errors import ApiError
from liftstack_shared.settings import CommonSettings

SERVICE_TOKEN_HEADER = "X-Liftstack-Service-Token"
_ALGORITHM = "HS256"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"

    @property
    def manages(self) -> bool:
        """Owners and Admins manage integrations; Members only select them."""
        return self in (Role.OWNER, Role.ADMIN)


@dataclass(frozen=True)
class Principal:
    user_id: str
    workspace_id: str
    role: Role


def issue_user_token(
    settings: CommonSettings, user_id: str, workspace_id: str, role: Role, ttl_s: int = 3600
) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "ws": workspace_id, "role": str(role), "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, _jwt_key(settings), algorithm=_ALGORITHM)


def principal_from_request(request: Request, settings: CommonSettings) -> Principal:
    """The caller of a user-facing endpoint, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "A bearer token is required.")
    try:
        claims = jwt.decode(
            token, _jwt_key(settings), algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]}
        )
        return Principal(str(claims["sub"]), str(claims["ws"]), Role(claims["role"]))
    except (jwt.PyJWTError, KeyError, ValueError):
        raise ApiError(401, "unauthenticated", "The bearer token is invalid or expired.") from None


def require_manager(principal: Principal) -> None:
    if not principal.role.manages:
        raise ApiError(403, "forbidden", "Only workspace Owners and Admins can do this.")


def require_service(request: Request, settings: CommonSettings) -> None:
    """Internal endpoints: only other liftstack services, never a user token."""
    expected = settings.service_token.get_secret_value()
    given = request.headers.get(SERVICE_TOKEN_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthenticated", "A valid service token is required.")


def service_headers(settings: CommonSettings) -> dict[str, str]:
    return {SERVICE_TOKEN_HEADER: settings.service_token.get_secret_value()}


def _jwt_key(settings: CommonSettings) -> str:
    key = settings.jwt_secret.get_secret_value()
    if not key:
        raise ApiError(500, "misconfigured", "LIFTSTACK_JWT_SECRET is not set.")
    return key
