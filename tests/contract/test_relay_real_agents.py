"""The relay with the real agents (emulated QKD modules, NodeLink, datastores) of three nodes.

The test plays the controller the way it really acts: it waits for the source KM's
registration (the agent's `app.registered` timeline event), then applies the controller's
compiled edit-config to every node's running datastore; the agents push the new running
config to their KMs, which relay over real link keys.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from lxml import etree

from agents.datastore import DatastoreName
from agents.main import AgentHandle
from controller.intents.compile import RelaySettings, compile_install
from controller.model import KeyRequest
from controller.model import Path as RoutePath
from km.key_store import KeyStore
from km.relay.component import RelayComponent
from km.relay.forwarder import RelayTimeouts
from km.supply import SupplyError
from lab.pki import create_lab_pki
from lab.plan import LabPlan, Settings
from lab.timeline import Tracer, read_events
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import km_config_of
from tests.harness.relay import wait_until

NODES = ["qnode1", "qnode2", "qnode3"]


def install(plan: LabPlan, agents: dict[str, AgentHandle]) -> None:
    """What the controller sends to each node of the path qnode1 → qnode2 → qnode3."""
    route = RoutePath(
        tuple(plan.node(n).qkdn_id for n in NODES), tuple(link.qkdl_id for link in plan.links)
    )
    request = KeyRequest(route.nodes[0], route.nodes[-1], "app1", ("app2",))
    edits = compile_install(str(uuid.uuid4()), request, route, 512, RelaySettings("aes-gcm", 2))
    for name in NODES:
        edit = edits[plan.node(name).qkdn_id]
        agents[name].datastore.edit(DatastoreName.RUNNING, etree.fromstring(edit.config))


def test_register_install_relay_and_a_cut_link_over_real_agents(tmp_path: Path) -> None:
    plan = make_test_plan(
        tmp_path,
        NODES,
        [
            LinkSpec("qnode1", "qnode2", skr_bps=200_000.0),
            LinkSpec("qnode2", "qnode3", skr_bps=200_000.0),
        ],
        [("app1", "qnode1"), ("app2", "qnode3")],
        settings=Settings(link_pool_max_bits=256 * 64),
    )
    create_lab_pki(tmp_path, NODES, ["app1", "app2"])
    trace_dir = tmp_path / "trace"
    trace_dir.mkdir()
    agent_tracer = Tracer("agents", str(trace_dir / "agents.jsonl"))
    timeouts = RelayTimeouts(link_key_s=0.3, per_hop_s=1.0, entry_s=0.5)

    async def run() -> None:
        stores = {n: KeyStore(tmp_path / f"{n}.sqlite") for n in NODES}
        async with running_agents(plan, persist=False, tracer=agent_tracer) as agents:
            kms = {
                n: RelayComponent(km_config_of(plan, n), stores[n], timeouts=timeouts)
                for n in NODES
            }
            for km in kms.values():
                await km.start()
            try:
                supplier = kms["qnode1"].supplier
                request = asyncio.create_task(supplier.enc_keys("app1", ["app2"], "qnode3", 2, 256))
                await wait_until(
                    lambda: any(e.event == "app.registered" for e in read_events(trace_dir)),
                    what="the source KM's registration",
                )
                install(plan, agents)
                keys = await asyncio.wait_for(request, 10.0)
                far = stores["qnode3"].claim("app2", "app1", [k.key_id for k in keys])
                assert [k.material for k in far] == [k.material for k in keys]
                await supplier.wait_refills()
                assert supplier.ready_count("app1", "app2") == 2  # relay/buffer from the config

                # The fibre qnode2–qnode3 is cut: no key can reach qnode3 any more.
                cut = plan.links[1].qkdl_id
                agents["qnode2"].node.set_link(cut, False)
                pool = kms["qnode2"].pools.for_peer("qnode3")
                while pool.ready_for_sending():
                    await pool.take_for_sending(1.0)
                # Drained below its low-water mark, the pool asks the module and sees the cut.
                await wait_until(lambda: not pool.link_up, what="cut seen by qnode2's KM")
                with pytest.raises(SupplyError) as info:
                    await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 512)
                assert info.value.status_code == 503
                assert info.value.message == "hop qnode2→qnode3: no link key within 0.3 s"
                assert len(stores["qnode3"]) == 2  # only the two keys relayed ahead earlier
            finally:
                for km in kms.values():
                    await km.stop()
                for store in stores.values():
                    store.close()

    try:
        asyncio.run(run())
    finally:
        agent_tracer.close()


def test_kms_that_start_far_apart_still_agree_on_link_keys(tmp_path: Path) -> None:
    """qnode2's KM starts after qnode1's located its stream (a pool that must resync fetches
    nothing more before its peer answers) and the link produced three pool-fulls of key:
    whatever each module kept or dropped meanwhile, relays succeed."""
    nodes = ["qnode1", "qnode2"]
    plan = make_test_plan(
        tmp_path,
        nodes,
        [LinkSpec("qnode1", "qnode2", skr_bps=200_000.0)],
        [("app1", "qnode1"), ("app2", "qnode2")],
        settings=Settings(link_pool_max_bits=256 * 16),
    )
    create_lab_pki(tmp_path, nodes, ["app1", "app2"])
    qkdl_id = plan.links[0].qkdl_id
    capacity = plan.settings.link_pool_max_bits // 256

    async def run() -> None:
        stores = {n: KeyStore(tmp_path / f"{n}.sqlite") for n in nodes}
        kms = {n: RelayComponent(km_config_of(plan, n), stores[n]) for n in nodes}
        async with running_agents(plan, persist=False) as agents:
            try:
                await kms["qnode1"].start()
                early = kms["qnode1"].pools.for_peer("qnode2")
                await wait_until(lambda: early.located, what="qnode1's stream located")
                assert early.next_in_order() is None  # nothing in order before the resync
                module = agents["qnode2"].node.module(qkdl_id)
                assert module is not None
                late_index = early.frontier + 3 * capacity
                await wait_until(lambda: module.ready_in(late_index) == 0.0, what="more key")
                await kms["qnode2"].start()
                route = RoutePath(
                    tuple(plan.node(n).qkdn_id for n in nodes), (qkdl_id,)
                )  # fmt: skip
                request = KeyRequest(route.nodes[0], route.nodes[-1], "app1", ("app2",))
                edits = compile_install(
                    str(uuid.uuid4()), request, route, 512, RelaySettings("aes-gcm", 0)
                )
                for name in nodes:
                    edit = edits[plan.node(name).qkdn_id]
                    agents[name].datastore.edit(
                        DatastoreName.RUNNING, etree.fromstring(edit.config)
                    )
                for _ in range(10):
                    keys = await kms["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode2", 1, 256)
                    far = stores["qnode2"].claim("app2", "app1", [keys[0].key_id])
                    assert far[0].material == keys[0].material
            finally:
                for km in kms.values():
                    await km.stop()
                for store in stores.values():
                    store.close()

    asyncio.run(run())
