"""Sign-in through the OpenID Connect provider: authorization code flow with PKCE
(S256), the console as a confidential client. Authlib builds the authorization
request and redeems the code; PyJWT checks the ID token (signature against the
provider's JWKS, issuer, audience = our client id, expiry, nonce); the access token,
which is what the console hands every service, is checked by the same shared
verifier the services use (`liftstack_shared.auth`), so the workspace and role the
console shows are exactly the ones the services will enforce.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from liftstack_console.settings import ConsoleSettings
from liftstack_shared.auth import ALGORITHMS, LEEWAY_S, Principal, verify_user_token

CALLBACK_PATH = "/auth/callback"


class SignInError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    access_token: str
    expires_at: datetime


class OidcClient:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.redirect_uri = settings.console_public_url.rstrip("/") + CALLBACK_PATH
        self._metadata: dict[str, Any] | None = None
        self._id_token_keys: jwt.PyJWKClient | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            url = self.settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                async with httpx.AsyncClient(timeout=10) as http:
                    response = await http.get(url)
                    response.raise_for_status()
                    metadata = response.json()
            except (httpx.HTTPError, ValueError):
                raise SignInError(
                    503, "identity_provider_unavailable", "The identity provider did not answer."
                ) from None
            if metadata.get("issuer") != self.settings.oidc_issuer:
                raise SignInError(
                    503,
                    "identity_provider_misconfigured",
                    "The identity provider's issuer does not match LIFTSTACK_OIDC_ISSUER.",
                )
            self._metadata = metadata
        return self._metadata

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.oidc_client_id,
            client_secret=self.settings.oidc_client_secret.get_secret_value(),
            scope=self.settings.oidc_scopes,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            timeout=15,
        )

    async def authorization_url(self, state: str, nonce: str, code_verifier: str) -> str:
        metadata = await self.metadata()
        extra = {}
        if self.settings.oidc_audience_param:
            extra[self.settings.oidc_audience_param] = self.settings.oidc_audience
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                nonce=nonce,
                code_verifier=code_verifier,
                **extra,
            )
        return str(url)

    async def finish(self, code: str, code_verifier: str, nonce: str) -> SignedIn:
        metadata = await self.metadata()
        async with self._client() as client:
            try:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
            except Exception:  # noqa: BLE001 - Authlib raises OAuthError or httpx errors
                raise SignInError(400, "signin_failed", "The identity provider refused the sign-in.") from None
        access_token, id_token = token.get("access_token"), token.get("id_token")
        if not access_token or not id_token:
            raise SignInError(400, "signin_failed", "The identity provider sent no tokens.")
        await asyncio.to_thread(self._check_id_token, str(id_token), nonce, metadata["jwks_uri"])
        # The shared verifier raises ApiError (401/403/503) for a token services would refuse.
        principal = await asyncio.to_thread(verify_user_token, str(access_token), self.settings)
        exp = jwt.decode(str(access_token), options={"verify_signature": False}).get("exp", 0)
        return SignedIn(principal, str(access_token), datetime.fromtimestamp(int(exp), tz=UTC))

    def _check_id_token(self, id_token: str, nonce: str, jwks_uri: str) -> None:
        if self._id_token_keys is None:
            self._id_token_keys = jwt.PyJWKClient(jwks_uri, cache_jwk_set=True, lifespan=300, timeout=5)
        try:
            key = self._id_token_keys.get_signing_key_from_jwt(id_token)
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=self.settings.oidc_client_id,
                issuer=self.settings.oidc_issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "nonce"]},
            )
        except jwt.PyJWTError:
            raise SignInError(400, "signin_failed", "The identity provider's ID token is invalid.") from None
        if claims.get("nonce") != nonce:
            raise SignInError(400, "signin_failed", "The ID token does not belong to this sign-in.")

    async def end_session_url(self, after: str) -> str | None:
        """Where to send the browser to end the provider's session too, if it can."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except SignInError:
            return None
        if not endpoint:
            return None
        # client_id (not id_token_hint) names us: OIDC RP-Initiated Logout allows
        # either, and a hint that has expired would make the provider refuse.
        params = {"client_id": self.settings.oidc_client_id, "post_logout_redirect_uri": after}
        return f"{endpoint}?{urlencode(params)}"


def new_flow_secrets() -> tuple[str, str, str]:
    """state, nonce and PKCE code verifier for one sign-in."""
    return generate_token(32), generate_token(32), generate_token(64)
