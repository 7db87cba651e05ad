"""The demo's token signer (`./liftstack up` only).

The demo stack has no identity provider, so the console plays one for its demo
workspace: it signs RS256 access tokens with a locally generated private key and
publishes the public half as a JWKS (`/demo/jwks.json`). Services verify those tokens
exactly as they verify a real provider's (issuer, audience, expiry, key id), and only
the console process holds the private key; there is no shared symmetric secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from liftstack_shared.auth import Role

DEMO_USERS = {Role.OWNER: "demo-owner", Role.ADMIN: "demo-admin", Role.MEMBER: "demo-member"}


def generate_key_file(path: Path) -> None:
    """A fresh 2048-bit RSA private key as PEM, readable by its owner only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


class DemoSigner:
    def __init__(
        self,
        key_file: str | Path,
        *,
        issuer: str,
        audience: str,
        workspace_claim: str = "workspace",
        role_claim: str = "role",
    ) -> None:
        loaded = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("the demo signing key must be an RSA private key")
        self._key = loaded
        self.issuer, self.audience = issuer, audience
        self.workspace_claim, self.role_claim = workspace_claim, role_claim
        public = json.loads(RSAAlgorithm.to_jwk(loaded.public_key()))
        self.kid = _thumbprint(public)
        self._public_jwk = {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, user_id: str, workspace_id: str, role: Role, ttl_s: int) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "iat": now,
            "exp": now + ttl_s,
            self.workspace_claim: workspace_id,
            self.role_claim: str(role),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._public_jwk]}


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 key id: SHA-256 of the canonical public members."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
