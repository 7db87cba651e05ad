"""Master key rotation: re-encrypt every stored secret with the newest master key.

Procedure (README): prepend a new key to LIFTSTACK_MASTER_KEYS and deploy (the service
then encrypts with the new key and still decrypts with the old), run
`python -m liftstack_connections rotate-keys`, then drop the old key.

Each document is updated only if its ciphertexts are still the ones read
(compare-and-set), so a concurrent edit is never overwritten; such a document is
re-read and retried. Safe to run again: ciphertexts already under the newest key are
left alone.

On FerretDB that compare-and-set is not atomic against the connections service's
writes (another process; see liftstack_shared.mongo): an edit overlapping a
document's rotation write can write the document back as it read it, old-key
ciphertexts included. Dropping the old key then would make that secret unreadable for
good, so after the sweep every document is read again and anything not under the
newest key is rotated again, until a pass finds nothing left (or the run fails). The
reverse, the rotation write landing over an overlapping edit, can't be seen
afterwards: run rotations when nobody is editing connections (README).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from liftstack_connections.crypto import CredentialCipher, InvalidToken
from liftstack_connections.settings import ConnectionsSettings
from liftstack_connections.store import ENCRYPTED_FIELDS, ConnectionStore, Doc
from liftstack_shared.mongo import database, make_mongo_client
from liftstack_shared.retry import backoff

log = logging.getLogger("liftstack.connections.rotation")
_ATTEMPTS = 5  # compare-and-sets of one document before it counts as failed
_VERIFY_PASSES = 3


@dataclass
class RotationReport:
    documents: int = 0
    rotated_secrets: int = 0
    already_current: int = 0
    failed: list[str] = field(default_factory=list)  # connection ids

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = (
            f"rotate-keys: {self.documents} connections, {self.rotated_secrets} secrets "
            f"re-encrypted, {self.already_current} already under the newest key"
        )
        if self.failed:
            text += f"; FAILED for {len(self.failed)}: {', '.join(self.failed)}"
        return text


async def rotate_all(settings: ConnectionsSettings) -> RotationReport:
    cipher = CredentialCipher(settings.master_keys.get_secret_value())
    client = make_mongo_client(settings)
    try:
        store = ConnectionStore(database(client, settings))
        report = RotationReport()
        async for doc in store.all():
            report.documents += 1
            await _rotate_one(store, cipher, doc, report)
        await _verify(store, cipher, report)
        log.info("%s", report.summary())
        return report
    finally:
        await client.close()


def _outdated(cipher: CredentialCipher, doc: Doc) -> bool:
    return any(doc.get(name) and not cipher.is_current(doc["workspace_id"], doc[name]) for name in ENCRYPTED_FIELDS)


async def _verify(store: ConnectionStore, cipher: CredentialCipher, report: RotationReport) -> None:
    """Read everything again; rotate what an overlapping write put back."""
    for _ in range(_VERIFY_PASSES):
        again = [doc async for doc in store.all() if doc["_id"] not in report.failed and _outdated(cipher, doc)]
        if not again:
            return
        for doc in again:
            log.warning(
                "connection %s: old-key secrets reappeared (an edit overlapped its rotation); rotating again",
                doc["_id"],
            )
            # Counted once already: only what is re-encrypted now adds up.
            await _rotate_one(store, cipher, doc, report, count_current=False)
    for doc in [d async for d in store.all() if d["_id"] not in report.failed]:
        if _outdated(cipher, doc):
            log.error("connection %s: still has secrets under an old key; run rotate-keys again", doc["_id"])
            report.failed.append(doc["_id"])


class _ChangedMeanwhile(Exception):
    """The document's ciphertexts changed between reading and rotating them."""


async def _rotate_one(
    store: ConnectionStore,
    cipher: CredentialCipher,
    doc: Doc,
    report: RotationReport,
    count_current: bool = True,
) -> None:
    """Rotate one document's secrets; a concurrent edit makes it re-read and try again."""
    ws, cid = doc["workspace_id"], doc["_id"]
    try:
        async for attempt in backoff(attempts=_ATTEMPTS, first_s=0.05, max_s=0.5, retry_on=(_ChangedMeanwhile,)):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    fresh = await store.get(ws, cid)
                    if fresh is None:
                        return  # deleted meanwhile: nothing to rotate
                    doc = fresh
                await _rotate_fields(store, cipher, doc, report, count_current)
    except InvalidToken:
        # No configured master key opens it: an old key was dropped too early.
        log.error("connection %s: a secret can't be decrypted with any master key", cid)
        report.failed.append(cid)
    except _ChangedMeanwhile:
        log.error("connection %s: kept changing during rotation; run rotate-keys again", cid)
        report.failed.append(cid)


async def _rotate_fields(
    store: ConnectionStore, cipher: CredentialCipher, doc: Doc, report: RotationReport, count_current: bool
) -> None:
    """One compare-and-set of every ciphertext not yet under the newest key."""
    ws, cid = doc["workspace_id"], doc["_id"]
    new: dict[str, str] = {}
    expect: dict[str, str] = {}
    current = 0
    for name in ENCRYPTED_FIELDS:
        old = doc.get(name)
        if not old:
            continue
        if cipher.is_current(ws, old):
            current += 1
            continue
        new[name] = cipher.rotate(ws, old)
        expect[name] = old
    if new and await store.update(ws, cid, {"$set": new}, expect=expect) is None:
        raise _ChangedMeanwhile
    report.rotated_secrets += len(new)
    if count_current:
        report.already_current += current
