"""Link keys across restarts, over real gRPC: restarted KMs relay again within seconds, and
no link-key index is ever used twice, also after the agents (the QKD modules) restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from agents.datastore import DatastoreName
from agents.main import AgentHandle
from common.protos import relay_pb2 as pb
from controller.intents.compile import RelaySettings, compile_install
from controller.model import KeyRequest
from controller.model import Path as RoutePath
from km.key_store import KeyStore
from km.link_pools import Position
from km.relay.component import RelayComponent
from km.relay.errors import FailureKind, RelayFailure
from km.relay.forwarder import RelayTimeouts
from km.supply import SupplyError
from lab.pki import create_lab_pki
from lab.plan import LabPlan, Settings
from lab.timeline import Tracer, read_events
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import km_config_of, relay_client
from tests.harness.relay import wait_until

NODES = ["qnode1", "qnode2", "qnode3"]
RECOVERY_S = 3.0  # bound from a restart to the first relayed key
TIMEOUTS = RelayTimeouts(link_key_s=0.5, per_hop_s=1.5, entry_s=0.5)


def install(plan: LabPlan, agents: dict[str, AgentHandle]) -> None:
    route = RoutePath(
        tuple(plan.node(n).qkdn_id for n in NODES), tuple(link.qkdl_id for link in plan.links)
    )
    request = KeyRequest(route.nodes[0], route.nodes[-1], "app1", ("app2",))
    edits = compile_install(str(uuid.uuid4()), request, route, 512, RelaySettings("aes-gcm", 0))
    for name in NODES:
        edit = edits[plan.node(name).qkdn_id]
        agents[name].datastore.edit(DatastoreName.RUNNING, etree.fromstring(edit.config))


class Twin:
    """Three KMs over the real agents, each KM restartable as its process would be."""

    def __init__(self, plan: LabPlan, tmp: Path) -> None:
        self.plan = plan
        self.tmp = tmp
        self.traces = tmp / "trace"
        self.traces.mkdir()
        self.stores = {n: KeyStore(tmp / f"{n}.sqlite") for n in NODES}
        self.kms: dict[str, RelayComponent] = {}
        self.tracers: list[Tracer] = []
        self.runs: Counter[str] = Counter()

    async def start_km(self, name: str) -> None:
        self.runs[name] += 1
        tracer = Tracer(f"km:{name}", str(self.traces / f"{name}-{self.runs[name]}.jsonl"))
        self.tracers.append(tracer)
        km = RelayComponent(
            km_config_of(self.plan, name), self.stores[name], timeouts=TIMEOUTS, tracer=tracer
        )
        await km.start()
        self.kms[name] = km

    async def restart_km(self, name: str) -> None:
        """Stops the KM (its pools are lost) and starts a new one on the same key store."""
        km = self.kms.pop(name)
        await km.stop()
        self.stores[name].close()
        self.stores[name] = KeyStore(self.tmp / f"{name}.sqlite")
        await self.start_km(name)

    async def relay_once(self) -> None:
        keys = await self.kms["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
        far = self.stores["qnode3"].claim("app2", "app1", [k.key_id for k in keys])
        assert [k.material for k in far] == [k.material for k in keys]

    async def relays_again(self, what: str) -> float:
        """Seconds until a key is relayed end to end; then five more in a row must succeed."""
        start = time.monotonic()
        last = ""
        while True:
            try:
                await self.relay_once()
                break
            except SupplyError as exc:
                last = exc.message
            assert time.monotonic() - start < RECOVERY_S, f"{what}: still failing: {last}"
            await asyncio.sleep(0.05)
        took = time.monotonic() - start
        print(f"{what}: relayed again after {took:.2f} s")
        for _ in range(5):
            await self.relay_once()
        return took

    async def close(self) -> None:
        for km in self.kms.values():
            await km.stop()
        for store in self.stores.values():
            store.close()
        for tracer in self.tracers:
            tracer.close()

    def indices_used_twice(self) -> list[tuple[str, str, int]]:
        """(qkdl_id, role, index) used more than once, from every KM's `link_key.used`."""
        used = Counter(
            (str(e.fields["qkdl_id"]), str(e.fields["role"]), int(e.fields["index"]))
            for e in read_events(self.traces)
            if e.event == "link_key.used"
        )
        assert used, "no link_key.used events traced"
        return [key for key, count in used.items() if count > 1]


def test_restarted_kms_and_agents_relay_again_and_never_reuse_a_link_key(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(
        tmp_path,
        NODES,
        [
            LinkSpec("qnode1", "qnode2", skr_bps=100_000.0),
            LinkSpec("qnode2", "qnode3", skr_bps=100_000.0),
        ],
        [("app1", "qnode1"), ("app2", "qnode3")],
        settings=Settings(link_pool_max_bits=256 * 64),
    )
    create_lab_pki(tmp_path, NODES, ["app1", "app2"])
    twin = Twin(plan, tmp_path)

    async def run() -> None:
        try:
            async with running_agents(plan) as agents:
                for name in NODES:
                    await twin.start_km(name)
                install(plan, agents)
                await twin.relays_again("first run")
                await twin.restart_km("qnode2")
                await twin.relays_again("after the middle KM restarted")
                await twin.restart_km("qnode1")
                await twin.relays_again("after the source KM restarted")
            # The agents (all QKD modules) restart; the KMs keep running.
            async with running_agents(plan):
                await twin.relays_again("after the agents restarted")
                await twin.restart_km("qnode3")
                await twin.relays_again("after the last KM restarted")
                for name in NODES:  # the whole twin goes down (lab down) ...
                    await twin.kms.pop(name).stop()
            async with running_agents(plan):  # ... and up again on the same state dir
                for name in NODES:
                    await twin.start_km(name)
                await twin.relays_again("after the whole twin restarted")
        finally:
            await twin.close()
        assert twin.indices_used_twice() == []

    asyncio.run(run())


def test_sync_link_is_refused_to_impostors_and_for_foreign_links(tmp_path: Path) -> None:
    plan = make_test_plan(
        tmp_path,
        NODES,
        [LinkSpec("qnode1", "qnode2", skr_bps=100_000.0), LinkSpec("qnode2", "qnode3")],
        [("app1", "qnode1"), ("app2", "qnode3")],
    )
    create_lab_pki(tmp_path, NODES, ["app1", "app2"])
    twin = Twin(plan, tmp_path)
    link12, link23 = (link.qkdl_id for link in plan.links)
    qnode1_id = plan.node("qnode1").qkdn_id

    async def run() -> None:
        impostor = relay_client(km_config_of(plan, "qnode3"))
        honest = relay_client(km_config_of(plan, "qnode1"))
        try:
            async with running_agents(plan, persist=False):
                await twin.start_km("qnode2")
                pool = twin.kms["qnode2"].pools.for_link(link12)
                await wait_until(lambda: pool.located, what="qnode2 located on its module")
                before = pool.position
                far = pb.LinkPosition(
                    qkdl_id=link12, sender=qnode1_id, next_even=10**9, next_odd=10**9 + 1
                )
                with pytest.raises(RelayFailure, match="may not speak for qnode1") as info:
                    await impostor.sync_link("qnode2", far, 2.0, "test")
                assert info.value.kind is FailureKind.REFUSED
                far.qkdl_id = link23  # qnode1 has no part in qnode2–qnode3
                with pytest.raises(RelayFailure, match="no PHYS link") as info:
                    await honest.sync_link("qnode2", far, 2.0, "test")
                assert info.value.kind is FailureKind.REFUSED
                assert pool.position.even <= before.even + 10**6  # nothing jumped to 10**9
                far.qkdl_id = link12
                answer = await honest.sync_link("qnode2", far, 2.0, "test")
                assert (answer.next_even, answer.next_odd) == (10**9, 10**9 + 1)
                assert pool.position == Position(10**9, 10**9 + 1)
        finally:
            await impostor.close()
            await honest.close()
            await twin.close()

    asyncio.run(run())
