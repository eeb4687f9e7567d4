"""KeySupply: where keys come from (CSPRNG, relay, multicast) and how errors map to HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from km.key_store import KeyBatch, KeyStore, StoredKey
from km.minting import new_key_ids
from km.supply import CommitGroup, KeySupply, SupplyError

SAES = {"a": "n1", "b": "n1", "c": "n1", "d": "n2", "e": "n3"}


class RecordingRemote:
    """A RemoteSupplier that records its calls and stores keys in the other nodes' stores."""

    def __init__(self, stores: dict[str, KeyStore]) -> None:
        self.stores = stores
        self.calls: list[tuple[str, tuple[str, ...], str, int, int, list[str] | None]] = []

    async def enc_keys(
        self,
        master: str,
        slaves: Sequence[str],
        slave_node: str,
        number: int,
        size_bits: int,
        *,
        keys: Sequence[StoredKey] | None = None,
    ) -> list[StoredKey]:
        ids = None if keys is None else [k.key_id for k in keys]
        self.calls.append((master, tuple(slaves), slave_node, number, size_bits, ids))
        if slave_node == "n3":
            raise SupplyError(503, "link toward n3 is down")
        made = (
            list(keys)
            if keys is not None
            else [
                StoredKey(i, bytes(size_bits // 8), size_bits, master, tuple(slaves), None)
                for i in new_key_ids(number)
            ]
        )
        self.stores[slave_node].add(made, ready_for_master=False)
        return made

    def ready_count(self, master: str, slave: str) -> int:
        return 7


def setup(tmp_path: Path) -> tuple[KeySupply, RecordingRemote, dict[str, KeyStore]]:
    stores = {n: KeyStore(tmp_path / f"{n}.sqlite") for n in ("n1", "n2", "n3")}
    remote = RecordingRemote(stores)
    return KeySupply("n1", SAES, stores["n1"], remote, clock=lambda: 1000.0), remote, stores


def test_same_node_keys_are_fresh_and_stored_for_the_slaves(tmp_path: Path) -> None:
    supply, remote, stores = setup(tmp_path)
    keys = asyncio.run(supply.enc_keys("a", ["b", "c"], 3, 128))
    assert [len(k.material) for k in keys] == [16, 16, 16]
    assert len({k.material for k in keys}) == 3 and not remote.calls
    assert all(k.expires_at == 1000.0 + 3600.0 for k in keys)
    assert stores["n1"].count_waiting("a", "b") == stores["n1"].count_waiting("a", "c") == 3
    assert supply.dec_keys("c", "a", [keys[0].key_id])[0].material == keys[0].material
    assert supply.ready_count("a", "b") is None and supply.ready_count("a", "d") == 7


def test_other_node_goes_to_the_remote_supplier(tmp_path: Path) -> None:
    supply, remote, stores = setup(tmp_path)
    keys = asyncio.run(supply.enc_keys("a", ["d"], 2, 256))
    assert remote.calls == [("a", ("d",), "n2", 2, 256, None)]
    assert len(stores["n1"]) == 0 and len(stores["n2"]) == 2
    assert [k.key_id for k in keys] == [
        k.key_id for k in stores["n2"].claim("d", "a", [k.key_id for k in keys])
    ]


def test_multicast_across_nodes_relays_the_same_keys(tmp_path: Path) -> None:
    supply, remote, stores = setup(tmp_path)
    keys = asyncio.run(supply.enc_keys("a", ["b", "d"], 2, 256))
    ids = [k.key_id for k in keys]
    assert remote.calls == [("a", ("d",), "n2", 2, 256, ids)]
    at_n2 = stores["n2"].claim("d", "a", ids)
    at_n1 = stores["n1"].claim("b", "a", ids)
    assert [k.material for k in at_n2] == [k.material for k in at_n1] == [k.material for k in keys]
    assert at_n2[0].slaves == ("d",) and at_n1[0].slaves == ("b",)
    assert keys[0].slaves == ("b", "d")


@pytest.mark.parametrize(
    ("master", "slaves", "number", "size", "status", "words"),
    [
        ("d", ["a"], 1, 256, 401, "not served"),
        ("a", ["zz"], 1, 256, 400, "unknown SAE_ID"),
        ("a", [], 1, 256, 400, "no slave"),
        ("a", ["b"], 0, 256, 400, "number"),
        ("a", ["b"], 1, 100, 400, "multiple of 8"),
        ("a", ["e"], 1, 256, 503, "n3"),
    ],
)
def test_enc_errors(
    tmp_path: Path,
    master: str,
    slaves: list[str],
    number: int,
    size: int,
    status: int,
    words: str,
) -> None:
    supply, _, stores = setup(tmp_path)
    with pytest.raises(SupplyError) as err:
        asyncio.run(supply.enc_keys(master, slaves, number, size))
    assert err.value.status_code == status and words in err.value.message
    assert len(stores["n1"]) == 0


def test_without_remote_other_nodes_are_503(tmp_path: Path) -> None:
    supply = KeySupply("n1", SAES, KeyStore(tmp_path / "k.sqlite"), None)
    with pytest.raises(SupplyError) as err:
        asyncio.run(supply.enc_keys("a", ["b", "d"], 1, 256))
    assert err.value.status_code == 503 and "n2" in err.value.message
    assert supply.ready_count("a", "d") == 0


def test_dec_errors_map_to_400_and_401(tmp_path: Path) -> None:
    supply, _, _ = setup(tmp_path)
    (key,) = asyncio.run(supply.enc_keys("a", ["b"], 1, 256))
    for slave, master, status in [("c", "a", 401), ("b", "c", 401), ("d", "a", 401)]:
        with pytest.raises(SupplyError) as err:
            supply.dec_keys(slave, master, [key.key_id])
        assert err.value.status_code == status
    with pytest.raises(SupplyError) as err:
        supply.dec_keys("b", "a", [str(uuid.uuid4())])
    assert err.value.status_code == 400
    supply.dec_keys("b", "a", [key.key_id])
    with pytest.raises(SupplyError) as err:
        supply.dec_keys("b", "a", [key.key_id])
    assert err.value.status_code == 400 and key.material.hex() not in err.value.message


def test_place_keys_needs_one_master_size_and_slave_set(tmp_path: Path) -> None:
    supply, _, _ = setup(tmp_path)
    first = supply.mint.keys("a", ["b"], 1, 256)
    other = supply.mint.keys("a", ["c"], 1, 256)
    with pytest.raises(ValueError):
        asyncio.run(supply.place_keys(first + other))
    asyncio.run(supply.place_keys([]))


def test_key_ids_are_uuid7_ascending_and_distinct() -> None:
    ids = new_key_ids(500, now_ns=1_700_000_000_000_000_000)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(p) == i for p, i in zip(parsed, ids, strict=True))
    assert {p.version for p in parsed} == {7} and {p.variant for p in parsed} == {uuid.RFC_4122}
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert parsed[0].int >> 80 == 1_700_000_000_000


class CountingStore(KeyStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.adds = 0

    def add_batches(self, batches: Sequence[KeyBatch], *, ready_for_master: bool) -> None:
        self.adds += 1  # every write of keys goes through here, one transaction each
        super().add_batches(batches, ready_for_master=ready_for_master)


def test_group_commit_one_transaction_per_loop_turn(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "k.sqlite")
    supply = KeySupply("n1", SAES, store, None)

    async def burst() -> list[Sequence[StoredKey]]:
        return await asyncio.gather(*(supply.enc_keys("a", ["b"], 2, 256) for _ in range(10)))

    results = asyncio.run(burst())
    assert store.adds == 1 and len(store) == 20
    ids = [k.key_id for keys in results for k in keys]
    assert len(set(ids)) == 20
    assert [k.key_id for k in store.claim("b", "a", ids)] == ids


def test_group_commit_isolates_a_refused_request(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    group = CommitGroup(store)
    supply = KeySupply("n1", SAES, store, None)
    taken = supply.mint.keys("a", ["b"], 1, 256)
    store.add(taken, ready_for_master=False)
    fresh = supply.mint.keys("a", ["b"], 2, 256)

    async def both() -> tuple[BaseException | None, BaseException | None]:
        return await asyncio.gather(group.add(fresh), group.add(taken), return_exceptions=True)

    first, second = asyncio.run(both())
    assert first is None and isinstance(second, ValueError)
    assert len(store) == 3


def test_group_commit_survives_a_cancelled_caller(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "k.sqlite")
    group = CommitGroup(store)
    supply = KeySupply("n1", SAES, store, None)

    async def scenario() -> None:
        gone = asyncio.ensure_future(group.add(supply.mint.keys("a", ["b"], 1, 256)))
        stays = asyncio.ensure_future(group.add(supply.mint.keys("a", ["b"], 1, 256)))
        await asyncio.sleep(0)  # both queued, flush not yet run
        gone.cancel()
        await stays

    asyncio.run(scenario())
    assert len(store) == 2
