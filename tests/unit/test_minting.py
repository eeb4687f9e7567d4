"""KeyMint: every end-to-end key is CSPRNG material under a fresh UUIDv7 key_ID."""

from __future__ import annotations

import uuid

import pytest

from km.minting import KeyMint


def test_a_batch_has_consecutive_uuid7_ids_distinct_material_and_the_ttl() -> None:
    batch = KeyMint(key_ttl_s=60.0, clock=lambda: 1000.0).batch("a", ["b", "c"], 5, 256)
    keys = list(batch)
    ids = [uuid.UUID(k.key_id) for k in keys]
    assert {i.version for i in ids} == {7} and {i.variant for i in ids} == {uuid.RFC_4122}
    assert [i.int - ids[0].int for i in ids] == [0, 1, 2, 3, 4]
    assert len({k.material for k in keys}) == 5 and {len(k.material) for k in keys} == {32}
    assert {(k.master, k.slaves, k.expires_at) for k in keys} == {("a", ("b", "c"), 1060.0)}
    assert "material=<hidden>" in repr(batch)


def test_two_mints_never_repeat_a_key_id() -> None:
    first, second = KeyMint(), KeyMint()
    ids = [k.key_id for m in (first, second, first) for k in m.keys("a", ["b"], 50, 128)]
    assert len(set(ids)) == 150


def test_keys_without_ttl_never_expire_and_zero_keys_is_empty() -> None:
    mint = KeyMint(key_ttl_s=None)
    assert mint.keys("a", ["b"], 1, 128)[0].expires_at is None
    assert mint.keys("a", ["b"], 0, 128) == []


@pytest.mark.parametrize(("number", "size_bits"), [(-1, 256), (1, 0), (1, 12)])
def test_a_bad_number_or_size_is_refused(number: int, size_bits: int) -> None:
    with pytest.raises(ValueError, match="number must be"):
        KeyMint().batch("a", ["b"], number, size_bits)
