"""KeyStore: exactly-once delivery, all-or-nothing claims, expiry, durability, no leaks."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from km.key_store import (
    SCHEMA_VERSION,
    ClaimFailure,
    KeyBatch,
    KeyClaimError,
    KeyStore,
    StoredKey,
    batches_of,
    format_key_id,
)


def make_key(
    master: str = "A", slaves: tuple[str, ...] = ("B",), expires_at: float | None = None
) -> StoredKey:
    return StoredKey(str(uuid.uuid4()), secrets.token_bytes(32), 256, master, slaves, expires_at)


def test_repr_and_str_hide_material() -> None:
    key = make_key()
    assert key.material.hex() not in repr(key)
    assert str(key.material) not in str(key)
    assert "hidden" in repr(key)


def test_claim_is_exactly_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    key = make_key()
    store.add([key], ready_for_master=False)
    assert store.count_waiting("A", "B") == 1
    (got,) = store.claim("B", "A", [key.key_id])
    assert got.material == key.material
    with pytest.raises(KeyClaimError) as err:
        store.claim("B", "A", [key.key_id])
    assert err.value.reason is ClaimFailure.UNKNOWN_KEY
    assert len(store) == 0


def test_multicast_each_slave_once_then_deleted(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    key = make_key(slaves=("B", "C"))
    store.add([key], ready_for_master=False)
    assert store.claim("B", "A", [key.key_id])[0].material == key.material
    with pytest.raises(KeyClaimError) as err:
        store.claim("B", "A", [key.key_id])
    assert err.value.reason is ClaimFailure.ALREADY_CLAIMED
    assert len(store) == 1
    assert store.claim("C", "A", [key.key_id])[0].material == key.material
    assert len(store) == 0


def test_claim_all_or_nothing(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    good = make_key()
    store.add([good], ready_for_master=False)
    for bad_ids, reason in [
        ([good.key_id, str(uuid.uuid4())], ClaimFailure.UNKNOWN_KEY),
        ([good.key_id, good.key_id], ClaimFailure.DUPLICATE_REQUEST),
    ]:
        with pytest.raises(KeyClaimError) as err:
            store.claim("B", "A", bad_ids)
        assert err.value.reason is reason
    with pytest.raises(KeyClaimError) as err:
        store.claim("B", "X", [good.key_id])
    assert err.value.reason is ClaimFailure.WRONG_MASTER
    with pytest.raises(KeyClaimError) as err:
        store.claim("C", "A", [good.key_id])
    assert err.value.reason is ClaimFailure.NOT_A_SLAVE
    assert store.claim("B", "A", [good.key_id])[0].key_id == good.key_id


def test_ready_keys_go_to_the_master_once_in_order(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = [make_key() for _ in range(3)]
    store.add(keys, ready_for_master=True)
    assert store.count_ready("A", "B") == 3
    assert store.count_ready("A", "C") == 0
    assert store.take_ready("A", "B", 2, 512) == []
    first = store.take_ready("A", "B", 2, 256)
    assert [k.key_id for k in first] == [k.key_id for k in keys[:2]]
    with pytest.raises(KeyClaimError) as err:  # a ready key is not claimable by a slave
        store.claim("B", "A", [keys[2].key_id])
    assert err.value.reason is ClaimFailure.NOT_DELIVERED
    rest = store.take_ready("A", "B", 5, 256)
    assert [k.key_id for k in rest] == [keys[2].key_id]
    assert store.count_ready("A", "B") == 0


def test_bad_keys_refused_and_nothing_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    key = make_key()
    store.add([key], ready_for_master=False)
    with pytest.raises(ValueError):
        store.add([make_key(), key], ready_for_master=False)  # duplicate key_ID
    with pytest.raises(ValueError):
        store.add([make_key(slaves=("B", "C"))], ready_for_master=True)
    with pytest.raises(ValueError):
        store.add([StoredKey("x", b"123", 256, "A", ("B",), None)], ready_for_master=False)
    assert len(store) == 1


def test_expiry(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    old, new = make_key(expires_at=100.0), make_key(expires_at=200.0)
    store.add([old, new], ready_for_master=False)
    with pytest.raises(KeyClaimError) as err:
        store.claim("B", "A", [old.key_id], now=150.0)
    assert err.value.reason is ClaimFailure.EXPIRED
    assert store.purge_expired(150.0) == 1
    assert store.claim("B", "A", [new.key_id], now=150.0)[0].key_id == new.key_id


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    key = make_key()
    KeyStore(path).add([key], ready_for_master=False)
    assert KeyStore(path).claim("B", "A", [key.key_id])[0].material == key.material
    assert path.stat().st_mode & 0o077 == 0


def test_concurrent_claims_give_each_key_once(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = [make_key() for _ in range(200)]
    store.add(keys, ready_for_master=False)
    won: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        for key in keys:
            try:
                got = store.claim("B", "A", [key.key_id])
            except KeyClaimError:
                continue
            with lock:
                won.extend(k.key_id for k in got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(won) == sorted(k.key_id for k in keys)


def test_checkpoint_copies_the_wal_and_keeps_every_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    store = KeyStore(path)
    keys = [make_key() for _ in range(50)]
    store.add(keys, ready_for_master=False)
    assert store.checkpoint() > 0
    store.add([make_key()], ready_for_master=False)
    store.close()
    reopened = KeyStore(path)
    assert len(reopened) == 51
    assert reopened.claim("B", "A", [keys[0].key_id])[0].material == keys[0].material


def make_batch(
    number: int, slaves: tuple[str, ...] = ("B",), expires_at: float | None = None
) -> KeyBatch:
    first = uuid.uuid4().int & ~0xFFFFFFFF  # room for `number` consecutive key_IDs
    return KeyBatch(first, number, secrets.token_bytes(32 * number), 256, "A", slaves, expires_at)


def test_key_batch_is_a_sequence_of_keys_hiding_material() -> None:
    batch = make_batch(3)
    keys = list(batch)
    assert [k.key_id for k in keys] == batch.key_ids() == [k.key_id for k in batch[0:3]]
    assert [uuid.UUID(k).int for k in batch.key_ids()] == [batch.first_id + i for i in range(3)]
    assert b"".join(k.material for k in keys) == batch.material and batch[-1] == keys[2]
    assert batch.material.hex() not in repr(batch) and "hidden" in str(batch)
    with pytest.raises(IndexError):
        batch[3]


def test_batches_of_groups_consecutive_key_ids_only() -> None:
    batch = make_batch(4)
    other = make_key()
    runs = batches_of([*batch[:2], other, *batch[2:]])
    assert [(len(r), r.material) for r in runs] == [
        (2, batch.material[:64]),
        (1, other.material),
        (2, batch.material[64:]),
    ]


def test_one_row_per_batch_each_key_claimed_once_per_slave(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    batch = make_batch(20, slaves=("B", "C"))
    store.add(batch, ready_for_master=False)
    assert len(store) == 20 and store.count_waiting("A", "B") == store.count_waiting("A", "C") == 20
    ids = batch.key_ids()
    got = store.claim("B", "A", [ids[7], ids[3]])
    assert [k.material for k in got] == [batch[7].material, batch[3].material]
    with pytest.raises(KeyClaimError) as err:  # all or nothing: ids[5] stays claimable
        store.claim("B", "A", [ids[5], ids[3]])
    assert err.value.reason is ClaimFailure.ALREADY_CLAIMED
    assert store.count_waiting("A", "B") == 18 and len(store) == 20
    assert len(store.claim("C", "A", ids)) == 20
    assert len(store) == 18  # keys 3 and 7 went with their last slave
    with pytest.raises(KeyClaimError) as err:
        store.claim("C", "A", [ids[3]])
    assert err.value.reason is ClaimFailure.UNKNOWN_KEY
    rest = [i for n, i in enumerate(ids) if n not in (3, 7)]
    assert [k.key_id for k in store.claim("B", "A", rest)] == rest
    assert len(store) == 0
    with pytest.raises(KeyClaimError) as err:
        store.claim("B", "A", [ids[0]])
    assert err.value.reason is ClaimFailure.UNKNOWN_KEY


def test_a_key_id_inside_a_stored_batch_is_a_duplicate(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    batch = make_batch(10)
    store.add(batch, ready_for_master=False)
    inside = StoredKey(batch.key_ids()[4], bytes(32), 256, "A", ("B",), None)
    straddling = KeyBatch(batch.first_id - 2, 3, bytes(96), 256, "A", ("B",), None)
    fresh = make_key()
    for bad in ([fresh, inside], straddling, [fresh, fresh]):
        with pytest.raises(ValueError):
            store.add(bad, ready_for_master=False)
    assert len(store) == 10 and store.count_waiting("A", "B") == 10


def test_ready_batch_taken_from_the_front_and_put_back(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    batch = make_batch(5)
    store.add(batch, ready_for_master=True)
    first = store.take_ready("A", "B", 2, 256)
    assert [k.key_id for k in first] == batch.key_ids()[:2] and store.count_ready("A", "B") == 3
    store.add(first, ready_for_master=True)  # a relay failure gives them back
    assert store.count_ready("A", "B") == 5
    taken = store.take_ready("A", "B", 10, 256)
    assert sorted(k.key_id for k in taken) == batch.key_ids() and len(store) == 0


def test_purge_counts_keys_of_partly_claimed_batches(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    batch = make_batch(4, expires_at=100.0)
    store.add(batch, ready_for_master=False)
    store.claim("B", "A", batch.key_ids()[:1])
    assert store.purge_expired(99.0) == 0
    assert store.purge_expired(100.0) == 3 and len(store) == 0


def test_schema_2_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    waiting, ready = make_key(slaves=("B", "C")), make_key()
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE keys (seq INTEGER PRIMARY KEY, key_id TEXT NOT NULL UNIQUE,"
            " material BLOB NOT NULL, size_bits INTEGER NOT NULL, master TEXT NOT NULL,"
            " slaves TEXT NOT NULL, pending TEXT, expires_at REAL,"
            " ready_for_master INTEGER NOT NULL, ready_slave TEXT); PRAGMA user_version=2;"
        )
        db.execute(
            "INSERT INTO keys VALUES"
            " (1, ?, ?, 256, 'A', '[\"B\", \"C\"]', '[\"C\"]', NULL, 0, NULL)",
            (waiting.key_id, waiting.material),
        )
        db.execute(
            "INSERT INTO keys VALUES (2, ?, ?, 256, 'A', '[\"B\"]', NULL, NULL, 1, 'B')",
            (ready.key_id, ready.material),
        )
    store = KeyStore(path)
    assert len(store) == 2 and store.count_ready("A", "B") == 1
    with pytest.raises(KeyClaimError) as err:
        store.claim("B", "A", [waiting.key_id])
    assert err.value.reason is ClaimFailure.ALREADY_CLAIMED
    assert store.claim("C", "A", [waiting.key_id])[0].material == waiting.material
    assert store.take_ready("A", "B", 1, 256)[0].material == ready.material
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_the_origin_and_mode_of_a_key_survive_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    store = KeyStore(path)
    pqc = [replace(make_key(), origin="pqc", key_mode="qkd-preferred") for _ in range(3)]
    relayed = replace(make_key(), origin="qkd", key_mode="hybrid-either")
    plain = make_key()
    store.add([*pqc, relayed, plain], ready_for_master=False)
    store.close()
    again = KeyStore(path)
    got = again.claim("B", "A", [k.key_id for k in [*pqc, relayed, plain]])
    assert [(k.origin, k.key_mode) for k in got] == [("pqc", "qkd-preferred")] * 3 + [
        ("qkd", "hybrid-either"),
        (None, None),
    ]
    assert [k.material for k in got] == [k.material for k in [*pqc, relayed, plain]]
    again.close()


def test_consecutive_keys_of_another_origin_are_not_merged_into_one_row(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    first = int(uuid.uuid4()) & ~0xFF
    keys = [
        StoredKey(format_key_id(first + i), secrets.token_bytes(32), 256, "A", ("B",), None,
                  "pqc" if i < 2 else "hybrid", "hybrid-either")
        for i in range(4)
    ]  # fmt: skip
    assert [len(b) for b in batches_of(keys)] == [2, 2]
    store.add(keys, ready_for_master=False)
    got = store.claim("B", "A", [k.key_id for k in keys])
    assert [k.origin for k in got] == ["pqc", "pqc", "hybrid", "hybrid"]
    store.close()


def test_schema_3_store_gains_origin_columns_and_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    key = make_key()
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE batches (seq INTEGER PRIMARY KEY, first_id BLOB NOT NULL UNIQUE,"
            " last_id BLOB NOT NULL, count INTEGER NOT NULL, material BLOB NOT NULL,"
            " size_bits INTEGER NOT NULL, master TEXT NOT NULL, slaves TEXT NOT NULL,"
            " pending BLOB NOT NULL, live INTEGER NOT NULL, expires_at REAL,"
            " ready_for_master INTEGER NOT NULL, ready_slave TEXT); PRAGMA user_version=3;"
        )
        first = uuid.UUID(key.key_id).bytes
        db.execute(
            "INSERT INTO batches VALUES (1, ?, ?, 1, ?, 256, 'A', '[\"B\"]', x'01', 1, NULL, 0,"
            " NULL)",
            (first, first, key.material),
        )
    store = KeyStore(path)
    (got,) = store.claim("B", "A", [key.key_id])
    assert (got.material, got.origin, got.key_mode) == (key.material, None, None)
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4),
    claims=st.lists(
        st.tuples(st.sampled_from(["B", "C"]), st.lists(st.integers(0, 79), max_size=6)),
        max_size=25,
    ),
)
def test_claims_match_a_model_of_exactly_once(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    claims: list[tuple[str, list[int]]],
) -> None:
    store = KeyStore(tmp_path_factory.mktemp("model") / "keys.sqlite")
    batches = [make_batch(n, slaves=("B", "C")) for n in sizes]
    store.add_batches(batches, ready_for_master=False)
    ids = [key_id for batch in batches for key_id in batch.key_ids()]
    material = {k.key_id: k.material for batch in batches for k in batch}
    waiting = {slave: set(ids) for slave in ("B", "C")}  # the model
    for slave, picks in claims:
        asked = list(dict.fromkeys(ids[i % len(ids)] for i in picks))
        if not asked:
            continue
        if set(asked) <= waiting[slave]:
            got = store.claim(slave, "A", asked)
            assert [(k.key_id, k.material) for k in got] == [(i, material[i]) for i in asked]
            waiting[slave] -= set(asked)
        else:
            with pytest.raises(KeyClaimError):
                store.claim(slave, "A", asked)
        assert store.count_waiting("A", slave) == len(waiting[slave])
        assert len(store) == len(waiting["B"] | waiting["C"])
    store.close()
