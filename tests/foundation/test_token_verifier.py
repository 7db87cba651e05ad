"""The shared token verifier against JWKS served over real HTTP: keys are cached, a
rotated key is picked up by one refetch on its unknown kid, made-up kids can't force
a fetch per request, an unreachable provider is a 503 rather than a 401, and real
tokens of the project's identity provider verify to the user's workspace and role."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from liftstack_shared.auth import NoWorkspace, Principal, Role, TokenVerifier, verify_user_token
from liftstack_shared.errors import ApiError
from liftstack_shared.settings import CommonSettings
from tests.fixtures.identity import IdentityProvider

ISSUER = "https://idp.test"
AUDIENCE = "urn:liftstack:api"


class JwksServer:
    """A JWKS endpoint whose key set a test changes; counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, key: Any, kid: str) -> None:
        algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
        self.keys.append({**json.loads(algorithm.to_jwk(key.public_key())), "kid": kid})


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.server.shutdown()


def _verifier(url: str, **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(
        jwks_url=url, issuer=ISSUER, audience=AUDIENCE, workspace_claim="workspace", role_claim="role", **kwargs
    )


def _token(key: Any, kid: str, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u1",
        "iat": now,
        "exp": now + 60,
        "workspace": "ws-1",
        "role": "admin",
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def test_keys_are_cached_and_a_rotated_key_is_picked_up(jwks: JwksServer) -> None:
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish(old, "k1")
    verifier = _verifier(jwks.url, min_refresh_interval_s=0)
    for _ in range(5):
        assert verifier.verify(_token(old, "k1")) == Principal("u1", "ws-1", Role.ADMIN)
    assert jwks.fetches == 1  # cached

    # The provider rotates: publishes k2 and signs with it. One refetch finds it.
    new = ec.generate_private_key(ec.SECP256R1())
    jwks.publish(new, "k2")
    assert verifier.verify(_token(new, "k2", alg="ES256")).role is Role.ADMIN
    assert jwks.fetches == 2
    assert verifier.verify(_token(old, "k1")).user_id == "u1"  # both still published
    assert jwks.fetches == 2


def test_made_up_kids_cannot_force_a_fetch_per_request(jwks: JwksServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish(key, "k1")
    verifier = _verifier(jwks.url, min_refresh_interval_s=60)
    verifier.verify(_token(key, "k1"))
    for i in range(20):
        with pytest.raises(Exception, match="unknown key id"):
            verifier.verify(_token(key, f"made-up-{i}"))
    assert jwks.fetches == 2  # the first load and one refresh, not 21


def test_a_token_without_workspace_is_no_workspace(jwks: JwksServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.publish(key, "k1")
    with pytest.raises(NoWorkspace):
        _verifier(jwks.url).verify(_token(key, "k1", workspace=None))


def test_an_unreachable_provider_is_503_not_401() -> None:
    settings = CommonSettings(oidc_issuer=ISSUER, oidc_jwks_url="http://127.0.0.1:9/jwks", oidc_audience=AUDIENCE)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ApiError) as caught:
        verify_user_token(_token(key, "k1"), settings)
    assert (caught.value.status, caught.value.code) == (503, "identity_provider_unavailable")


def test_unconfigured_verification_refuses_every_token() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ApiError) as caught:
        verify_user_token(_token(key, "k1"), CommonSettings())
    assert caught.value.status == 500 and caught.value.code == "misconfigured"


def test_real_provider_tokens_carry_workspace_and_role(
    identity_provider: IdentityProvider,
    settings: CommonSettings,
) -> None:
    """Tokens minted by the running provider through its login form (code + PKCE)."""
    admin_b = identity_provider.access_token("admin-b")
    assert verify_user_token(admin_b, settings) == Principal("admin-b", "ws-second", Role.ADMIN)
    header = jwt.get_unverified_header(admin_b)
    assert header["alg"] == "RS256" and header["kid"] == identity_provider.kid
    nobody = identity_provider.access_token("nobody")
    with pytest.raises(ApiError) as caught:
        verify_user_token(nobody, settings)
    assert (caught.value.status, caught.value.code) == (403, "no_workspace")
