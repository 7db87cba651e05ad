"""Credential encryption: per-workspace keys from HKDF, MultiFernet rotation."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken

from liftstack_connections.crypto import CredentialCipher, MasterKeyError
from liftstack_connections.settings import ConnectionsSettings
from tests.connections.support import fake_key


def master() -> str:
    return Fernet.generate_key().decode()


def test_ciphertext_is_not_plaintext_and_round_trips():
    cipher = CredentialCipher(master())
    key = fake_key()
    token = cipher.encrypt("ws-a", key)
    assert key not in token
    assert cipher.decrypt("ws-a", token) == key


def test_one_workspace_cannot_decrypt_another_workspaces_data():
    cipher = CredentialCipher(master())
    token = cipher.encrypt("ws-a", fake_key())
    with pytest.raises(InvalidToken):
        cipher.decrypt("ws-b", token)
    # Not even with the raw master key used directly as a Fernet key.
    raw = master()
    with pytest.raises(InvalidToken):
        Fernet(raw.encode()).decrypt(CredentialCipher(raw).encrypt("ws-a", "x").encode())


def test_workspace_keys_are_deterministic_across_processes():
    key = master()
    token = CredentialCipher(key).encrypt("ws-a", "secret-value")
    assert CredentialCipher(key).decrypt("ws-a", token) == "secret-value"


def test_rotation_decrypts_with_old_and_reencrypts_with_new():
    old, new = master(), master()
    token = CredentialCipher(old).encrypt("ws-a", "s3cret")
    both = CredentialCipher(f"{new},{old}")
    assert both.decrypt("ws-a", token) == "s3cret"
    assert not both.is_current("ws-a", token)
    rotated = both.rotate("ws-a", token)
    assert both.is_current("ws-a", rotated)
    assert CredentialCipher(new).decrypt("ws-a", rotated) == "s3cret"
    with pytest.raises(InvalidToken):
        CredentialCipher(old).decrypt("ws-a", rotated)
    # New encryptions use the newest key only.
    assert CredentialCipher(new).decrypt("ws-a", both.encrypt("ws-a", "x")) == "x"


@pytest.mark.parametrize("raw", ["", " , ", "not-base64!!", "c2hvcnQ="])
def test_bad_master_keys_fail_without_echoing_them(raw):
    with pytest.raises(MasterKeyError) as info:
        CredentialCipher(raw)
    if raw.strip(" ,"):
        assert raw not in str(info.value)


def test_settings_default_port_and_env_override(monkeypatch):
    monkeypatch.delenv("LIFTSTACK_PORT", raising=False)
    assert ConnectionsSettings().port == 8101
    monkeypatch.setenv("LIFTSTACK_PORT", "9123")
    monkeypatch.setenv("LIFTSTACK_WEBHOOK_SECRET_GRACE_S", "60")
    settings = ConnectionsSettings()
    assert settings.port == 9123 and settings.webhook_secret_grace_s == 60
