"""Key modes over real key managers: ML-KEM between the end KMs (real gRPC, mutual TLS, real
key stores), hybrid keys over the relay, switching on what the node configuration says."""

from __future__ import annotations

import asyncio
import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from common.protos import pqc_pb2 as ppb
from km.key_store import StoredKey
from km.pqc import exchange, wire
from km.pqc.client import PeerFailure, PqcClient
from km.pqc.kem import Kem
from km.pqc.mode import KeyMode, Origin
from km.supply import SupplyError
from lab.plan import node_uuid
from tests.harness.configs import km_config_of
from tests.harness.pqc import PATH, links_ready, running_lab
from tests.harness.relay import FakeAgent, install_path, reject, wait_until


def _set_state(agent: FakeAgent, state: str, reason: str) -> None:
    """What the controller writes after sdqkdn_link_down when no other path is left."""
    config = copy.deepcopy(agent.config)
    for app in config["etsi-qkd-sdn-node:qkd_node"]["qkd_applications"]["qkd_app"]:
        app["qkdsdn-node:admission"] = {"state": state, "reason": reason}
    agent.push(config)


class _CountingQkd:
    """Wraps the relay supplier: counts the QKD draws and keeps the QKD keys it handed out."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.keys: list[StoredKey] = []

    async def enc_keys(self, *args: Any, **kwargs: Any) -> list[StoredKey]:
        self.calls += 1
        keys: list[StoredKey] = await self.inner.enc_keys(*args, **kwargs)
        self.keys.extend(keys)
        return keys

    def ready_count(self, master: str, slave: str) -> int:
        count: int = self.inner.ready_count(master, slave)
        return count


def test_pqc_keys_reach_the_far_km_past_the_trusted_node_many_per_exchange(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.PQC_ONLY)
            keys = await lab.enc(2)
            assert lab.claim(keys) == [k.material for k in keys]
            assert len(lab.stores["qnode2"]) == 0  # the trusted node saw nothing
            assert lab.agents["qnode1"].registrations == []  # no QKD association asked for
            more = [*(await lab.enc(1)), *(await lab.enc(3))]
            assert lab.modes["qnode1"].provider.exchanges == 1  # one encapsulation, 6 keys
            assert lab.claim(more) == [k.material for k in more]
            assert {lab.origin("qnode1", k) for k in keys + more} == {Origin.PQC}
            assert {lab.origin("qnode3", k) for k in keys + more} == {Origin.PQC}

    asyncio.run(run())


def test_hybrid_keys_match_at_both_ends_and_are_not_the_relayed_qkd_keys(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.HYBRID_STRICT)
            lab.auto_install(PATH, buffer=0)
            await links_ready(lab)
            tap = _CountingQkd(lab.modes["qnode1"].provider.qkd)
            lab.modes["qnode1"].provider.qkd = tap
            keys = await lab.enc(2)
            assert lab.claim(keys) == [k.material for k in keys]
            qkd = {k.key_id: k.material for k in tap.keys}
            assert all(k.key_id in qkd and qkd[k.key_id] != k.material for k in keys)
            assert {lab.origin("qnode3", k) for k in keys} == {Origin.HYBRID}

    asyncio.run(run())


def test_qkd_preferred_switches_on_the_failure_notice_and_back_on_reinstall(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.auto_install(PATH, buffer=0)
            await links_ready(lab)
            modes = lab.modes["qnode1"]
            tap = _CountingQkd(modes.supplier.qkd)
            modes.supplier.qkd = tap
            first = await lab.enc()
            assert lab.origin("qnode1", first[0]) is Origin.QKD and tap.calls == 1
            _set_state(lab.agents["qnode1"], "failed", "link qnode2-qnode3 down, no other path")
            view = lab.kms["qnode1"].associations
            await wait_until(lambda: "failed" in str(view.view.associations), what="failure")
            during = await lab.enc()
            assert lab.origin("qnode1", during[0]) is Origin.PQC
            assert tap.calls == 1  # the QKD path was not even tried
            assert lab.claim(during) == [during[0].material]
            install_path(lab.agents, PATH, buffer=0)  # the controller re-admits on link up
            await wait_until(lambda: modes.health("app1", ["app2"], "qnode3").usable)
            after = await lab.enc()
            assert lab.origin("qnode1", after[0]) is Origin.QKD and tap.calls == 2
            assert lab.claim(after) == [after[0].material]

    asyncio.run(run())


def test_qkd_only_answers_503_naming_the_reason(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.QKD_ONLY)
            await links_ready(lab)
            lab.agents["qnode1"].on_register = lambda request: reject(
                lab.agents["qnode1"], "qnode3", "no free key rate on qnode2–qnode3"
            )
            with pytest.raises(SupplyError) as info:
                await lab.enc()
            assert info.value.status_code == 503
            assert "no free key rate on qnode2–qnode3" in info.value.message
            lab.set_mode(KeyMode.QKD_PREFERRED)  # the same refusal, another mode: served
            keys = await lab.enc()
            assert lab.origin("qnode1", keys[0]) is Origin.PQC

    asyncio.run(run())


def test_a_failing_relay_hop_moves_hybrid_either_to_pqc_and_strict_refuses(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.HYBRID_EITHER)
            lab.auto_install(PATH, buffer=0)
            await links_ready(lab)
            await lab.kms["qnode2"].stop()  # the trusted node's KM is gone
            keys = await lab.enc()
            assert lab.origin("qnode1", keys[0]) is Origin.PQC
            assert lab.claim(keys) == [keys[0].material]
            lab.set_mode(KeyMode.HYBRID_STRICT)
            with pytest.raises(SupplyError, match="hybrid-strict: relay of key association"):
                await lab.enc()

    asyncio.run(run())


class _Corrupting:
    """Stands in for KM 1's exchange client: flips one ciphertext bit of every answer."""

    def __init__(self, inner: PqcClient) -> None:
        self.inner = inner

    async def establish(self, node: str, offer: ppb.KemOffer, timeout: float) -> ppb.KemAnswer:
        answer = await self.inner.establish(node, offer, timeout)
        ct = bytearray(answer.ciphertext)
        ct[5] ^= 0x01
        answer.ciphertext = bytes(ct)
        return answer

    async def close(self) -> None:
        await self.inner.close()


def test_a_wrong_answer_delivers_nothing_and_no_secret_reaches_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    delivered: list[bytes] = []

    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.PQC_ONLY)
            keys = await lab.enc(2)
            delivered.extend(k.material for k in keys)
            delivered.extend(lab.claim(keys))
            provider = lab.modes["qnode1"].provider
            provider.drop(Origin.PQC)
            provider.client = _Corrupting(provider.client)  # type: ignore[assignment]
            with pytest.raises(SupplyError) as info:
                await lab.enc()
            assert info.value.status_code == 503
            assert "key manager qnode3: key confirmation failed" in info.value.message
            assert provider.exchanges == 1  # the failed exchange delivered nothing
            stored = lab.stores["qnode3"]
            # the far KM stored that batch for key_IDs never handed out: unclaimable
            assert stored.count_waiting("app1", "app2") > 0

    asyncio.run(run())
    assert delivered and all(m.hex() not in caplog.text for m in delivered)
    assert all(m.hex().upper() not in caplog.text for m in delivered)


def test_a_km_cannot_offer_an_exchange_in_another_kms_name(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            config2 = km_config_of(lab.plan, "qnode2")
            impostor = PqcClient(
                {"qnode3": str(config2.peer("qnode3").relay)}, config2.tls, connect_timeout_s=20.0
            )
            _, offer = exchange.start(
                Kem.ML_KEM_768, node_uuid("qnode1"), node_uuid("qnode3"), "app1", ["app2"],
                KeyMode.PQC_ONLY, Origin.PQC, 256, ["00000000-0000-4000-8000-000000000001"], None,
            )  # fmt: skip
            try:
                with pytest.raises(PeerFailure, match=r"PERMISSION_DENIED.*in the name of"):
                    await impostor.establish("qnode3", wire.offer_message(offer), 20.0)
                big = wire.offer_message(offer)
                big.initiator = node_uuid("qnode2")
                big.master = "app2"  # not qnode2's either: refused before the size
                with pytest.raises(PeerFailure, match="PERMISSION_DENIED"):
                    await impostor.establish("qnode3", big, 20.0)
                bad = wire.offer_message(offer)
                bad.kem = "ML-KEM-512"
                with pytest.raises(PeerFailure, match=r"INVALID_ARGUMENT.*unknown KEM"):
                    await impostor.establish("qnode3", bad, 20.0)
            finally:
                await impostor.close()
            assert len(lab.stores["qnode3"]) == 0

    asyncio.run(run())
