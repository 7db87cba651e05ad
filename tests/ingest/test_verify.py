"""The webhook secret check."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from liftstack_ingest.verify import SECRET_HEADER, Verdict, basic_password, presented_tokens, verify

CURRENT, PREVIOUS = SecretStr("s3cret-current"), SecretStr("s3cret-previous")


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "OAuth2 s3cret-current"},
        {"authorization": "Basic s3cret-current"},
        {"authorization": "Bearer s3cret-current"},
        {"authorization": "s3cret-current"},  # Iterable's bare Basic form
        {"x-liftstack-webhook-secret": "s3cret-current"},
        {"authorization": "oauth2   s3cret-current  "},
    ],
)
def test_accepted_forms(headers):
    assert verify(headers, [CURRENT]) is Verdict.OK


def test_rotation_accepts_both_secrets():
    assert verify({"authorization": "OAuth2 s3cret-previous"}, [CURRENT, PREVIOUS]) is Verdict.OK
    assert verify({"authorization": "OAuth2 s3cret-current"}, [CURRENT, PREVIOUS]) is Verdict.OK
    assert verify({"authorization": "OAuth2 other"}, [CURRENT, PREVIOUS]) is Verdict.MISMATCH


def test_missing_and_wrong():
    assert verify({}, [CURRENT]) is Verdict.MISSING
    assert verify({"authorization": "OAuth2 s3cret-curren"}, [CURRENT]) is Verdict.MISMATCH
    assert verify({"authorization": "OAuth2"}, [CURRENT]) is Verdict.MISMATCH


def test_no_secret_configured_means_no_auth():
    assert verify({}, []) is Verdict.OK
    assert verify({}, [SecretStr("")]) is Verdict.OK  # an empty secret never counts


def test_presented_tokens_reads_both_places():
    assert presented_tokens({"x-liftstack-webhook-secret": "a", "authorization": "Basic b"}) == ["a", "b", "Basic b"]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("user", ["iterable", "", "any user", "ü:ser"[:1]])
def test_rfc7617_basic_with_the_secret_as_password(user):
    """Defect: journey webhooks send RFC 7617 Basic (base64(user:password)); the raw
    base64 was compared with the secret, so every conversion answered 403."""
    assert verify({"authorization": basic(user, "s3cret-current")}, [CURRENT]) is Verdict.OK
    assert verify({"authorization": basic(user, "s3cret-previous")}, [CURRENT, PREVIOUS]) is Verdict.OK
    assert verify({"authorization": basic(user, "wrong")}, [CURRENT]) is Verdict.MISMATCH
    # The secret as the user name (password empty) is not the secret as the password.
    assert verify({"authorization": basic("s3cret-current", "")}, [CURRENT]) is Verdict.MISMATCH


def test_basic_password_parsing():
    assert basic_password(base64.b64encode(b"u:p:with:colons").decode()) == "p:with:colons"
    assert basic_password(base64.b64encode(b"no-colon").decode()) is None
    assert basic_password("not base64!") is None
    assert basic_password(base64.b64encode(b"\xff\xfe:x").decode()) is None


def test_a_connection_names_its_own_header():
    headers = {"x-webhook-token": "s3cret-current"}
    assert verify(headers, [CURRENT], custom_header="x-webhook-token") is Verdict.OK
    assert verify(headers, [CURRENT]) is Verdict.MISSING  # not a header it named
    assert verify({"x-webhook-token": "nope"}, [CURRENT], custom_header="x-webhook-token") is Verdict.MISMATCH
    # The built-in header keeps working next to the named one.
    assert verify({SECRET_HEADER: "s3cret-current"}, [CURRENT], custom_header="x-webhook-token") is Verdict.OK


def test_oauth2_client_credentials_get_their_own_reason():
    # An access token from some token endpoint, not the secret.
    verdict = verify({"authorization": "Bearer eyJhbGciOi.foreign.token"}, [CURRENT])
    assert verdict is Verdict.OAUTH2_UNSUPPORTED
    assert "client credentials" in verdict.message and "Basic" in verdict.message
    # A token request itself (RFC 6749 4.4.2: form-encoded), whatever its auth.
    token_request = {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        "authorization": basic("client-id", "s3cret-current"),
    }
    assert verify(token_request, [CURRENT]) is Verdict.OAUTH2_UNSUPPORTED
    # Bearer with the secret itself still works (tools, hand-made requests).
    assert verify({"authorization": "Bearer s3cret-current"}, [CURRENT]) is Verdict.OK
    # Messages never contain a secret.
    assert all("s3cret" not in v.message for v in Verdict)
