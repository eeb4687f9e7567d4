"""The durable journal of ETSI 020 hand-offs (SQLite in data_dir): what came in, what went out.

incoming: one row per key handed to this KM — digest of its value, its state
(received → relayed | failed | voided), the sending peer, whether the ack reached it. The value
itself stays only while the key still has to be forwarded (a restart resumes it), and is wiped
when the key leaves the state `received`.
A void taken by this KM is journaled per key (`void`: owed → voided | delivered) until the
keys it sent on were taken back too (a restart finishes it).
outgoing: one row per key this KM handed off — the peer and its state
(sent → relayed | failed | voiding → voided).
Every method is one transaction: a kill -9 between two calls loses nothing acknowledged.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from km.interdomain.core import HandOff, WireError, digest, same_value
from km.key_store import StoredKey

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incoming (
    key_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,           -- SHA-256 of the value, hex
    material BLOB,                  -- the value while state = received, else NULL
    size_bits INTEGER NOT NULL,
    master TEXT NOT NULL,
    targets TEXT NOT NULL,          -- JSON array
    expires_at REAL,
    peer TEXT NOT NULL,             -- the kme_id that handed it over
    callback TEXT NOT NULL,         -- its ack_callback_url
    batch TEXT NOT NULL,            -- key_id of the first key of its hand-off
    state TEXT NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    void TEXT                       -- NULL, or a void's progress: owed | voided | delivered
);
CREATE INDEX IF NOT EXISTS incoming_open ON incoming (state, acked);
CREATE TABLE IF NOT EXISTS outgoing (
    key_id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    master TEXT NOT NULL,
    targets TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outgoing_state ON outgoing (state);
"""


class InState(enum.StrEnum):
    RECEIVED = "received"
    RELAYED = "relayed"
    FAILED = "failed"
    VOIDED = "voided"


class VoidState(enum.StrEnum):
    """Where a void received for an incoming key stands (the journal's `void` column)."""

    OWED = "owed"  # the keys sent on (relayed in this domain, handed off) are not back yet
    VOIDED = "voided"  # gone everywhere they went (removed, never arrived, or expired)
    DELIVERED = "delivered"  # a slave SAE had claimed it already: the void failed


class OutState(enum.StrEnum):
    SENT = "sent"
    RELAYED = "relayed"
    FAILED = "failed"
    VOIDING = "voiding"  # a void is owed to the peer (retried in the background)
    VOIDED = "voided"


@dataclass(frozen=True)
class Incoming:
    """A journaled incoming key, without its value."""

    key_id: str
    peer: str
    master: str
    targets: tuple[str, ...]
    callback: str
    batch: str
    state: InState
    acked: bool
    void: VoidState | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class Outgoing:
    key_id: str
    peer: str
    master: str
    targets: tuple[str, ...]
    state: OutState


@dataclass(frozen=True)
class Received:
    """What one ext_keys did to the journal."""

    new: tuple[str, ...]
    duplicates: tuple[str, ...]


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)  # it holds key values until they are forwarded
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete=ON")  # a wiped value leaves no copy in the file
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(incoming)")}
        if "void" not in columns:  # a journal from before voids travelled inside the domain
            self._db.execute("ALTER TABLE incoming ADD COLUMN void TEXT")

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"Journal({self.path})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ---------------------------------------------------------------- incoming

    def receive(self, hand_off: HandOff, peer: str, now: float) -> Received:
        """Journals the keys of one ext_keys: all or none.

        A key_ID journaled before with the same value from the same peer is a duplicate (a
        retry); with another value, or from another peer, WireError and nothing changes."""
        new: list[str] = []
        duplicates: list[str] = []
        batch = hand_off.keys[0].key_id
        with self._transaction() as db:
            for index, key in enumerate(hand_off.keys):
                row = db.execute(
                    "SELECT digest, material, peer FROM incoming WHERE key_id = ?", (key.key_id,)
                ).fetchone()
                if row is None:
                    db.execute(
                        "INSERT INTO incoming (key_id, digest, material, size_bits, master,"
                        " targets, expires_at, peer, callback, batch, state, created)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            key.key_id,
                            digest(key.material),
                            key.material,
                            key.size_bits,
                            hand_off.master,
                            json.dumps(list(hand_off.targets)),
                            key.expires_at,
                            peer,
                            hand_off.callback,
                            batch,
                            InState.RECEIVED.value,
                            now,
                        ),
                    )
                    new.append(key.key_id)
                    continue
                known_digest, material, known_peer = row
                same = (
                    same_value(bytes(material), key.material)
                    if material is not None
                    else same_value(str(known_digest).encode(), digest(key.material).encode())
                )
                if not same or known_peer != peer:
                    raise WireError(f"keys[{index}].key_id", "already received with another value")
                duplicates.append(key.key_id)
        return Received(tuple(new), tuple(duplicates))

    def incoming(self, key_ids: Sequence[str]) -> dict[str, Incoming]:
        found: dict[str, Incoming] = {}
        for key_id in key_ids:
            row = self._db.execute(
                f"SELECT {_INCOMING} FROM incoming WHERE key_id = ?",
                (key_id,),
            ).fetchone()
            if row is not None:
                found[key_id] = _incoming(row)
        return found

    def to_forward(self) -> list[HandOff]:
        """Every journaled hand-off with keys still in state `received` (to resume)."""
        rows = self._db.execute(
            "SELECT key_id, material, size_bits, master, targets, expires_at, callback, batch"
            " FROM incoming WHERE state = ? ORDER BY rowid",
            (InState.RECEIVED.value,),
        ).fetchall()
        batches: dict[str, list[tuple[object, ...]]] = {}
        for row in rows:
            batches.setdefault(str(row[7]), []).append(row)
        found: list[HandOff] = []
        for group in batches.values():
            keys = tuple(
                StoredKey(
                    key_id=str(r[0]),
                    material=bytes(r[1]),  # type: ignore[call-overload]
                    size_bits=int(r[2]),  # type: ignore[call-overload]
                    master=str(r[3]),
                    slaves=tuple(json.loads(str(r[4]))),
                    expires_at=None if r[5] is None else float(r[5]),  # type: ignore[arg-type]
                )
                for r in group
            )
            found.append(HandOff(keys, keys[0].master, keys[0].slaves, str(group[0][6])))
        return found

    def unacked(self) -> list[Incoming]:
        """Keys whose fate is settled (relayed, failed, voided) but whose ack did not arrive."""
        rows = self._db.execute(
            f"SELECT {_INCOMING} FROM incoming WHERE state != ? AND acked = 0 ORDER BY rowid",
            (InState.RECEIVED.value,),
        ).fetchall()
        return [_incoming(row) for row in rows]

    def settle(self, key_ids: Sequence[str], state: InState) -> list[str]:
        """Moves keys still `received` to `state` (the value is wiped); returns those moved."""
        if state is InState.RECEIVED:
            raise ValueError("settle moves keys out of received")
        moved: list[str] = []
        with self._transaction() as db:
            for key_id in key_ids:
                cursor = db.execute(
                    "UPDATE incoming SET state = ?, material = NULL, acked = 0"
                    " WHERE key_id = ? AND state = ?",
                    (state.value, key_id, InState.RECEIVED.value),
                )
                if cursor.rowcount:
                    moved.append(key_id)
        return moved

    def begin_void(self, key_ids: Sequence[str]) -> None:
        """A void came: any state -> voided (value wiped, the void's answer is the ack), and
        the keys sent on are owed their void (unless a void of them began before)."""
        with self._transaction() as db:
            for key_id in key_ids:
                db.execute(
                    "UPDATE incoming SET state = ?, material = NULL, acked = 1,"
                    " void = COALESCE(void, ?) WHERE key_id = ?",
                    (InState.VOIDED.value, VoidState.OWED.value, key_id),
                )

    def end_void(self, outcomes: dict[str, VoidState]) -> None:
        """The void of these keys is over (voided or delivered); other keys are untouched."""
        with self._transaction() as db:
            for key_id, outcome in outcomes.items():
                if outcome is VoidState.OWED:
                    raise ValueError("end_void takes final outcomes only")
                db.execute(
                    "UPDATE incoming SET void = ? WHERE key_id = ? AND void = ?",
                    (outcome.value, key_id, VoidState.OWED.value),
                )

    def voids_in_progress(self) -> list[Incoming]:
        """Incoming keys whose void is still owed downstream (to finish after a restart)."""
        rows = self._db.execute(
            f"SELECT {_INCOMING} FROM incoming WHERE void = ? ORDER BY rowid",
            (VoidState.OWED.value,),
        ).fetchall()
        return [_incoming(row) for row in rows]

    def mark_acked(self, key_ids: Sequence[str], state: InState) -> None:
        """The ack for `state` reached the sender (only rows still in `state`)."""
        with self._transaction() as db:
            for key_id in key_ids:
                db.execute(
                    "UPDATE incoming SET acked = 1 WHERE key_id = ? AND state = ?",
                    (key_id, state.value),
                )

    # ---------------------------------------------------------------- outgoing

    def sent(self, keys: Sequence[StoredKey], peer: str, now: float) -> None:
        """Journals keys about to be handed to `peer` (a retry keeps the rows as they are)."""
        with self._transaction() as db:
            for key in keys:
                db.execute(
                    "INSERT OR IGNORE INTO outgoing (key_id, peer, master, targets, state,"
                    " created) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        key.key_id,
                        peer,
                        key.master,
                        json.dumps(list(key.slaves)),
                        OutState.SENT.value,
                        now,
                    ),
                )

    def outgoing(self, key_ids: Sequence[str]) -> dict[str, Outgoing]:
        found: dict[str, Outgoing] = {}
        for key_id in key_ids:
            row = self._db.execute(
                "SELECT key_id, peer, master, targets, state FROM outgoing WHERE key_id = ?",
                (key_id,),
            ).fetchone()
            if row is not None:
                found[key_id] = Outgoing(
                    str(row[0]),
                    str(row[1]),
                    str(row[2]),
                    tuple(json.loads(str(row[3]))),
                    OutState(str(row[4])),
                )
        return found

    def set_outgoing(
        self, key_ids: Sequence[str], state: OutState, *, only_from: Sequence[OutState] = ()
    ) -> list[str]:
        """Sets the state of outgoing keys (only those in `only_from`, if given)."""
        changed: list[str] = []
        with self._transaction() as db:
            for key_id in key_ids:
                if only_from:
                    marks = ",".join("?" for _ in only_from)
                    cursor = db.execute(
                        f"UPDATE outgoing SET state = ? WHERE key_id = ? AND state IN ({marks})",
                        (state.value, key_id, *(s.value for s in only_from)),
                    )
                else:
                    cursor = db.execute(
                        "UPDATE outgoing SET state = ? WHERE key_id = ?", (state.value, key_id)
                    )
                if cursor.rowcount:
                    changed.append(key_id)
        return changed

    def voids_owed(self) -> dict[str, list[str]]:
        """peer -> key_IDs whose void has not reached it yet."""
        owed: dict[str, list[str]] = {}
        for key_id, peer in self._db.execute(
            "SELECT key_id, peer FROM outgoing WHERE state = ? ORDER BY rowid",
            (OutState.VOIDING.value,),
        ):
            owed.setdefault(str(peer), []).append(str(key_id))
        return owed

    def purge(self, before: float) -> int:
        """Forgets settled rows created before `before` (incoming: acked; outgoing: no void
        owed); a row still `received`, `sent` or `voiding` stays. Returns how many went.
        A key_ID forgotten is no longer recognised as a retry: keep rows far longer than any
        retry lasts."""
        with self._transaction() as db:
            gone = db.execute(
                "DELETE FROM incoming WHERE created < ? AND acked = 1 AND state != ?"
                " AND (void IS NULL OR void != ?)",
                (before, InState.RECEIVED.value, VoidState.OWED.value),
            ).rowcount
            gone += db.execute(
                "DELETE FROM outgoing WHERE created < ? AND state IN (?, ?, ?)",
                (before, OutState.RELAYED.value, OutState.FAILED.value, OutState.VOIDED.value),
            ).rowcount
        return int(gone)

    def counts(self) -> dict[str, int]:
        """Rows per table and state, e.g. {"incoming.received": 3} (tests, status)."""
        found: dict[str, int] = {}
        for table in ("incoming", "outgoing"):
            for state, count in self._db.execute(
                f"SELECT state, COUNT(*) FROM {table} GROUP BY state"
            ):
                found[f"{table}.{state}"] = int(count)
        return found


_INCOMING = "key_id, peer, master, targets, callback, batch, state, acked, void, expires_at"


def _incoming(row: tuple[object, ...]) -> Incoming:
    return Incoming(
        key_id=str(row[0]),
        peer=str(row[1]),
        master=str(row[2]),
        targets=tuple(json.loads(str(row[3]))),
        callback=str(row[4]),
        batch=str(row[5]),
        state=InState(str(row[6])),
        acked=bool(row[7]),
        void=None if row[8] is None else VoidState(str(row[8])),
        expires_at=None if row[9] is None else float(str(row[9])),
    )
