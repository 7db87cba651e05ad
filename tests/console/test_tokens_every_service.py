"""Every service, running as its own process, verifies user tokens against the identity
provider's published keys: a real token from the provider is accepted; one signed
with a shared secret (the old scheme), `alg: none`, the wrong issuer or audience,
expired, or signed by a key the provider never published, is refused with 401 by
each of them. Service and user credentials never stand in for each other."""

from __future__ import annotations

import httpx
import pytest

from liftstack_shared.auth import SERVICE_TOKEN_HEADER, Role
from tests.console.livestack import WORKSPACE_A, LiveStack
from tests.fixtures.identity import bad_tokens

# service -> a user-facing GET of workspace A (formatted with the seeded connection id).
USER_ENDPOINTS = {
    "connections": f"/v1/workspaces/{WORKSPACE_A}/connections",
    "ingest": "/v1/connections/{connection}/events/summary",
    "writeback": f"/v1/workspaces/{WORKSPACE_A}/writeback/jobs/no-such-job",
    "templates": f"/v1/workspaces/{WORKSPACE_A}/templates",
    "audiences": f"/v1/workspaces/{WORKSPACE_A}/connections/{{connection}}/audiences",
    "experiments": f"/v1/workspaces/{WORKSPACE_A}/campaigns",
}


def _get(stack: LiveStack, service: str, headers: dict[str, str]) -> httpx.Response:
    path = USER_ENDPOINTS[service].format(connection=stack.seed.connection_id)
    return httpx.get(stack.urls[service] + path, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def provider_token(live_stack: LiveStack) -> str:
    """A token the identity provider itself minted for owner-a, via its login form."""
    return live_stack.idp.access_token("owner-a")


@pytest.mark.parametrize("service", sorted(USER_ENDPOINTS))
def test_every_service_accepts_the_providers_token_and_refuses_bad_ones(
    live_stack: LiveStack,
    provider_token: str,
    service: str,
) -> None:
    stack = live_stack
    accepted = _get(stack, service, {"Authorization": f"Bearer {provider_token}"})
    assert accepted.status_code not in (401, 403, 503), (service, accepted.status_code, accepted.text)
    refused = {}
    for name, token in bad_tokens(stack.idp, WORKSPACE_A).items():
        r = _get(stack, service, {"Authorization": f"Bearer {token}"})
        refused[name] = (r.status_code, r.json()["error"]["code"])
    assert refused == {name: (401, "unauthenticated") for name in refused}, service
    # No bearer, or the service credential offered as a user: 401 too.
    assert _get(stack, service, {}).status_code == 401
    service_token = stack.settings.service_token.get_secret_value()
    assert _get(stack, service, {"Authorization": f"Bearer {service_token}"}).status_code == 401
    assert _get(stack, service, {SERVICE_TOKEN_HEADER: service_token}).status_code == 401


def test_a_user_token_is_not_a_service_credential(live_stack: LiveStack, provider_token: str) -> None:
    stack = live_stack
    url = f"{stack.urls['connections']}/internal/connections/{stack.seed.connection_id}"
    for token in (provider_token, stack.token(Role.OWNER)):
        assert httpx.get(url, headers={SERVICE_TOKEN_HEADER: token}, timeout=30).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 401
    service_token = stack.settings.service_token.get_secret_value()
    assert httpx.get(url, headers={SERVICE_TOKEN_HEADER: service_token}, timeout=30).status_code == 200


def test_the_providers_id_token_is_not_an_access_token(live_stack: LiveStack) -> None:
    """The ID token is for the console (aud = its client id), not for the API."""
    stack = live_stack
    id_token = stack.idp.token("owner-a", WORKSPACE_A, Role.OWNER, aud=stack.idp.client_id)
    assert _get(stack, "connections", {"Authorization": f"Bearer {id_token}"}).status_code == 401
