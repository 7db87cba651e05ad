"""Every service caps request bodies before buffering them (LIFTSTACK_MAX_BODY_BYTES):
413 `body_too_large` whether the size is declared (Content-Length, answered before
the body is read) or the body is chunked (answered once the cap is passed)."""

from __future__ import annotations

import httpx
import pytest

from liftstack_shared.auth import Role
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import user_token
from tests.resilience.test_outages import SERVICES, _base

pytestmark = pytest.mark.integration

CAP = 64 * 1024
# A route of each service that reads a body (before or after its auth check).
ROUTES = {
    "connections": "/v1/workspaces/ws_1/connections",
    "templates": "/v1/workspaces/ws_1/templates/generate",
    "audiences": "/v1/workspaces/ws_1/connections/conn_1/audiences/42/sync",
    "writeback": "/v1/workspaces/ws_1/writeback/jobs/job_1/retrigger",
    "console": "/signin",
    "experiments": "/v1/workspaces/ws_1/campaigns",
    "ingest": "/webhooks/iterable/" + "t" * 24,  # no such connection: 404 unless too large
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_declared_and_chunked_bodies_over_the_cap_are_413(service, kafka_topics, tmp_path):
    values = _base(kafka_topics, max_body_bytes=CAP, audience_state_dir=str(tmp_path))
    token = user_token(kafka_topics, "u_1", "ws_1", Role.OWNER)
    # Same-origin, so the console's CSRF check (which runs first) lets it through.
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"}
    app = SERVICES[service](values)
    # Ingest's app-wide cap is never below its webhook cap (256 KiB), which applies
    # after the secret check (see tests/ingest/test_gateway.py).
    cap = 256 * 1024 if service == "ingest" else CAP
    with serve_asgi(app, timeout_s=60) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            declared = await client.post(ROUTES[service], content=b"x" * (cap + 1), headers=headers)
            assert declared.status_code == 413, declared.text
            assert declared.json()["error"]["code"] == "body_too_large"

            async def chunks():
                yield b'{"name": "'
                for _ in range(cap // 8192 + 4):
                    yield b"y" * 8192
                yield b'"}'

            chunked = await client.post(ROUTES[service], content=chunks(), headers=headers)
            if service in ("console", "connections", "templates", "audiences", "experiments"):
                # These routes read the body: the cap is passed while streaming.
                assert chunked.status_code == 413, chunked.text
                assert chunked.json()["error"]["code"] == "body_too_large"
            else:
                # These never read a body, so they answer without buffering it.
                assert chunked.status_code < 500, chunked.text
            just_under = await client.post(ROUTES[service], content=b"{}", headers=headers)
            assert just_under.status_code != 413


async def test_audience_ids_beyond_64_bits_are_404_not_500(kafka_topics, tmp_path):
    values = _base(kafka_topics, audience_state_dir=str(tmp_path))
    token = user_token(kafka_topics, "u_1", "ws_1", Role.OWNER)
    headers = {"Authorization": f"Bearer {token}"}
    base = "/v1/workspaces/ws_1/connections/conn_1/audiences"
    with serve_asgi(SERVICES["audiences"](values), timeout_s=60) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for list_id, code in (
                (str(2**63), "audience_not_found"),
                (str(2**64 + 5), "not_found"),
                (str(10**30), "not_found"),
                ("9" * 5000, "not_found"),
            ):
                for method, suffix in (("GET", "/size"), ("POST", "/sync")):
                    response = await client.request(method, f"{base}/{list_id}{suffix}", headers=headers)
                    assert response.status_code == 404, (list_id, response.text[:200])
                    assert response.json()["error"]["code"] == code


async def test_console_json_api_refuses_unparseable_json_with_400_not_500(kafka_topics, tmp_path):
    values = _base(kafka_topics, demo_signin=True)
    with serve_asgi(SERVICES["console"](values), timeout_s=60) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            signed_in = await client.post(
                "/signin", data={"role": "owner", "next": "/campaigns"}, headers={"Sec-Fetch-Site": "same-origin"}
            )
            assert signed_in.status_code == 303 and client.cookies
            for body, code in (
                (b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too_deep"),
                (b'{"name": "x", "seed": ' + str(10**40).encode() + b"}", "number_out_of_range"),
                (b'{"name": "\\ud800"}', "invalid_string"),
                (b"\xff\xfe", "invalid_encoding"),
            ):
                response = await client.post(
                    "/api/campaigns",
                    content=body,
                    headers={"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"},
                )
                assert response.status_code == 400, response.text[:200]
                assert response.json()["error"]["code"] == code
