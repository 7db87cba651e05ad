"""The webhook secret check."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from liftstack_ingest.verify import Verdict, presented_tokens, verify

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
    assert presented_tokens({"x-liftstack-webhook-secret": "a", "authorization": "Basic b"}) == ["a", "b"]
