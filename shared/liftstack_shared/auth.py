"""Who is calling: users (access tokens from the identity provider) or other services.

User tokens are JWTs signed by the OpenID Connect identity provider with an
asymmetric key (RS256, ES256 or EdDSA). Services hold only the provider's *public*
keys, fetched from its JWKS URL, so no service can mint a user token. A token is
accepted when its signature verifies against a published key and its issuer,
audience and expiry are right; the workspace and role come from claims whose names
are configurable (`LIFTSTACK_OIDC_WORKSPACE_CLAIM`, `LIFTSTACK_OIDC_ROLE_CLAIM`).

Keys are cached; a token whose `kid` is not in the cache makes one refetch of the
JWKS (rate-limited, so random kids can't turn every request into a fetch), which is
how rotated keys are picked up. The fetch itself is synchronous (PyJWT's
PyJWKClient, 5 s timeout), so it briefly holds the event loop; it only happens on a
cold cache, every 5 minutes, or for a new kid.

Service calls carry a separate shared token in `X-Liftstack-Service-Token`; a user
JWT is never accepted there and a service token is never accepted as a user.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from starlette.requests import Request

from liftstack_shared.errors import ApiError
from liftstack_shared.settings import CommonSettings

SERVICE_TOKEN_HEADER = "X-Liftstack-Service-Token"
# Asymmetric only: HS256 (a shared secret anyone holding it could sign with) and
# "none" are refused before any key is looked up.
ALGORITHMS = ("RS256", "ES256", "EdDSA")
# Clock skew tolerated on exp/iat/nbf.
LEEWAY_S = 10


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


class InvalidToken(Exception):
    """The token is not a valid user token (the message says why; never the token)."""


class NoWorkspace(InvalidToken):
    """A genuine token of a user who belongs to no liftstack workspace."""


class IdentityProviderUnavailable(Exception):
    """The JWKS could not be fetched."""


class TokenVerifier:
    """Verifies user access tokens against one issuer's published keys."""

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        workspace_claim: str,
        role_claim: str,
        cache_s: int = 300,
        min_refresh_interval_s: float = 5.0,
        fetch_timeout_s: float = 5.0,
    ) -> None:
        self.issuer, self.audience = issuer, audience
        self.workspace_claim, self.role_claim = workspace_claim, role_claim
        self._jwks = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=cache_s,
            cache_keys=False,
            timeout=fetch_timeout_s,
        )
        self._min_refresh_interval_s = min_refresh_interval_s
        self._last_refresh = float("-inf")
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no key id")
        key = self._signing_key(kid)
        try:  # a key of another type than `alg` fails here too (InvalidKeyError)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[str(alg)],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        workspace = claims.get(self.workspace_claim)
        if not isinstance(workspace, str) or not workspace:
            raise NoWorkspace(f"no {self.workspace_claim!r} claim")
        try:
            role = Role(str(claims.get(self.role_claim)))
        except ValueError:
            raise InvalidToken(f"no valid {self.role_claim!r} claim") from None
        return Principal(str(claims["sub"]), workspace, role)

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        try:
            key = _find(self._jwks.get_jwk_set(), kid)
            if key is None:
                # An unknown kid: the provider may have rotated. Refetch, but at most
                # once per interval, whatever kids callers make up.
                with self._lock:
                    due = time.monotonic() - self._last_refresh >= self._min_refresh_interval_s
                    if due:
                        self._last_refresh = time.monotonic()
                if due:
                    key = _find(self._jwks.get_jwk_set(refresh=True), kid)
        except jwt.PyJWKClientConnectionError:
            raise IdentityProviderUnavailable from None
        except jwt.PyJWTError:
            raise InvalidToken("no usable keys") from None
        if key is None:
            raise InvalidToken("unknown key id")
        return key


def _find(jwk_set: jwt.PyJWKSet, kid: str) -> jwt.PyJWK | None:
    return next((k for k in jwk_set.keys if k.key_id == kid), None)


_verifiers: dict[tuple[str, ...], TokenVerifier] = {}
_verifiers_lock = threading.Lock()


def verifier(settings: CommonSettings) -> TokenVerifier:
    """The process's verifier for these settings (one JWKS cache per provider)."""
    if not settings.oidc_issuer or not settings.oidc_jwks_url:
        raise ApiError(500, "misconfigured", "LIFTSTACK_OIDC_ISSUER and LIFTSTACK_OIDC_JWKS_URL must be set.")
    key = (
        settings.oidc_jwks_url,
        settings.oidc_issuer,
        settings.oidc_audience,
        settings.oidc_workspace_claim,
        settings.oidc_role_claim,
    )
    with _verifiers_lock:
        found = _verifiers.get(key)
        if found is None:
            found = _verifiers[key] = TokenVerifier(
                jwks_url=settings.oidc_jwks_url,
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                workspace_claim=settings.oidc_workspace_claim,
                role_claim=settings.oidc_role_claim,
            )
        return found


def verify_user_token(token: str, settings: CommonSettings) -> Principal:
    """The principal of a user access token, or ApiError 401/403/503."""
    try:
        return verifier(settings).verify(token)
    except NoWorkspace:
        raise ApiError(403, "no_workspace", "This account belongs to no liftstack workspace.") from None
    except InvalidToken:
        raise ApiError(401, "unauthenticated", "The bearer token is invalid or expired.") from None
    except IdentityProviderUnavailable:
        raise ApiError(
            503, "identity_provider_unavailable", "The identity provider's keys could not be fetched."
        ) from None


def principal_from_request(request: Request, settings: CommonSettings) -> Principal:
    """The caller of a user-facing endpoint, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "A bearer token is required.")
    return verify_user_token(token.strip(), settings)


def require_manager(principal: Principal) -> None:
    if not principal.role.manages:
        raise ApiError(403, "forbidden", "Only workspace Owners and Admins can do this.")


def require_workspace(principal: Principal, workspace_id: str, message: str = "Not found.") -> None:
    """The token's workspace must be the one the path names. A mismatch answers 404,
    not 403, the same as "no such thing": a caller can't probe which workspaces or
    ids exist."""
    if principal.workspace_id != workspace_id:
        raise ApiError(404, "not_found", message)


def workspace_caller(
    request: Request, settings: CommonSettings, workspace_id: str, manage: bool = False, message: str = "Not found."
) -> Principal:
    """The caller of a workspace-scoped endpoint: a valid user token for that
    workspace (404 otherwise), and an Owner or Admin when `manage` (403 otherwise)."""
    principal = principal_from_request(request, settings)
    require_workspace(principal, workspace_id, message)
    if manage:
        require_manager(principal)
    return principal


def require_service(request: Request, settings: CommonSettings) -> None:
    """Internal endpoints: only other liftstack services, never a user token."""
    expected = settings.service_token.get_secret_value()
    given = request.headers.get(SERVICE_TOKEN_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthenticated", "A valid service token is required.")


def service_headers(settings: CommonSettings) -> dict[str, str]:
    return {SERVICE_TOKEN_HEADER: settings.service_token.get_secret_value()}
