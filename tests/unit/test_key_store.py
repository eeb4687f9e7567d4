"""KeyStore: exactly-once delivery, all-or-nothing claims, expiry, durability, no leaks."""

from __future__ import annotations

import secrets
import threading
import uuid
from pathlib import Path

import pytest

from km.key_store import ClaimFailure, KeyClaimError, KeyStore, StoredKey


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
