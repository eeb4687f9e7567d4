"""Key managers whose files give no peer relay address relay over real agents all the same:
they learn the addresses from the VIRT links the controller installs, and follow a KM that moves."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
import uuid
from pathlib import Path

from lxml import etree

from agents.datastore import DatastoreName
from agents.main import AgentHandle
from common.config import Address
from controller.intents.compile import RelaySettings, compile_install
from controller.model import KeyRequest
from controller.model import Path as RoutePath
from km.config import KmConfig
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
TIMEOUTS = RelayTimeouts(link_key_s=2.0, per_hop_s=3.0, entry_s=1.0)
RECOVERY_S = 30.0  # generous: the machine is shared and busy (test_link_key_restarts: 3 s)


def without_peer_relays(config: KmConfig) -> KmConfig:
    return dataclasses.replace(
        config, peers=tuple(dataclasses.replace(p, relay=None) for p in config.peers)
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install(
    plan: LabPlan, agents: dict[str, AgentHandle], intent: str, relays: dict[str, str]
) -> None:
    """The controller's edits for qnode1 → qnode2 → qnode3, with the KMs' relay addresses it
    knows (node name -> host:port), applied to every node's running datastore."""
    route = RoutePath(
        tuple(plan.node(n).qkdn_id for n in NODES), tuple(link.qkdl_id for link in plan.links)
    )
    request = KeyRequest(route.nodes[0], route.nodes[-1], "app1", ("app2",))
    by_id = {plan.node(n).qkdn_id: address for n, address in relays.items()}
    edits = compile_install(intent, request, route, 512, RelaySettings("aes-gcm", 0), by_id)
    for name in NODES:
        edit = edits[plan.node(name).qkdn_id]
        agents[name].datastore.edit(DatastoreName.RUNNING, etree.fromstring(edit.config))


def test_kms_without_peer_addresses_learn_them_relay_and_follow_a_moved_km(
    tmp_path: Path,
) -> None:
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
    configs = {n: without_peer_relays(km_config_of(plan, n)) for n in NODES}
    assert all(p.relay is None for c in configs.values() for p in c.peers)

    async def run() -> None:
        stores = {n: KeyStore(tmp_path / f"{n}.sqlite") for n in NODES}
        async with running_agents(plan, persist=False, tracer=agent_tracer) as agents:
            kms = {n: RelayComponent(configs[n], stores[n], timeouts=TIMEOUTS) for n in NODES}
            for km in kms.values():
                await km.start()
            try:
                supplier = kms["qnode1"].supplier
                request = asyncio.create_task(supplier.enc_keys("app1", ["app2"], "qnode3", 2, 256))
                await wait_until(
                    lambda: any(e.event == "app.registered" for e in read_events(trace_dir)),
                    what="the source KM's registration",
                )
                # Nothing known yet: no KM has synchronised a link with a peer.
                pools = [p for km in kms.values() for p in km.pools.pools]
                assert not any(p.synced for p in pools)
                intent = str(uuid.uuid4())
                relays = {n: str(c.listen.relay) for n, c in configs.items()}
                install(plan, agents, intent, relays)
                keys = await asyncio.wait_for(request, 15.0)
                far = stores["qnode3"].claim("app2", "app1", [k.key_id for k in keys])
                assert [k.material for k in far] == [k.material for k in keys]
                assert kms["qnode1"]._client.address_of("qnode2") == relays["qnode2"]

                # qnode2's KM moves to another port; the controller writes the new address.
                await kms["qnode2"].stop()
                moved = dataclasses.replace(
                    configs["qnode2"],
                    listen=dataclasses.replace(
                        configs["qnode2"].listen, relay=Address("127.0.0.1", free_port())
                    ),
                )
                kms["qnode2"] = RelayComponent(moved, stores["qnode2"], timeouts=TIMEOUTS)
                await kms["qnode2"].start()
                relays["qnode2"] = str(moved.listen.relay)
                install(plan, agents, intent, relays)
                await wait_until(
                    lambda: (
                        kms["qnode1"]._client.address_of("qnode2") == relays["qnode2"]
                        and kms["qnode3"]._client.address_of("qnode2") == relays["qnode2"]
                    ),
                    what="the new address learned by both neighbours",
                )
                # A restarted KM lost its pools: the first hops may fail while the two ends
                # of the link resynchronise (as after any restart); then keys flow again.
                deadline = time.monotonic() + RECOVERY_S
                while True:
                    try:
                        again = await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
                        break
                    except SupplyError as exc:
                        assert time.monotonic() < deadline, f"still failing: {exc.message}"
                        await asyncio.sleep(0.05)
                for _ in range(3):
                    far = stores["qnode3"].claim("app2", "app1", [k.key_id for k in again])
                    assert [k.material for k in far] == [k.material for k in again]
                    again = await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            finally:
                for km in kms.values():
                    await km.stop()
                for store in stores.values():
                    store.close()

    try:
        asyncio.run(run())
    finally:
        agent_tracer.close()
