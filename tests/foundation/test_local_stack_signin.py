"""How `./liftstack up` (deploy/local/stack.py) configures sign-in, without starting
the stack (its fixed ports belong to whoever runs it): which process gets which
secret, and, with LIFTSTACK_SIGNIN=oidc, that it starts the local identity provider
and signs the seed's Owner in through it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from liftstack_shared.auth import Principal, Role, verify_user_token
from liftstack_shared.settings import CommonSettings
from tests.fixtures.asgi import free_port

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.py"


def _load_stack(monkeypatch: pytest.MonkeyPatch, runtime: Path, **env: str) -> ModuleType:
    monkeypatch.setenv("LIFTSTACK_RUNTIME", str(runtime))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"stack_under_test_{id(runtime)}", STACK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_demo_mode_gives_only_the_console_the_private_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = _load_stack(monkeypatch, tmp_path)
    services = stack.services_env()
    console = stack.console_env()
    assert services["LIFTSTACK_OIDC_JWKS_URL"] == "http://127.0.0.1:8080/demo/jwks.json"
    assert not any("JWT_SECRET" in key or "SIGNING_KEY" in key for key in services)
    key_file = Path(console["LIFTSTACK_DEMO_SIGNING_KEY_FILE"])
    assert console["LIFTSTACK_DEMO_SIGNIN"] == "true"
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_oidc_mode_runs_the_local_provider_and_signs_the_seed_owner_in(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    port = free_port()
    stack = _load_stack(monkeypatch, tmp_path, LIFTSTACK_SIGNIN="oidc", LIFTSTACK_IDP_PORT=str(port))
    try:
        stack.identity_up()
        services, console = stack.services_env(), stack.console_env()
        assert services["LIFTSTACK_OIDC_ISSUER"] == f"http://127.0.0.1:{port}"
        assert "LIFTSTACK_OIDC_CLIENT_SECRET" not in services  # the console's alone
        assert console["LIFTSTACK_OIDC_CLIENT_ID"] == "liftstack-console"
        assert "LIFTSTACK_DEMO_SIGNIN" not in console

        from liftstack_console import local_idp

        owner = local_idp.load_users()["owner-a"]
        token = local_idp.access_token(stack.local_idp(), owner["login"], owner["password"])
        settings = CommonSettings(
            oidc_issuer=services["LIFTSTACK_OIDC_ISSUER"],
            oidc_jwks_url=services["LIFTSTACK_OIDC_JWKS_URL"],
            oidc_audience=services["LIFTSTACK_OIDC_AUDIENCE"],
        )
        assert verify_user_token(token, settings) == Principal("owner-a", "ws-demo", Role.OWNER)
        # A restart keeps the provider's key and the console's client secret.
        assert stack.local_idp().client_secret == console["LIFTSTACK_OIDC_CLIENT_SECRET"]
    finally:
        stack.stop("identity-provider")
    assert stack.running_pid("identity-provider") is None
