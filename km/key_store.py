"""Exactly-once store of end-to-end keys, one SQLite file (WAL) per key manager.

A key enters the store in one of two states:
- *ready for the master*: relayed ahead at the source KM, waiting for the master's `enc_keys`
  (`take_ready` hands it out once and removes it; the slaves claim their copy at their own KM);
- *waiting for the slaves*: each listed slave may `claim` it exactly once (`dec_keys`); the row
  is deleted after the last slave took it.

Every method is one SQLite transaction, so a crash (even `kill -9`) between two calls loses
no key and hands out none twice. WAL with `synchronous=NORMAL` is durable against a process
crash (only an OS crash may lose the last transactions).
"""

from __future__ import annotations

import enum
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 2
AUTO_CHECKPOINT_PAGES = 16384  # 64 MiB of WAL at most between two checkpoints
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    seq INTEGER PRIMARY KEY,         -- insertion order (oldest relayed-ahead key first)
    key_id TEXT NOT NULL UNIQUE,
    material BLOB NOT NULL,
    size_bits INTEGER NOT NULL,
    master TEXT NOT NULL,
    slaves TEXT NOT NULL,            -- JSON array, in request order
    pending TEXT,                    -- JSON array of slaves that have not claimed it yet
    expires_at REAL,
    ready_for_master INTEGER NOT NULL,
    ready_slave TEXT                 -- the single slave of a key relayed ahead, else NULL
);
CREATE INDEX IF NOT EXISTS keys_ready ON keys (master, ready_slave, size_bits)
    WHERE ready_for_master = 1;
"""
# One table, one unique index: each stored key costs one row and two B-tree entries.
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, repr=False)
class StoredKey:
    """One end-to-end key. `repr`/`str` never show the material."""

    key_id: str
    material: bytes
    size_bits: int
    master: str
    slaves: tuple[str, ...]
    expires_at: float | None

    def __repr__(self) -> str:
        return (
            f"StoredKey(key_id={self.key_id!r}, size_bits={self.size_bits}, "
            f"master={self.master!r}, slaves={self.slaves!r}, expires_at={self.expires_at!r}, "
            "material=<hidden>)"
        )

    __str__ = __repr__


class ClaimFailure(enum.Enum):
    UNKNOWN_KEY = "unknown key_ID"
    WRONG_MASTER = "key_ID was issued to another master SAE"
    NOT_A_SLAVE = "key_ID was not issued for this SAE"
    ALREADY_CLAIMED = "key_ID already delivered to this SAE"
    NOT_DELIVERED = "key_ID not yet delivered to its master SAE"
    EXPIRED = "key_ID expired"
    DUPLICATE_REQUEST = "key_ID listed twice in one request"


class KeyClaimError(Exception):
    """A `claim` was refused; nothing changed. The message names the key_ID, never material."""

    def __init__(self, reason: ClaimFailure, key_id: str) -> None:
        super().__init__(f"{reason.value}: {key_id}")
        self.reason = reason
        self.key_id = key_id


class KeyStore:
    """Thread-safe; every public method is atomic (one transaction under one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise ValueError(f"{path}: key store schema {version}, expected {SCHEMA_VERSION}")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # Checkpoints (which fsync) are meant to run in `checkpoint()`, off the event loop;
        # the automatic one stays as a bound on the WAL's size if nobody calls it.
        self._db.execute(f"PRAGMA wal_autocheckpoint={AUTO_CHECKPOINT_PAGES}")
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None

    def close(self) -> None:
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self._lock:
            self._db.close()

    def checkpoint(self) -> int:
        """Copies the WAL into the database file; returns the pages copied.

        PASSIVE, on a connection of its own: it never blocks `add`/`claim`, so a KM runs it in
        a worker thread and the event loop never waits for its fsync (measured: p99 of
        enc_keys under load)."""
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    str(self.path), check_same_thread=False, isolation_level=None
                )
            _, _, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(copied)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, keys: Sequence[StoredKey], *, ready_for_master: bool) -> None:
        """Stores `keys`; all or none (a duplicate key_ID raises ValueError, nothing stored).

        ready_for_master=True: relayed ahead at the source KM, each for exactly one slave,
        waiting for the master's enc_keys. False: waiting for each slave's dec_keys.
        """
        for key in keys:
            _check_key(key, ready_for_master)
        slaves_json: dict[tuple[str, ...], str] = {}
        pending_json: dict[tuple[str, ...], str] = {}
        for key in keys:
            if key.slaves not in slaves_json:
                slaves_json[key.slaves] = json.dumps(list(key.slaves))
                pending_json[key.slaves] = json.dumps(list(dict.fromkeys(key.slaves)))
        rows = [
            (
                k.key_id,
                k.material,
                k.size_bits,
                k.master,
                slaves_json[k.slaves],
                None if ready_for_master else pending_json[k.slaves],
                k.expires_at,
                int(ready_for_master),
                k.slaves[0] if ready_for_master else None,
            )
            for k in keys
        ]
        try:
            with self._transaction() as db:
                db.executemany(
                    "INSERT INTO keys (key_id, material, size_bits, master, slaves, pending,"
                    " expires_at, ready_for_master, ready_slave) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError("a key_ID is already in the store") from exc

    def take_ready(self, master: str, slave: str, number: int, size_bits: int) -> list[StoredKey]:
        """Hands out (oldest first) and removes up to `number` keys relayed ahead for the pair."""
        if number <= 0:
            return []
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key_id, material, size_bits, master, slaves, expires_at FROM keys"
                " WHERE ready_for_master = 1 AND master = ? AND ready_slave = ? AND size_bits = ?"
                " ORDER BY seq LIMIT ?",
                (master, slave, size_bits, number),
            ).fetchall()
            db.executemany("DELETE FROM keys WHERE key_id = ?", [(r[0],) for r in rows])
        return [_row_to_key(r) for r in rows]

    def count_ready(self, master: str, slave: str) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM keys WHERE ready_for_master = 1 AND master = ?"
                " AND ready_slave = ?",
                (master, slave),
            ).fetchone()
        return int(count)

    def count_waiting(self, master: str, slave: str) -> int:
        """Keys that `slave` may still claim from `master` (a scan: for status and tests)."""
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM keys, json_each(keys.pending) AS p"
                " WHERE keys.master = ? AND p.value = ?",
                (master, slave),
            ).fetchone()
        return int(count)

    def claim(
        self, slave: str, master: str, key_ids: Sequence[str], *, now: float | None = None
    ) -> list[StoredKey]:
        """dec_keys: all or nothing, in the order asked; each slave gets each key exactly once.

        Raises KeyClaimError (nothing changed) on the first key_ID that cannot be claimed.
        `now` (seconds since the epoch) refuses expired keys; None skips the check.
        """
        if len(set(key_ids)) != len(key_ids):
            seen: set[str] = set()
            for key_id in key_ids:
                if key_id in seen:
                    raise KeyClaimError(ClaimFailure.DUPLICATE_REQUEST, key_id)
                seen.add(key_id)
        with self._transaction() as db:
            claimed: list[StoredKey] = []
            for key_id in key_ids:
                row = db.execute(
                    "SELECT key_id, material, size_bits, master, slaves, expires_at,"
                    " ready_for_master, pending FROM keys WHERE key_id = ?",
                    (key_id,),
                ).fetchone()
                key = _check_claim(row, slave, master, key_id, now)
                pending: list[str] = json.loads(row[7])
                if slave not in pending:
                    raise KeyClaimError(ClaimFailure.ALREADY_CLAIMED, key_id)
                pending.remove(slave)
                if pending:
                    db.execute(
                        "UPDATE keys SET pending = ? WHERE key_id = ?",
                        (json.dumps(pending), key_id),
                    )
                else:
                    db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
                claimed.append(key)
        return claimed

    def purge_expired(self, now: float) -> int:
        """Deletes every key whose `expires_at` is at or before `now`; returns how many."""
        with self._transaction() as db:
            return db.execute(
                "DELETE FROM keys WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).rowcount

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM keys").fetchone()
        return int(count)


def _check_key(key: StoredKey, ready_for_master: bool) -> None:
    if not _KEY_ID.fullmatch(key.key_id):
        raise ValueError(f"key_ID {key.key_id!r} is not a lower-case UUID string")
    if key.size_bits <= 0 or key.size_bits % 8 or len(key.material) * 8 != key.size_bits:
        raise ValueError(f"key {key.key_id}: material length does not match size_bits")
    if not key.slaves:
        raise ValueError(f"key {key.key_id}: no slave SAE")
    if ready_for_master and len(key.slaves) != 1:
        raise ValueError(f"key {key.key_id}: a key relayed ahead serves exactly one slave SAE")


def _row_to_key(row: tuple[object, ...]) -> StoredKey:
    key_id, material, size_bits, master, slaves, expires_at = row[:6]
    assert isinstance(material, bytes) and isinstance(slaves, str)
    return StoredKey(
        key_id=str(key_id),
        material=material,
        size_bits=int(str(size_bits)),
        master=str(master),
        slaves=tuple(json.loads(slaves)),
        expires_at=None if expires_at is None else float(str(expires_at)),
    )


def _check_claim(
    row: tuple[object, ...] | None, slave: str, master: str, key_id: str, now: float | None
) -> StoredKey:
    if row is None:
        raise KeyClaimError(ClaimFailure.UNKNOWN_KEY, key_id)
    key = _row_to_key(row)
    if key.master != master:
        raise KeyClaimError(ClaimFailure.WRONG_MASTER, key_id)
    if slave not in key.slaves:
        raise KeyClaimError(ClaimFailure.NOT_A_SLAVE, key_id)
    if row[6]:
        raise KeyClaimError(ClaimFailure.NOT_DELIVERED, key_id)
    if now is not None and key.expires_at is not None and key.expires_at <= now:
        raise KeyClaimError(ClaimFailure.EXPIRED, key_id)
    return key
