"""The demo stack's sign-in (`./liftstack up`): off unless asked for; when on, the
console signs tokens with a local RSA key and publishes only its public half, which
is all services need to verify them. Plus the cookie's Secure rule."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from liftstack_console.app import create_app
from liftstack_console.demo_signer import DemoSigner, generate_key_file
from liftstack_console.settings import ConsoleSettings
from liftstack_shared.auth import Principal, Role, verify_user_token
from liftstack_shared.errors import ApiError
from liftstack_shared.settings import CommonSettings
from tests.fixtures.asgi import free_port, serve_asgi


def _console_settings(base: CommonSettings, **overrides: object) -> ConsoleSettings:
    common = base.model_dump(exclude={"port", "oidc_issuer", "oidc_jwks_url"})
    return ConsoleSettings(**common, **overrides)


def test_demo_signin_is_off_by_default_and_no_signin_is_refused_at_start(kafka_topics: CommonSettings) -> None:
    assert ConsoleSettings().demo_signin is False
    with pytest.raises(SystemExit, match="No sign-in configured"):
        create_app(_console_settings(kafka_topics))


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8080", False),
        ("https://console.example.com", True),
        ("http://console.internal:8080", True),
    ],
)
def test_cookies_are_secure_except_on_plain_http_localhost(url: str, secure: bool) -> None:
    assert ConsoleSettings(console_public_url=url).cookie_secure is secure


def test_demo_signer_tokens_verify_against_the_consoles_published_keys(
    kafka_topics: CommonSettings,
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "demo-signing-key.pem"
    generate_key_file(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = _console_settings(
        kafka_topics,
        demo_signin=True,
        demo_signing_key_file=str(key_file),
        oidc_issuer=f"{url}/demo",
        oidc_jwks_url=f"{url}/demo/jwks.json",
        console_public_url=url,
    )
    with serve_asgi(create_app(settings), port=port):
        jwks = httpx.get(f"{url}/demo/jwks.json").json()
        assert [k["kty"] for k in jwks["keys"]] == ["RSA"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwks["keys"][0])  # public only

        # What services do with a demo token: verify it against that JWKS.
        signer = DemoSigner(key_file, issuer=settings.oidc_issuer, audience=settings.oidc_audience)
        token = signer.token("demo-member", "ws-demo", Role.MEMBER, ttl_s=60)
        assert verify_user_token(token, settings) == Principal("demo-member", "ws-demo", Role.MEMBER)
        # A key of anyone else, even with the demo key's id, is not the console's.
        other_file = tmp_path / "other.pem"
        generate_key_file(other_file)
        with pytest.raises(ApiError) as caught:
            verify_user_token(_resigned(token, other_file, kid=signer.kid), settings)
        assert caught.value.status == 401

        with httpx.Client(base_url=url) as http:
            # The demo form, from the console's own page: a session for the chosen role.
            r = http.post("/signin", data={"role": "member", "next": "/campaigns"}, headers={"Origin": url})
            assert r.status_code == 303 and r.headers["location"] == "/campaigns"
            assert "lf_session" in http.cookies
            page = http.get("/signin")
            assert 'id="role-switch"' in page.text and "ws-demo" in page.text
            # From anywhere else: refused, no new session.
            with httpx.Client(base_url=url) as other:
                r = other.post("/signin", data={"role": "owner"}, headers={"Origin": "https://evil.example"})
                assert r.status_code == 403 and "lf_session" not in other.cookies
                r = other.post("/signin", data={"role": "owner"})  # no Origin, no Sec-Fetch-Site
                assert r.status_code == 403


def _resigned(token: str, key_file: Path, kid: str) -> str:
    """The same claims and key id, signed with another key."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]  # an RSA private key; PyJWT's hint is narrower
