"""Webhook secret check.

Iterable signs nothing: a webhook carries at most a static credential. How it is
presented depends on the kind of webhook and its auth setting (reference, "System
webhooks" and "Corrections and additions"):

- System webhooks, auth type OAuth2: `Authorization: OAuth2 <token>`.
- System webhooks, auth type Basic: the token sent bare, `Authorization: <token>`.
- Journey webhooks (where conversions come from), HTTP Basic as in RFC 7617:
  `Authorization: Basic base64(user:password)`. The password is the connection's
  webhook secret; the user name is free (Iterable requires one).
- "Add HTTP header" (either kind): a custom header. The connection names it
  (`webhook_header`, e.g. `X-Webhook-Secret`); `X-Liftstack-Webhook-Secret` always
  works too.
- `Authorization: Bearer <secret>`, for hand-made requests and tools.

Journey webhooks may also use OAuth2 client credentials: Iterable first fetches an
access token from a token endpoint, then sends `Authorization: Bearer <token>`.
liftstack issues no such tokens, so that cannot be verified. A Bearer token that is
not the secret, or a token request itself (a form-encoded POST, RFC 6749 4.4.2,
e.g. when the webhook URL was entered as the token URL), answers 403 with reason
`oauth2_client_credentials_unsupported` and a message saying what to use instead.

If the connection has no webhook secret, requests are accepted unauthenticated
(Iterable's NoAuth). During rotation a connection has two secrets and either works.
Every candidate is compared with every secret in constant time; nothing here logs
or returns a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from enum import StrEnum

from pydantic import SecretStr

SECRET_HEADER = "x-liftstack-webhook-secret"
_TOKEN_SCHEMES = frozenset({"oauth2", "bearer"})
_FORM = "application/x-www-form-urlencoded"


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "missing_secret"
    MISMATCH = "bad_secret"
    OAUTH2_UNSUPPORTED = "oauth2_client_credentials_unsupported"

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES: dict[Verdict, str] = {
    Verdict.OK: "",
    Verdict.MISSING: (
        "The webhook secret is missing: send it as HTTP Basic auth (any user name, the"
        " secret as the password), in the connection's custom header, or as"
        " Authorization: OAuth2 <secret> (system webhooks)."
    ),
    Verdict.MISMATCH: "The webhook secret is wrong.",
    Verdict.OAUTH2_UNSUPPORTED: (
        "OAuth2 client credentials are not supported (liftstack issues no access tokens,"
        " and a Bearer token that is not the webhook secret can't be checked)."
        " Set the webhook's authentication to Basic (any user name, the connection's"
        " webhook secret as the password) or add a custom HTTP header carrying the secret."
    ),
}


def basic_password(credentials: str) -> str | None:
    """The password of RFC 7617 credentials (`base64(user:password)`), or None when
    they are not that (not base64, not UTF-8, or no colon)."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    return password if colon else None


def presented_tokens(headers: Mapping[str, str], custom_header: str | None = None) -> list[str]:
    """Every candidate secret the request carries (custom headers, Authorization)."""
    tokens: list[str] = []
    for name in dict.fromkeys(h for h in (custom_header, SECRET_HEADER) if h):
        value = headers.get(name, "").strip()
        if value:
            tokens.append(value)
    auth = headers.get("authorization", "").strip()
    if auth:
        scheme, _, rest = auth.partition(" ")
        rest = rest.strip()
        if scheme.lower() == "basic" and rest:
            password = basic_password(rest)
            if password is not None:
                tokens.append(password)  # RFC 7617 (journey webhooks)
            tokens.append(rest)  # "Basic <secret>" typed as a system webhook's token
        elif scheme.lower() in _TOKEN_SCHEMES and rest:
            tokens.append(rest)
        tokens.append(auth)  # a system webhook's Basic type: the token sent bare
    return tokens


def _bearer(headers: Mapping[str, str]) -> bool:
    scheme, _, rest = headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and bool(rest.strip())


def _token_request(headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return content_type == _FORM


def verify(headers: Mapping[str, str], secrets: Sequence[SecretStr], custom_header: str | None = None) -> Verdict:
    expected = [s.get_secret_value() for s in secrets if s.get_secret_value()]
    if not expected:
        return Verdict.OK
    if _token_request(headers):
        # Iterable asking for an OAuth2 access token (never a webhook: those are JSON).
        return Verdict.OAUTH2_UNSUPPORTED
    given = presented_tokens(headers, custom_header)
    if not given:
        return Verdict.MISSING
    # Compare fixed-length digests so neither the secret's length nor which of the
    # (up to two) secrets matched leaks through timing: every pair is compared.
    matched = False
    for token in given:
        token_digest = _digest(token)
        for secret in expected:
            matched |= hmac.compare_digest(token_digest, _digest(secret))
    if matched:
        return Verdict.OK
    # A Bearer token that isn't the secret is an OAuth2 access token from elsewhere.
    return Verdict.OAUTH2_UNSUPPORTED if _bearer(headers) else Verdict.MISMATCH


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
