"""The local OpenID Connect provider (deploy/local/idp: panva/oidc-provider on Node)
for development and tests: its configuration, how to start it, and a headless
sign-in through its login form.

Used by the test fixtures (tests/fixtures/identity.py) and by
`LIFTSTACK_SIGNIN=oidc ./liftstack up` (deploy/local/stack.py). It needs a source
checkout with `npm ci` done in deploy/local/idp (deploy/local/bootstrap does it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

IDP_DIR = Path(__file__).resolve().parents[3] / "deploy" / "local" / "idp"
USERS_FILE = IDP_DIR / "users.json"
AUDIENCE = "urn:liftstack:api"
CONSOLE_CLIENT_ID = "liftstack-console"
SCOPES = "openid profile liftstack"


@dataclass(frozen=True)
class LocalIdp:
    issuer: str
    port: int
    audience: str
    client_id: str
    client_secret: str
    console_url: str
    signing_key: rsa.RSAPrivateKey
    kid: str
    config_dir: Path

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def redirect_uri(self) -> str:
        return f"{self.console_url}/auth/callback"


def write_config(config_dir: Path, *, port: int, console_url: str, audience: str = AUDIENCE) -> LocalIdp:
    """A fresh signing key and the console's client registration, in files only the
    owner can read (the provider reads them at start)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = f"local-{secrets.token_hex(4)}"
    private_jwk = {**json.loads(RSAAlgorithm.to_jwk(signing_key)), "kid": kid, "alg": "RS256", "use": "sig"}
    client_secret = secrets.token_urlsafe(32)
    _write_private(config_dir / "keys.json", {"keys": [private_jwk]})
    _write_private(
        config_dir / "clients.json",
        {
            "clients": [
                {
                    "client_id": CONSOLE_CLIENT_ID,
                    "client_secret": client_secret,
                    "redirect_uris": [f"{console_url}/auth/callback"],
                    "post_logout_redirect_uris": [f"{console_url}/signin"],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                }
            ]
        },
    )
    return LocalIdp(
        f"http://127.0.0.1:{port}",
        port,
        audience,
        CONSOLE_CLIENT_ID,
        client_secret,
        console_url,
        signing_key,
        kid,
        config_dir,
    )


def load_or_write_config(config_dir: Path, *, port: int, console_url: str) -> LocalIdp:
    """The configuration kept in `config_dir` (made once, so keys and the client
    secret survive restarts of a development stack)."""
    keys, clients = config_dir / "keys.json", config_dir / "clients.json"
    if not keys.exists() or not clients.exists():
        return write_config(config_dir, port=port, console_url=console_url)
    jwk = json.loads(keys.read_text())["keys"][0]
    signing_key = RSAAlgorithm.from_jwk(jwk)
    assert isinstance(signing_key, rsa.RSAPrivateKey)
    client = json.loads(clients.read_text())["clients"][0]
    return LocalIdp(
        f"http://127.0.0.1:{port}",
        port,
        AUDIENCE,
        client["client_id"],
        client["client_secret"],
        console_url,
        signing_key,
        jwk["kid"],
        config_dir,
    )


def _write_private(path: Path, data: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)


def command(idp: LocalIdp, users_file: Path = USERS_FILE) -> list[str]:
    """The command line that runs the provider (raises if Node or its packages are missing)."""
    node = shutil.which("node")
    if node is None or not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            "The local identity provider needs Node and its packages: run deploy/local/bootstrap "
            "(npm ci in deploy/local/idp)."
        )
    return [
        node,
        str(IDP_DIR / "server.js"),
        "--port",
        str(idp.port),
        "--issuer",
        idp.issuer,
        "--audience",
        idp.audience,
        "--users",
        str(users_file),
        "--clients",
        str(idp.config_dir / "clients.json"),
        "--keys",
        str(idp.config_dir / "keys.json"),
    ]


def ready(issuer: str) -> bool:
    try:
        with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("issuer") == issuer)
    except (OSError, ValueError):
        return False


def wait_ready(issuer: str, proc: subprocess.Popen[bytes] | None = None, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready(issuer):
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"the identity provider at {issuer} did not start")
        time.sleep(0.1)


def load_users(users_file: Path = USERS_FILE) -> dict[str, dict[str, Any]]:
    return {u["login"]: u for u in json.loads(users_file.read_text())["users"]}


def access_token(idp: LocalIdp, login: str, password: str) -> str:
    """A real access token from the provider for `login`: the authorization code +
    PKCE flow as the console's client, through the provider's login form, stopping
    at the redirect back to the console (which is not involved)."""
    with (
        httpx.Client(timeout=30) as http,
        OAuth2Client(
            idp.client_id,
            idp.client_secret,
            scope=SCOPES,
            redirect_uri=idp.redirect_uri,
            code_challenge_method="S256",
        ) as oauth,
    ):
        verifier = generate_token(64)
        url, state = oauth.create_authorization_url(
            f"{idp.issuer}/auth", code_verifier=verifier, nonce=generate_token(16)
        )
        form = http.get(url, follow_redirects=True)
        r = http.post(f"{form.url}/login", data={"login": login, "password": password})
        while r.is_redirect and not str(r.headers["location"]).startswith(idp.redirect_uri):
            r = http.get(r.url.join(r.headers["location"]))
        if not r.is_redirect:
            raise RuntimeError(f"the identity provider did not sign {login} in (HTTP {r.status_code})")
        token = oauth.fetch_token(
            f"{idp.issuer}/token",
            authorization_response=str(r.headers["location"]),
            code_verifier=verifier,
            state=state,
        )
    return str(token["access_token"])
