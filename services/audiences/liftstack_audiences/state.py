"""One sync's de-duplication set and checkpoint, in a SQLite file on disk.

Why SQLite: the set of members already seen must cover 500k+ identifiers with flat
memory and be fast (one indexed insert per line, ~µs). A Mongo unique index would
also survive losing the host, but costs a network round trip per batch plus a
"published" flag (FerretDB has no transactions), and is several times slower.

Why one transaction per batch: members of the batch being built are inserted
uncommitted; the transaction commits (with the new counters) only after Kafka has
acknowledged the batch. So the committed set is exactly "published by this sync",
and a crash or failed publish rolls the set back to match what Kafka has.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Counts:
    """Progress of a sync. `lines` is how many non-blank lines of the getUsers stream
    have been accounted for (member, invalid or duplicate)."""

    lines: int = 0
    members: int = 0
    invalid: int = 0
    duplicates: int = 0
    batches: int = 0

    def copy(self) -> Counts:
        return Counts(self.lines, self.members, self.invalid, self.duplicates, self.batches)


class SyncState:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and committed explicitly.
        self._db = sqlite3.connect(path, isolation_level=None)
        # WAL + synchronous=NORMAL: a commit survives a process crash (what we
        # need) without an fsync per batch.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0),"
            " lines INTEGER, members INTEGER, invalid INTEGER, duplicates INTEGER,"
            " batches INTEGER)"
        )

    @classmethod
    def for_sync(cls, state_dir: Path, sync_id: str) -> SyncState:
        return cls(state_dir / f"{sync_id}.sqlite")

    def checkpoint(self) -> Counts | None:
        """The counters as of the last committed batch, or None for a fresh file."""
        row = self._db.execute(
            "SELECT lines, members, invalid, duplicates, batches FROM checkpoint WHERE id = 0"
        ).fetchone()
        return Counts(*row) if row else None

    def begin(self) -> None:
        self._db.execute("BEGIN")

    def add(self, key: str) -> bool:
        """True if `key` is new to this sync (it is now in the uncommitted set)."""
        return self._db.execute("INSERT OR IGNORE INTO seen (key) VALUES (?)", (key,)).rowcount == 1

    def commit(self, counts: Counts) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO checkpoint (id, lines, members, invalid, duplicates, batches)"
            " VALUES (0, ?, ?, ?, ?, ?)",
            (counts.lines, counts.members, counts.invalid, counts.duplicates, counts.batches),
        )
        self._db.execute("COMMIT")

    def rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self.rollback()
        self._db.close()

    def delete(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def remove_expired(state_dir: Path, older_than_s: float) -> int:
    """Delete state files of syncs that never finished, once they are too old to be
    worth resuming. Returns how many syncs' files were removed."""
    if not state_dir.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in state_dir.glob("*.sqlite"):
        try:
            if path.stat().st_mtime < cutoff:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                removed += 1
        except OSError as exc:
            log.warning("could not remove audience state %s: %s", path.name, exc)
    if removed:
        log.info("removed %d expired audience sync state files", removed)
    return removed
