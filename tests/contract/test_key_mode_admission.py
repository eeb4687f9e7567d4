"""Key modes over real key managers (real relay and PqcExchange gRPC, mutual TLS, real key
stores) and fake agents: the first request of a new association waits for the admission
decision, the registered mode follows the policy, and the slaves' KM reports each key's
origin and mode after a restart, from its key store and its own node's tree."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import yaml

from common.protos import node_link_pb2 as nl
from km.etsi014.service import Etsi014Service
from km.key_store import KeyStore
from km.pqc.mode import KeyMode, Origin
from km.pqc.origins import OriginBook
from km.supply import KeySupply
from tests.harness.pqc import PATH, Lab, links_ready, running_lab
from tests.harness.relay import install_path, reject, wait_until

INTENT = "77777777-7777-4777-8777-777777777777"


def _install_as_registered(lab: Lab, delay_s: float = 0.0) -> None:
    """What the controller does: installs the path with the mode the KM registered."""
    loop = asyncio.get_running_loop()

    def on_register(request: nl.AppRegistration) -> None:
        def install() -> None:
            install_path(lab.agents, PATH, buffer=0, intent=INTENT, key_mode=request.key_mode)

        if delay_s:
            loop.call_later(delay_s, install)
        else:
            install()

    lab.agents["qnode1"].on_register = on_register


def test_the_first_qkd_preferred_request_waits_for_a_late_admission_and_gets_qkd(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            await links_ready(lab)
            lab.modes["qnode1"].supplier.admission_wait_s = 30.0  # far above the delay
            _install_as_registered(lab, delay_s=0.3)
            started = time.monotonic()
            keys = await lab.enc()
            assert time.monotonic() - started >= 0.3  # it waited for the decision ...
            assert lab.origin("qnode1", keys[0]) is Origin.QKD  # ... and got a QKD key
            assert lab.claim(keys) == [keys[0].material]
            [registration] = lab.agents["qnode1"].registrations
            assert registration.key_mode == "qkd-preferred"  # from the master's policy

    asyncio.run(run())


def test_a_refused_admission_ends_the_wait_at_once(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.HYBRID_EITHER)
            await links_ready(lab)
            supplier = lab.modes["qnode1"].supplier
            supplier.admission_wait_s = 60.0  # a request waiting for it would show
            lab.agents["qnode1"].on_register = lambda request: reject(
                lab.agents["qnode1"], "qnode3", "no free key rate on qnode2–qnode3"
            )
            started = time.monotonic()
            keys = await lab.enc()
            assert time.monotonic() - started < 30.0
            assert lab.origin("qnode1", keys[0]) is Origin.PQC
            assert lab.claim(keys) == [keys[0].material]
            [registration] = lab.agents["qnode1"].registrations
            assert registration.key_mode == "hybrid-either"

    asyncio.run(run())


def test_no_decision_in_time_serves_post_quantum_keys_without_waiting_again_then_qkd(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            await links_ready(lab)
            modes = lab.modes["qnode1"]
            modes.supplier.admission_wait_s = 0.4
            started = time.monotonic()
            first = await lab.enc()  # the node never answers: post-quantum after the bound
            assert time.monotonic() - started >= 0.4
            assert lab.origin("qnode1", first[0]) is Origin.PQC
            assert len(lab.agents["qnode1"].registrations) == 1
            # still no decision: the next request registers again but does not wait again
            modes.supplier.admission_wait_s = 60.0
            started = time.monotonic()
            second = await lab.enc()
            assert time.monotonic() - started < 30.0
            assert lab.origin("qnode1", second[0]) is Origin.PQC
            assert len(lab.agents["qnode1"].registrations) == 2
            install_path(lab.agents, PATH, buffer=0, key_mode="qkd-preferred")
            await wait_until(lambda: modes.health("app1", ["app2"], "qnode3").usable)
            after = await lab.enc()
            assert lab.origin("qnode1", after[0]) is Origin.QKD
            assert lab.claim([*first, *second, *after]) == [
                k.material for k in (*first, *second, *after)
            ]

    asyncio.run(run())


def test_a_policy_reload_registers_the_new_mode_once_and_the_tree_follows(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            policy = tmp_path / "policy.yaml"
            policy.write_text(yaml.safe_dump({"saes": {"app1": {"key_mode": "hybrid-either"}}}))
            lab.access.source = policy
            assert lab.access.reload()
            await links_ready(lab)
            _install_as_registered(lab)
            keys = await lab.enc()
            assert lab.origin("qnode1", keys[0]) is Origin.HYBRID
            view = lab.kms["qnode1"].associations
            assert view.view.associations[0].key_mode is KeyMode.HYBRID_EITHER
            policy.write_text(
                yaml.safe_dump({"saes": {"app1": {"key_mode": "qkd-only"}, "app2": {}}})
            )
            assert lab.access.reload()
            await wait_until(
                lambda: [a.key_mode for a in view.view.associations] == [KeyMode.QKD_ONLY],
                what="the new mode in the tree",
            )
            registered = [r.key_mode for r in lab.agents["qnode1"].registrations]
            assert registered == ["hybrid-either", "qkd-only"]  # asked once, not per update
            # the slaves' KM reads the mode from its own node's tree
            assert lab.modes["qnode3"].mode_here("app1", ["app2"]) is KeyMode.QKD_ONLY

    asyncio.run(run())


def test_a_restarted_slave_km_reports_each_keys_origin_and_mode_at_dec_keys(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        async with running_lab(tmp_path) as lab:
            lab.set_mode(KeyMode.HYBRID_EITHER)
            await links_ready(lab)
            _install_as_registered(lab)
            hybrid = await lab.enc(2)
            lab.set_mode(KeyMode.PQC_ONLY)
            pqc = await lab.enc(2)
            lab.set_mode(KeyMode.QKD_ONLY)  # the path's tree says hybrid-either: relayed keys
            await lab.kms["qnode1"].supplier.wait_refills()
            qkd = await lab.modes["qnode1"].supplier.qkd.enc_keys(
                "app1", ["app2"], "qnode3", 2, 256
            )
            # the slaves' KM restarts: its memory is gone, its key store stays
            await lab.modes["qnode3"].close()
            await lab.kms["qnode3"].stop()
            lab.stores["qnode3"].close()
            store = lab.stores["qnode3"] = KeyStore(tmp_path / "qnode3.sqlite")
            config = lab.kms["qnode3"].config
            service = Etsi014Service(
                KeySupply(config.node, dict(config.applications), store, None),
                lab.access,
                config.node_ids(),
                origins=OriginBook(),
            )
            ids = [uuid.UUID(k.key_id) for k in hybrid + pqc + qkd]
            claimed = service.dec_keys("app2", "app1", ids)
            assert [k.material for k in claimed] == [k.material for k in hybrid + pqc + qkd]
            reported = service.key_extensions(claimed, "app1")
            assert [dict(reported[k.key_id]) for k in claimed] == [
                {"origin": "hybrid", "key_mode": "hybrid-either"},
                {"origin": "hybrid", "key_mode": "hybrid-either"},
                {"origin": "pqc", "key_mode": "pqc-only"},
                {"origin": "pqc", "key_mode": "pqc-only"},
                {"origin": "qkd", "key_mode": "hybrid-either"},  # the mode of its node's tree
                {"origin": "qkd", "key_mode": "hybrid-either"},
            ]

    asyncio.run(run())
