"""The slaves' KM side of an exchange: what it checks, stores and answers (no gRPC)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from common.config import Address
from km.config import KmInterdomain, KmInterdomainPeer
from km.key_store import KeyStore, StoredKey
from km.pqc import exchange
from km.pqc.kem import Kem
from km.pqc.mode import KeyMode, Origin
from km.pqc.origins import OriginBook
from km.pqc.responder import Refused, Responder
from lab.plan import node_uuid
from tests.harness.configs import km_config_of
from tests.harness.relay import make_plan


@pytest.fixture
def responder(tmp_path: Path) -> Responder:
    plan = make_plan(
        tmp_path, ["qnode1", "qnode2", "qnode3"], [("qnode1", "qnode2"), ("qnode2", "qnode3")]
    )
    return Responder(km_config_of(plan, "qnode3"), KeyStore(tmp_path / "q3.sqlite"), OriginBook())


def _offer(
    origin: Origin = Origin.PQC, size: int = 256, n: int = 2, slave: str = "app2"
) -> tuple[object, exchange.Offer]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    return exchange.start(
        Kem.ML_KEM_768, node_uuid("qnode1"), node_uuid("qnode3"), "app1", [slave],
        KeyMode.HYBRID_EITHER, origin, size, ids, None,
    )  # fmt: skip


def test_post_quantum_keys_are_stored_for_the_slave_with_their_origin(responder: Responder) -> None:
    private, offer = _offer()
    answer = responder.answer(offer, "qnode1")
    keys = exchange.finish(private, offer, answer)  # type: ignore[arg-type]
    got = responder.store.claim("app2", "app1", list(offer.key_ids))
    assert [k.material for k in got] == keys
    origin = responder.origins.of(offer.key_ids[0])
    assert origin is not None and origin.origin is Origin.PQC
    assert responder.origins.counts == {}  # recorded for dec_keys, counted when delivered


@pytest.mark.parametrize(
    ("caller", "change", "code", "text"),
    [
        ("qnode2", {}, grpc.StatusCode.PERMISSION_DENIED, "in the name of"),
        ("qnode1", {"size": 2048}, grpc.StatusCode.INVALID_ARGUMENT, "key size 2048"),
        ("qnode1", {"slave": "app1"}, grpc.StatusCode.INVALID_ARGUMENT, "not served here"),
        ("qnode1", {"origin": Origin.HYBRID}, grpc.StatusCode.FAILED_PRECONDITION, "no QKD key"),
    ],
)
def test_a_refused_offer_changes_nothing(
    responder: Responder, caller: str, change: dict[str, object], code: grpc.StatusCode, text: str
) -> None:
    _, offer = _offer(**change)  # type: ignore[arg-type]
    with pytest.raises(Refused) as info:
        responder.answer(offer, caller)
    assert info.value.code is code and text in info.value.message
    assert len(responder.store) == 0


def test_hybrid_replaces_the_relayed_qkd_keys_by_the_combined_ones(responder: Responder) -> None:
    private, offer = _offer(Origin.HYBRID)
    qkd = [
        StoredKey(k, bytes([i + 1]) * 32, 256, "app1", ("app2",), None)
        for i, k in enumerate(offer.key_ids)
    ]
    responder.store.add(qkd, ready_for_master=False)  # what the relay stored here
    answer = responder.answer(offer, "qnode1")
    ours = exchange.finish(private, offer, answer, [k.material for k in qkd])  # type: ignore[arg-type]
    got = responder.store.claim("app2", "app1", list(offer.key_ids))
    assert [k.material for k in got] == ours
    assert all(h != q.material for h, q in zip(ours, qkd, strict=True))


def test_stored_keys_carry_their_origin_and_mode_into_a_reopened_store(
    responder: Responder, tmp_path: Path
) -> None:
    _, offer = _offer()
    responder.answer(offer, "qnode1")
    responder.store.close()
    reopened = KeyStore(tmp_path / "q3.sqlite")  # the restarted KM: a new, empty OriginBook
    got = reopened.claim("app2", "app1", list(offer.key_ids))
    assert {(k.origin, k.key_mode) for k in got} == {("pqc", "hybrid-either")}
    reported = OriginBook().of_keys(got, None)
    assert [dict(e) for e in reported.values()] == [
        {"origin": "pqc", "key_mode": "hybrid-either"}
    ] * len(got)
    reopened.close()


def test_post_quantum_keys_for_an_association_the_tree_says_is_qkd_only_are_refused(
    tmp_path: Path,
) -> None:
    plan = make_plan(
        tmp_path, ["qnode1", "qnode2", "qnode3"], [("qnode1", "qnode2"), ("qnode2", "qnode3")]
    )
    tree: dict[tuple[str, tuple[str, ...]], KeyMode] = {("app1", ("app2",)): KeyMode.QKD_ONLY}
    responder = Responder(
        km_config_of(plan, "qnode3"),
        KeyStore(tmp_path / "q3.sqlite"),
        OriginBook(),
        mode_here=lambda master, slaves: tree.get((master, tuple(slaves))),
    )
    _, offer = _offer()  # hybrid-either, while the tree here says qkd-only
    with pytest.raises(Refused) as info:
        responder.answer(offer, "qnode1")
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "hybrid-either" in info.value.message and "qkd-only" in info.value.message
    assert len(responder.store) == 0
    tree[("app1", ("app2",))] = KeyMode.QKD_PREFERRED  # the controller rewrote it (may lag)
    private, agreed = _offer()
    exchange.finish(private, agreed, responder.answer(agreed, "qnode1"))  # type: ignore[arg-type]
    assert len(responder.store) == 2


def test_a_border_km_refuses_post_quantum_keys_for_an_sae_of_another_domain(
    responder: Responder,
) -> None:
    peer = KmInterdomainPeer("B", "b_a", "https://127.0.0.1:1/kmapi/v1", ("app2",))
    border = KmInterdomain("A", Address("127.0.0.1", 1), (), (peer,))
    responder.config = replace(responder.config, interdomain=border)
    _, offer = _offer()
    with pytest.raises(Refused) as info:
        responder.answer(offer, "qnode1")
    assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert "domain B" in info.value.message
    assert len(responder.store) == 0
