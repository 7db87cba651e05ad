"""Credential encryption: Fernet keys derived per workspace from the master keys.

Each master key (32 random bytes, urlsafe base64, i.e. a Fernet key) is stretched with
HKDF-SHA256 using the workspace id as `info`, so a ciphertext from one workspace can't
be decrypted with another workspace's key even though both come from one master key.

`settings.master_keys` lists master keys newest first. Encryption always uses the
newest; decryption tries each (MultiFernet). Rotation = prepend a new key, run
`python -m liftstack_connections rotate-keys`, then drop the old key.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CredentialCipher", "InvalidToken", "MasterKeyError", "parse_master_keys"]

# Fixed, public salt: HKDF's security rests on the master key; the salt only
# separates this use of the master key from any other.
_SALT = b"liftstack.connections.v1"


class MasterKeyError(ValueError):
    """Master keys are missing or malformed (the message never includes a key)."""


def parse_master_keys(raw: str) -> tuple[bytes, ...]:
    """Comma-separated urlsafe-base64 32-byte keys, newest first."""
    keys: list[bytes] = []
    for position, part in enumerate(p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            key = base64.urlsafe_b64decode(part.encode())
        except (binascii.Error, ValueError):
            raise MasterKeyError(f"master key #{position + 1} is not urlsafe base64") from None
        if len(key) != 32:
            raise MasterKeyError(f"master key #{position + 1} must decode to 32 bytes")
        keys.append(key)
    if not keys:
        raise MasterKeyError("LIFTSTACK_MASTER_KEYS is empty: set at least one master key")
    return tuple(keys)


def _derive(master: bytes, workspace_id: str) -> Fernet:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"workspace:" + workspace_id.encode())
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(master)))


class CredentialCipher:
    """Encrypts and decrypts credentials for any workspace with the master keys."""

    def __init__(self, master_keys: str) -> None:
        self._masters = parse_master_keys(master_keys)

    @lru_cache(maxsize=1024)  # noqa: B019 - one cipher per process; bounded
    def _fernets(self, workspace_id: str) -> tuple[Fernet, ...]:
        return tuple(_derive(m, workspace_id) for m in self._masters)

    def encrypt(self, workspace_id: str, plaintext: str) -> str:
        return self._fernets(workspace_id)[0].encrypt(plaintext.encode()).decode()

    def decrypt(self, workspace_id: str, token: str) -> str:
        """Raises InvalidToken if no master key (for this workspace) opens it."""
        return MultiFernet(list(self._fernets(workspace_id))).decrypt(token.encode()).decode()

    def is_current(self, workspace_id: str, token: str) -> bool:
        """True if the newest master key already opens this ciphertext."""
        try:
            self._fernets(workspace_id)[0].decrypt(token.encode())
            return True
        except InvalidToken:
            return False

    def rotate(self, workspace_id: str, token: str) -> str:
        """Re-encrypt with the newest master key (decrypting with whichever opens it)."""
        return MultiFernet(list(self._fernets(workspace_id))).rotate(token.encode()).decode()
