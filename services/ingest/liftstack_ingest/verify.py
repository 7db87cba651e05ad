"""Webhook secret check.

Iterable system webhooks carry no signature, only a static token (reference,
"System webhooks"). A request may present the connection's webhook secret as:

- `Authorization: OAuth2 <secret>` (Iterable auth type OAuth2),
- `Authorization: Basic <secret>` (auth type Basic; some Iterable docs show it sent
  bare, `Authorization: <secret>`, which is accepted too),
- `Authorization: Bearer <secret>` (for journey webhooks and hand-made requests),
- `X-Liftstack-Webhook-Secret: <secret>` (a custom header, for setups that can't use
  Authorization).

If the connection has no webhook secret, requests are accepted unauthenticated
(Iterable's NoAuth). During rotation a connection has two secrets and either works.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import SecretStr

SECRET_HEADER = "x-liftstack-webhook-secret"
_SCHEMES = frozenset({"basic", "oauth2", "bearer"})


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "missing_secret"
    MISMATCH = "bad_secret"


def presented_tokens(headers: Mapping[str, str]) -> list[str]:
    """Every candidate secret the request carries (custom header, Authorization)."""
    tokens: list[str] = []
    custom = headers.get(SECRET_HEADER, "").strip()
    if custom:
        tokens.append(custom)
    auth = headers.get("authorization", "").strip()
    if auth:
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() in _SCHEMES and rest.strip():
            tokens.append(rest.strip())
        else:
            tokens.append(auth)  # Iterable's bare "Basic" form
    return tokens


def verify(headers: Mapping[str, str], secrets: Sequence[SecretStr]) -> Verdict:
    expected = [s.get_secret_value() for s in secrets if s.get_secret_value()]
    if not expected:
        return Verdict.OK
    given = presented_tokens(headers)
    if not given:
        return Verdict.MISSING
    # Compare fixed-length digests so neither the secret's length nor which of the
    # (up to two) secrets matched leaks through timing: every pair is compared.
    matched = False
    for token in given:
        token_digest = _digest(token)
        for secret in expected:
            matched |= hmac.compare_digest(token_digest, _digest(secret))
    return Verdict.OK if matched else Verdict.MISMATCH


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
