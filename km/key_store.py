"""Exactly-once store of end-to-end keys, one SQLite file (WAL) per key manager.

A key enters the store in one of two states:
- *ready for the master*: relayed ahead at the source KM, waiting for the master's `enc_keys`
  (`take_ready` hands it out once and removes it; the slaves claim their copy at their own KM);
- *waiting for the slaves*: each listed slave may `claim` it exactly once (`dec_keys`); the
  key is gone after the last slave took it.

Keys with consecutive key_IDs (one `enc_keys` draws them so, see `KeyBatch`) share one row:
one material blob and, per slave, a bitmap of the keys it has not claimed yet. Storing a
request of 128 keys costs one row instead of 128 (measured: bench/etsi014.py). Keys with
unrelated key_IDs (relayed ones, ETSI 004 streams) are rows of one key.

Every method is one SQLite transaction, so a crash (even `kill -9`) between two calls loses
no key and hands out none twice. WAL with `synchronous=NORMAL` is durable against a process
crash (only an OS crash may lose the last transactions).
"""

from __future__ import annotations

import binascii
import enum
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import overload

SCHEMA_VERSION = 4
AUTO_CHECKPOINT_PAGES = 16384  # 64 MiB of WAL at most between two checkpoints
_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,         -- insertion order (oldest relayed-ahead key first)
    first_id BLOB NOT NULL UNIQUE,   -- key_ID of the first key, 16 bytes big-endian
    last_id BLOB NOT NULL,           -- key_ID of the last key (rows never overlap)
    count INTEGER NOT NULL,          -- key_IDs first_id .. first_id + count - 1
    material BLOB NOT NULL,          -- count keys of size_bits each, in key_ID order
    size_bits INTEGER NOT NULL,
    master TEXT NOT NULL,
    slaves TEXT NOT NULL,            -- JSON array, in request order
    pending BLOB NOT NULL,           -- per distinct slave: bitmap of the keys it may still get
    live INTEGER NOT NULL,           -- keys some slave (ready: the master) may still get
    expires_at REAL,
    ready_for_master INTEGER NOT NULL,
    ready_slave TEXT,                -- the single slave of keys relayed ahead, else NULL
    origin TEXT,                     -- qkd / pqc / hybrid (km/pqc/origins.py), NULL: unsaid
    key_mode TEXT                    -- key mode the keys were drawn under, NULL: unsaid
);
CREATE INDEX IF NOT EXISTS batches_ready ON batches (master, ready_slave, size_bits)
    WHERE ready_for_master = 1;
-- Keys expire in the order they were made: this index grows at its end, and the periodic
-- purge (on the KM's event loop) reads only the expired rows instead of the whole table.
CREATE INDEX IF NOT EXISTS batches_expiry ON batches (expires_at) WHERE expires_at IS NOT NULL;
-- A void's mark per key_ID (km/interdomain: a key taken back): such a key_ID is never stored
-- again, and a repeated void gets the same outcome. Kept until `keep_until`.
CREATE TABLE IF NOT EXISTS voided (
    key_id BLOB PRIMARY KEY,         -- 16 bytes big-endian
    outcome TEXT NOT NULL,           -- voided | not present (when the void came)
    keep_until REAL NOT NULL
);
-- Ranges of key_IDs whose row left the store because every slave claimed every key: a void
-- coming later learns that they were delivered. No material.
CREATE TABLE IF NOT EXISTS spent (
    first_id BLOB PRIMARY KEY,
    last_id BLOB NOT NULL,
    keep_until REAL NOT NULL
);
"""
# How long a void's mark (and a spent range without expiry) is kept: far longer than a relay
# or a void's retries last.
VOID_KEEP_S = 86400.0
_COLUMNS = (
    "seq, first_id, count, material, size_bits, master, slaves, pending, live, expires_at,"
    " ready_for_master, origin, key_mode"
)
_INSERT = (
    "INSERT INTO batches (first_id, last_id, count, material, size_bits, master, slaves,"
    " pending, live, expires_at, ready_for_master, ready_slave, origin, key_mode)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
OVERLAP_CHECK_CHUNK = 256  # new rows per overlap query (2 parameters each)
_KEY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ID_LIMIT = 1 << 128


def format_key_id(value: int) -> str:
    """The canonical (lower-case, 8-4-4-4-12) text of a 128-bit key_ID."""
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def key_id_value(key_id: str) -> int | None:
    """The 128-bit value of a canonical key_ID; None for any other text."""
    if not _KEY_ID.fullmatch(key_id):
        return None
    return int(key_id.replace("-", ""), 16)


@dataclass(frozen=True, repr=False)
class StoredKey:
    """One end-to-end key. `repr`/`str` never show the material."""

    key_id: str
    material: bytes
    size_bits: int
    master: str
    slaves: tuple[str, ...]
    expires_at: float | None
    # Where the key came from and under which key mode (km/pqc), kept with the key so that a
    # restarted KM still reports them at dec_keys; None: not said (a relayed key without mode).
    origin: str | None = None
    key_mode: str | None = None

    def __repr__(self) -> str:
        return (
            f"StoredKey(key_id={self.key_id!r}, size_bits={self.size_bits}, "
            f"master={self.master!r}, slaves={self.slaves!r}, expires_at={self.expires_at!r}, "
            f"origin={self.origin!r}, key_mode={self.key_mode!r}, material=<hidden>)"
        )

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class KeyBatch(Sequence[StoredKey]):
    """`number` keys with consecutive key_IDs from `first_id`, sharing master, slaves, size and
    expiry: a sequence of StoredKey made on access, so a request of 128 keys builds no
    per-key objects on its way to the store and the wire. `repr` never shows the material."""

    first_id: int
    number: int
    material: bytes
    size_bits: int
    master: str
    slaves: tuple[str, ...]
    expires_at: float | None
    origin: str | None = None
    key_mode: str | None = None

    def __repr__(self) -> str:
        return (
            f"KeyBatch(first_key_id={format_key_id(self.first_id)!r}, number={self.number}, "
            f"size_bits={self.size_bits}, master={self.master!r}, slaves={self.slaves!r}, "
            f"expires_at={self.expires_at!r}, material=<hidden>)"
        )

    __str__ = __repr__

    def __len__(self) -> int:
        return self.number

    @overload
    def __getitem__(self, index: int) -> StoredKey: ...

    @overload
    def __getitem__(self, index: slice) -> list[StoredKey]: ...

    def __getitem__(self, index: int | slice) -> StoredKey | list[StoredKey]:
        if isinstance(index, slice):
            return [self._key(i) for i in range(*index.indices(self.number))]
        if index < 0:
            index += self.number
        if not 0 <= index < self.number:
            raise IndexError("KeyBatch index out of range")
        return self._key(index)

    def __iter__(self) -> Iterator[StoredKey]:
        return (self._key(i) for i in range(self.number))

    def _key(self, index: int) -> StoredKey:
        size = self.size_bits // 8
        return StoredKey(
            format_key_id(self.first_id + index),
            self.material[index * size : (index + 1) * size],
            self.size_bits,
            self.master,
            self.slaves,
            self.expires_at,
            self.origin,
            self.key_mode,
        )

    def key_ids(self) -> list[str]:
        low = self.first_id & 0xFFFF
        if low + self.number <= 0x10000:  # only the last 4 hex digits change
            head = format_key_id(self.first_id)[:32]
            return [f"{head}{low + i:04x}" for i in range(self.number)]
        return [format_key_id(self.first_id + i) for i in range(self.number)]

    def materials_base64(self) -> list[str]:
        size = self.size_bits // 8
        material = self.material
        return [
            binascii.b2a_base64(material[i : i + size], newline=False).decode("ascii")
            for i in range(0, size * self.number, size)
        ]


def batches_of(keys: Sequence[StoredKey]) -> list[KeyBatch]:
    """`keys` (in order) as runs of consecutive key_IDs with equal attributes."""
    if isinstance(keys, KeyBatch):
        return [keys]
    runs: list[tuple[int, list[StoredKey]]] = []
    previous = -2
    for key in keys:
        value = key_id_value(key.key_id)
        if value is None:
            raise ValueError(f"key_ID {key.key_id!r} is not a lower-case UUID string")
        if runs and value == previous + 1 and _same_batch(runs[-1][1][-1], key):
            runs[-1][1].append(key)
        else:
            runs.append((value, [key]))
        previous = value
    return [
        KeyBatch(
            first,
            len(run),
            b"".join(k.material for k in run),
            run[0].size_bits,
            run[0].master,
            run[0].slaves,
            run[0].expires_at,
            run[0].origin,
            run[0].key_mode,
        )
        for first, run in runs
    ]


def _same_batch(a: StoredKey, b: StoredKey) -> bool:
    return (a.size_bits, a.master, a.slaves, a.expires_at, a.origin, a.key_mode) == (
        b.size_bits,
        b.master,
        b.slaves,
        b.expires_at,
        b.origin,
        b.key_mode,
    )


class ClaimFailure(enum.Enum):
    UNKNOWN_KEY = "unknown key_ID"
    WRONG_MASTER = "key_ID was issued to another master SAE"
    NOT_A_SLAVE = "key_ID was not issued for this SAE"
    ALREADY_CLAIMED = "key_ID already delivered to this SAE"
    NOT_DELIVERED = "key_ID not yet delivered to its master SAE"
    EXPIRED = "key_ID expired"
    DUPLICATE_REQUEST = "key_ID listed twice in one request"


class VoidOutcome(enum.Enum):
    """What a void did to one key_ID at this store."""

    VOIDED = "voided"  # removed before any slave got it (or voided before)
    DELIVERED = "delivered"  # a slave already claimed it: nothing was removed
    NOT_PRESENT = "not present"  # never held here (or expired): it can no longer be stored


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
        if version not in (0, 2, 3, SCHEMA_VERSION):
            self._db.close()
            raise ValueError(f"{path}: key store schema {version}, expected {SCHEMA_VERSION}")
        self._db.executescript(_SCHEMA)
        if version == 2:
            with self._transaction() as db:
                _migrate_from_v2(db)
        if version == 3:
            with self._transaction() as db:
                _migrate_from_v3(db)
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

    @property
    def changes(self) -> int:
        """Rows written since the store opened: unchanged means nothing to checkpoint."""
        with self._lock:
            return self._db.total_changes

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
        if not isinstance(keys, KeyBatch):
            for key in keys:
                _check_key(key, ready_for_master)
        self.add_batches(batches_of(keys), ready_for_master=ready_for_master)

    def add_batches(self, batches: Sequence[KeyBatch], *, ready_for_master: bool) -> None:
        """`add` of whole batches, in one transaction; all or none."""
        for batch in batches:
            _check_batch(batch, ready_for_master)
        ordered = sorted(batches, key=lambda b: b.first_id)
        for before, after in pairwise(ordered):
            if before.first_id + before.number > after.first_id:
                raise ValueError("a key_ID is given twice")
        rows = _batch_rows(batches, ready_for_master)
        try:
            with self._transaction() as db:
                if _overlaps_stored(db, rows):
                    raise ValueError("a key_ID is already in the store")
                if _overlaps_voided(db, rows):
                    raise ValueError("a key_ID was voided")
                db.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as exc:
            raise ValueError("a key_ID is already in the store") from exc

    def take_ready(self, master: str, slave: str, number: int, size_bits: int) -> list[StoredKey]:
        """Hands out (oldest first) and removes up to `number` keys relayed ahead for the pair."""
        if number <= 0:
            return []
        taken: list[StoredKey] = []
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM batches WHERE ready_for_master = 1 AND master = ?"
                " AND ready_slave = ? AND size_bits = ? ORDER BY seq LIMIT ?",
                (master, slave, size_bits, number),
            ).fetchall()
            for row in rows:
                stored = _Stored.of(row)
                take = min(number - len(taken), stored.count)
                taken.extend(stored.batch()[:take])
                if take == stored.count:
                    db.execute("DELETE FROM batches WHERE seq = ?", (stored.seq,))
                else:
                    # Keys relayed ahead leave from the front: the row keeps the rest as a
                    # shorter run, so a key handed out is in no row's range any more.
                    rest = stored.count - take
                    size = size_bits // 8
                    db.execute(
                        "UPDATE batches SET first_id = ?, count = ?, material = ?, pending = ?,"
                        " live = ? WHERE seq = ?",
                        (
                            _id_bytes(stored.first_id + take),
                            rest,
                            stored.material[take * size :],
                            _full_bitmap(rest),
                            rest,
                            stored.seq,
                        ),
                    )
                if len(taken) == number:
                    break
        return taken

    def count_ready(self, master: str, slave: str) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COALESCE(SUM(live), 0) FROM batches WHERE ready_for_master = 1"
                " AND master = ? AND ready_slave = ?",
                (master, slave),
            ).fetchone()
        return int(count)

    def count_waiting(self, master: str, slave: str) -> int:
        """Keys that `slave` may still claim from `master` (a scan: for status and tests)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM batches WHERE master = ? AND ready_for_master = 0",
                (master,),
            ).fetchall()
        total = 0
        for row in rows:
            stored = _Stored.of(row)
            if slave in stored.distinct:
                total += stored.pending[stored.distinct.index(slave)].bit_count()
        return total

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
            touched: dict[int, _Stored] = {}
            claimed: list[StoredKey] = []
            for key_id in key_ids:
                stored, offset = _find(db, touched, key_id)
                _check_claim(stored, offset, slave, master, key_id, now)
                assert stored is not None
                stored.pending[stored.distinct.index(slave)] &= ~(1 << offset)
                claimed.append(stored.key(offset, key_id))
            _write_back(db, touched, now)
        return claimed

    def lookup(self, key_ids: Sequence[str]) -> dict[str, StoredKey]:
        """The keys of `key_ids` still held for some slave (or the master); others are absent.

        The returned keys carry their material: callers compare it, never log it."""
        found: dict[str, StoredKey] = {}
        with self._lock:
            touched: dict[int, _Stored] = {}
            for key_id in key_ids:
                stored, offset = _find(self._db, touched, key_id)
                if stored is not None and stored.live_mask() >> offset & 1:
                    found[key_id] = stored.key(offset, key_id)
        return found

    def discard(self, key_ids: Sequence[str]) -> int:
        """Removes the keys of `key_ids` that a slave (or the master) could still get: a void.
        Returns how many were removed; unknown or fully claimed key_IDs are skipped."""
        removed = 0
        with self._transaction() as db:
            touched: dict[int, _Stored] = {}
            for key_id in key_ids:
                stored, offset = _find(db, touched, key_id)
                if stored is None or not stored.live_mask() >> offset & 1:
                    continue
                for index in range(len(stored.pending)):
                    stored.pending[index] &= ~(1 << offset)
                removed += 1
            for stored in touched.values():
                live = stored.live_mask().bit_count()
                if live == 0:
                    db.execute("DELETE FROM batches WHERE seq = ?", (stored.seq,))
                else:
                    db.execute(
                        "UPDATE batches SET pending = ?, live = ? WHERE seq = ?",
                        (stored.pending_blob(), live, stored.seq),
                    )
        return removed

    def void(self, key_ids: Sequence[str], now: float) -> dict[str, VoidOutcome]:
        """Takes keys back (a void from the KM that relayed them), all in one transaction.

        A key no slave claimed yet is removed (VOIDED); one a slave claimed stays as it is
        (DELIVERED); one never held here is NOT_PRESENT. Every key_ID not delivered is marked:
        it is never stored afterwards (a relay still on its way is refused) and a repeated
        void answers the same. Unknown to dec_keys from then on, as any unknown key_ID."""
        outcomes: dict[str, VoidOutcome] = {}
        with self._transaction() as db:
            touched: dict[int, _Stored] = {}
            for key_id in dict.fromkeys(key_ids):
                value = key_id_value(key_id)
                if value is None:
                    raise ValueError(f"key_ID {key_id!r} is not a lower-case UUID string")
                marked = db.execute(
                    "SELECT outcome FROM voided WHERE key_id = ?", (_id_bytes(value),)
                ).fetchone()
                if marked is not None:
                    outcomes[key_id] = VoidOutcome(str(marked[0]))
                    continue
                stored, offset = _find(db, touched, key_id)
                outcome = _void_one(db, stored, offset, value)
                outcomes[key_id] = outcome
                if outcome is not VoidOutcome.DELIVERED:
                    keep = max(now + VOID_KEEP_S, (stored.expires_at or 0.0) if stored else 0.0)
                    db.execute(
                        "INSERT INTO voided (key_id, outcome, keep_until) VALUES (?, ?, ?)",
                        (_id_bytes(value), outcome.value, keep),
                    )
            _write_back(db, touched, now)  # voided keys are marked above
        return outcomes

    def purge_expired(self, now: float) -> int:
        """Deletes every key whose `expires_at` is at or before `now`; returns how many.
        Void marks and spent ranges kept until `now` go too."""
        with self._transaction() as db:
            db.execute("DELETE FROM voided WHERE keep_until <= ?", (now,))
            db.execute("DELETE FROM spent WHERE keep_until <= ?", (now,))
            (count,) = db.execute(
                "SELECT COALESCE(SUM(live), 0) FROM batches"
                " WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (now,),
            ).fetchone()
            db.execute(
                "DELETE FROM batches WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            )
        return int(count)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COALESCE(SUM(live), 0) FROM batches").fetchone()
        return int(count)


@dataclass(repr=False)
class _Stored:
    """One row being read or claimed from (mutable, private to one transaction)."""

    seq: int
    first_id: int
    count: int
    material: bytes
    size_bits: int
    master: str
    slaves: tuple[str, ...]
    distinct: list[str]
    pending: list[int]  # per distinct slave, bit i: key first_id + i still to be claimed
    expires_at: float | None
    ready_for_master: bool
    origin: str | None = None
    key_mode: str | None = None

    def __repr__(self) -> str:
        return f"_Stored(seq={self.seq}, count={self.count}, material=<hidden>)"

    @staticmethod
    def of(row: tuple[object, ...]) -> _Stored:
        seq, first, count, material, size_bits, master, slaves, pending, _, expires, *rest = row
        ready, origin, key_mode = rest
        assert isinstance(first, bytes) and isinstance(material, bytes)
        assert isinstance(slaves, str) and isinstance(pending, bytes)
        n = int(str(count))
        slave_ids = tuple(json.loads(slaves))
        distinct = list(dict.fromkeys(slave_ids))
        width = _bitmap_bytes(n)
        return _Stored(
            seq=int(str(seq)),
            first_id=int.from_bytes(first, "big"),
            count=n,
            material=material,
            size_bits=int(str(size_bits)),
            master=str(master),
            slaves=slave_ids,
            distinct=distinct,
            pending=[
                int.from_bytes(pending[i * width : (i + 1) * width], "little")
                for i in range(len(distinct))
            ],
            expires_at=None if expires is None else float(str(expires)),
            ready_for_master=bool(ready),
            origin=None if origin is None else str(origin),
            key_mode=None if key_mode is None else str(key_mode),
        )

    def live_mask(self) -> int:
        mask = 0
        for bits in self.pending:
            mask |= bits
        return mask

    def pending_blob(self) -> bytes:
        width = _bitmap_bytes(self.count)
        return b"".join(bits.to_bytes(width, "little") for bits in self.pending)

    def key(self, offset: int, key_id: str) -> StoredKey:
        size = self.size_bits // 8
        return StoredKey(
            key_id,
            self.material[offset * size : (offset + 1) * size],
            self.size_bits,
            self.master,
            self.slaves,
            self.expires_at,
            self.origin,
            self.key_mode,
        )

    def batch(self) -> KeyBatch:
        return KeyBatch(
            self.first_id,
            self.count,
            self.material,
            self.size_bits,
            self.master,
            self.slaves,
            self.expires_at,
            self.origin,
            self.key_mode,
        )


def _find(
    db: sqlite3.Connection, touched: dict[int, _Stored], key_id: str
) -> tuple[_Stored | None, int]:
    """The row holding `key_id` (from `touched` if this transaction changed it) and the key's
    offset in it; (None, 0) when no row's range holds it."""
    value = key_id_value(key_id)
    if value is None:
        return None, 0
    if touched:  # a request's keys mostly come from the row of the key before
        last = touched[next(reversed(touched))]
        if 0 <= value - last.first_id < last.count:
            return last, value - last.first_id
    row = db.execute(
        f"SELECT {_COLUMNS} FROM batches WHERE first_id <= ? ORDER BY first_id DESC LIMIT 1",
        (_id_bytes(value),),
    ).fetchone()
    if row is None:
        return None, 0
    seq = int(row[0])
    stored = touched.get(seq)
    if stored is None:
        stored = _Stored.of(row)
    offset = value - stored.first_id
    if offset >= stored.count:
        return None, 0
    touched[seq] = stored
    return stored, offset


def _check_claim(
    stored: _Stored | None, offset: int, slave: str, master: str, key_id: str, now: float | None
) -> None:
    if stored is None or not stored.live_mask() >> offset & 1:
        raise KeyClaimError(ClaimFailure.UNKNOWN_KEY, key_id)
    if stored.master != master:
        raise KeyClaimError(ClaimFailure.WRONG_MASTER, key_id)
    if slave not in stored.distinct:
        raise KeyClaimError(ClaimFailure.NOT_A_SLAVE, key_id)
    if stored.ready_for_master:
        raise KeyClaimError(ClaimFailure.NOT_DELIVERED, key_id)
    if now is not None and stored.expires_at is not None and stored.expires_at <= now:
        raise KeyClaimError(ClaimFailure.EXPIRED, key_id)
    if not stored.pending[stored.distinct.index(slave)] >> offset & 1:
        raise KeyClaimError(ClaimFailure.ALREADY_CLAIMED, key_id)


def _void_one(
    db: sqlite3.Connection, stored: _Stored | None, offset: int, value: int
) -> VoidOutcome:
    """The void of one key (not marked yet) in `stored` (changed in place, written later)."""
    if stored is not None:
        live = [bits >> offset & 1 for bits in stored.pending]
        if all(live):  # no slave has it: removed
            for index in range(len(stored.pending)):
                stored.pending[index] &= ~(1 << offset)
            return VoidOutcome.VOIDED
        return VoidOutcome.DELIVERED  # a slave claimed it (a void removes all slaves at once)
    spent = db.execute(
        "SELECT 1 FROM spent WHERE first_id = (SELECT MAX(first_id) FROM spent"
        " WHERE first_id <= ?1) AND last_id >= ?1",
        (_id_bytes(value),),
    ).fetchone()
    return VoidOutcome.NOT_PRESENT if spent is None else VoidOutcome.DELIVERED


def _write_back(db: sqlite3.Connection, touched: Mapping[int, _Stored], now: float | None) -> None:
    """Stores the batches a claim or a void changed: a batch with no key left is deleted
    (its claimed keys remembered as spent), the others keep what is still pending."""
    for stored in touched.values():
        live = stored.live_mask().bit_count()
        if live == 0:
            db.execute("DELETE FROM batches WHERE seq = ?", (stored.seq,))
            _record_spent(db, stored, now)
        else:
            db.execute(
                "UPDATE batches SET pending = ?, live = ? WHERE seq = ?",
                (stored.pending_blob(), live, stored.seq),
            )


def _record_spent(db: sqlite3.Connection, stored: _Stored, now: float | None) -> None:
    """Every key of `stored` was claimed: its key_IDs are remembered (no material), for keys
    that came from another KM (relayed, exchanged: `origin` said) since only those can be
    voided later; kept until they expire (a void after that changes nothing anyway)."""
    if stored.origin is None or stored.ready_for_master:
        return
    at = time.time() if now is None else now
    keep = at + VOID_KEEP_S if stored.expires_at is None else max(stored.expires_at, at)
    db.execute(
        "INSERT OR REPLACE INTO spent (first_id, last_id, keep_until) VALUES (?, ?, ?)",
        (_id_bytes(stored.first_id), _id_bytes(stored.first_id + stored.count - 1), keep),
    )


def _overlaps_voided(db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> bool:
    """Whether a new row's key_ID range holds a key_ID marked by a void."""
    if db.execute("SELECT 1 FROM voided LIMIT 1").fetchone() is None:
        return False
    return any(
        db.execute(
            "SELECT 1 FROM voided WHERE key_id BETWEEN ? AND ? LIMIT 1", (row[0], row[1])
        ).fetchone()
        for row in rows
    )


def _overlaps_stored(db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> bool:
    """Whether a stored row holds a key_ID of the new rows (first_id, last_id first).

    Rows never overlap, so only the row starting last at or before a new last key_ID can
    (BLOB order is key_ID order). One query per chunk of rows: the seeks run inside SQLite."""
    for start in range(0, len(rows), OVERLAP_CHECK_CHUNK):
        chunk = rows[start : start + OVERLAP_CHECK_CHUNK]
        values = ",".join(["(?, ?)"] * len(chunk))
        query = (
            f"WITH new (f, l) AS (VALUES {values}) SELECT 1 FROM new JOIN batches AS b"
            " ON b.first_id = (SELECT MAX(first_id) FROM batches WHERE first_id <= new.l)"
            " WHERE b.last_id >= new.f LIMIT 1"
        )
        if db.execute(query, [value for row in chunk for value in row[:2]]).fetchone():
            return True
    return False


def _id_bytes(value: int) -> bytes:
    return value.to_bytes(16, "big")  # big-endian: SQLite's BLOB order is the key_ID order


def _bitmap_bytes(count: int) -> int:
    return (count + 7) // 8


def _full_bitmap(count: int) -> bytes:
    return ((1 << count) - 1).to_bytes(_bitmap_bytes(count), "little")


def _batch_rows(batches: Sequence[KeyBatch], ready_for_master: bool) -> list[tuple[object, ...]]:
    slaves_json: dict[tuple[str, ...], tuple[str, int]] = {}  # one encoding per slave set
    rows: list[tuple[object, ...]] = []
    for batch in batches:
        slaves = batch.slaves
        if slaves not in slaves_json:
            slaves_json[slaves] = (json.dumps(list(slaves)), len(dict.fromkeys(slaves)))
        text, distinct = slaves_json[slaves]
        rows.append(
            (
                _id_bytes(batch.first_id),
                _id_bytes(batch.first_id + batch.number - 1),
                batch.number,
                batch.material,
                batch.size_bits,
                batch.master,
                text,
                _full_bitmap(batch.number) * distinct,
                batch.number,
                batch.expires_at,
                int(ready_for_master),
                slaves[0] if ready_for_master else None,
                batch.origin,
                batch.key_mode,
            )
        )
    return rows


def _check_key(key: StoredKey, ready_for_master: bool) -> None:
    if not _KEY_ID.fullmatch(key.key_id):
        raise ValueError(f"key_ID {key.key_id!r} is not a lower-case UUID string")
    if key.size_bits <= 0 or key.size_bits % 8 or len(key.material) * 8 != key.size_bits:
        raise ValueError(f"key {key.key_id}: material length does not match size_bits")
    if not key.slaves:
        raise ValueError(f"key {key.key_id}: no slave SAE")
    if ready_for_master and len(key.slaves) != 1:
        raise ValueError(f"key {key.key_id}: a key relayed ahead serves exactly one slave SAE")


def _check_batch(batch: KeyBatch, ready_for_master: bool) -> None:
    problem = None
    if batch.number <= 0 or batch.first_id < 0 or batch.first_id + batch.number > _ID_LIMIT:
        problem = "key_IDs out of the 128-bit range or no key"
    elif batch.size_bits <= 0 or batch.size_bits % 8:
        problem = "size_bits must be a positive multiple of 8"
    elif len(batch.material) * 8 != batch.size_bits * batch.number:
        problem = "material length does not match size_bits"
    elif not batch.slaves:
        problem = "no slave SAE"
    elif ready_for_master and len(batch.slaves) != 1:
        problem = "keys relayed ahead serve exactly one slave SAE"
    if problem is not None:
        first = format_key_id(batch.first_id) if 0 <= batch.first_id < _ID_LIMIT else "?"
        raise ValueError(f"keys from {first}: {problem}")


def _migrate_from_v3(db: sqlite3.Connection) -> None:
    """Schema 3 had no origin and key mode: both NULL (not said) for the keys it holds."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    for column in ("origin", "key_mode"):
        if column not in columns:
            db.execute(f"ALTER TABLE batches ADD COLUMN {column} TEXT")


def _migrate_from_v2(db: sqlite3.Connection) -> None:
    """Schema 2 (one row per key, `pending` a JSON array) into rows of one key each."""
    rows = db.execute(
        "SELECT key_id, material, size_bits, master, slaves, pending, expires_at,"
        " ready_for_master, ready_slave FROM keys ORDER BY seq"
    ).fetchall()
    for key_id, material, size_bits, master, slaves, pending, expires, ready, ready_slave in rows:
        distinct = list(dict.fromkeys(json.loads(slaves)))
        waiting = set(distinct if ready else json.loads(pending or "[]"))
        bits = bytes(int(s in waiting) for s in distinct)
        db.execute(
            "INSERT INTO batches (first_id, last_id, count, material, size_bits, master, slaves,"
            " pending, live, expires_at, ready_for_master, ready_slave)"
            " VALUES (?1, ?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            (
                _id_bytes(int(key_id.replace("-", ""), 16)),
                material,
                size_bits,
                master,
                slaves,
                bits,
                int(any(bits)),
                expires,
                ready,
                ready_slave,
            ),
        )
    db.execute("DROP TABLE keys")
