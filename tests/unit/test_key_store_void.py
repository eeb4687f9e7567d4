"""A void at the key store: keys taken back before a slave claims them, never stored again."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest

from km.key_store import (
    VOID_KEEP_S,
    ClaimFailure,
    KeyBatch,
    KeyClaimError,
    KeyStore,
    StoredKey,
    VoidOutcome,
)

NOW = 1_800_000_000.0


def relayed(number: int, slaves: tuple[str, ...] = ("app-c",)) -> KeyBatch:
    """Keys with consecutive key_IDs as the end KM of a relay stores them (origin said)."""
    return KeyBatch(
        uuid.uuid4().int >> 16 << 16,
        number,
        secrets.token_bytes(32 * number),
        256,
        "app-a",
        slaves,
        NOW + 3600,
        origin="qkd",
    )


def test_a_voided_key_is_gone_for_its_slave_as_an_unknown_key_and_the_others_stay(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = relayed(3)
    store.add(keys, ready_for_master=False)
    ids = keys.key_ids()
    assert store.void(ids[:1], NOW) == {ids[0]: VoidOutcome.VOIDED}
    with pytest.raises(KeyClaimError) as info:
        store.claim("app-c", "app-a", ids[:1])
    assert info.value.reason is ClaimFailure.UNKNOWN_KEY
    assert [k.material for k in store.claim("app-c", "app-a", ids[1:])] == [
        keys[1].material,
        keys[2].material,
    ]


def test_a_void_tells_delivered_from_voided_from_not_present_and_repeats_its_answer(
    tmp_path: Path,
) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys, whole = relayed(2), relayed(1)
    store.add(keys, ready_for_master=False)
    store.add(whole, ready_for_master=False)
    ids = keys.key_ids()
    store.claim("app-c", "app-a", ids[:1], now=NOW)  # row still holds the other key
    store.claim("app-c", "app-a", whole.key_ids(), now=NOW)  # row gone: a spent range
    never = str(uuid.uuid4())
    asked = [*ids, *whole.key_ids(), never]
    expected = {
        ids[0]: VoidOutcome.DELIVERED,
        ids[1]: VoidOutcome.VOIDED,
        whole.key_ids()[0]: VoidOutcome.DELIVERED,
        never: VoidOutcome.NOT_PRESENT,
    }
    assert store.void(asked, NOW) == expected
    assert store.void(asked, NOW) == expected  # idempotent
    assert len(store) == 0


def test_a_key_id_voided_before_its_keys_arrive_is_never_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = relayed(2)
    assert store.void(keys.key_ids()[1:], NOW) == {keys.key_ids()[1]: VoidOutcome.NOT_PRESENT}
    with pytest.raises(ValueError, match="a key_ID was voided"):
        store.add(keys, ready_for_master=False)
    assert len(store) == 0
    store.add(relayed(1), ready_for_master=False)  # other key_IDs are not affected
    assert len(store) == 1


def test_void_marks_survive_a_reopen_and_go_with_the_purge_after_their_keep(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.sqlite"
    store = KeyStore(path)
    key = StoredKey(str(uuid.uuid4()), secrets.token_bytes(32), 256, "app-a", ("app-c",), None)
    store.void([key.key_id], NOW)
    store.close()
    store = KeyStore(path)
    with pytest.raises(ValueError, match="voided"):
        store.add([key], ready_for_master=False)
    store.purge_expired(NOW + VOID_KEEP_S + 1)
    store.add([key], ready_for_master=False)
    assert len(store) == 1


def test_a_bad_key_id_in_a_void_changes_nothing(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = relayed(1)
    store.add(keys, ready_for_master=False)
    with pytest.raises(ValueError, match="not a lower-case UUID"):
        store.void([keys.key_ids()[0], "NOT-A-UUID"], NOW)
    assert len(store) == 1
