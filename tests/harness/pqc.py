"""Three key managers with key modes (real relay and PqcExchange gRPC, mutual TLS, real key
stores) over fake agents: the harness of tests/contract/test_pqc_modes.py and bench/pqc.py."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from common.protos import node_link_pb2 as nl
from km.access import AccessControl, AccessPolicy
from km.key_store import KeyStore, StoredKey
from km.pqc.component import KeyModes
from km.pqc.mode import KeyMode, Origin
from km.relay.component import RelayComponent
from km.relay.forwarder import RelayTimeouts
from lab.plan import LabPlan
from tests.harness.configs import km_config_of
from tests.harness.relay import FakeAgent, install_path, make_plan, wait_until

FAST = RelayTimeouts(link_key_s=0.3, per_hop_s=1.0, entry_s=0.2, connect_s=0.3)
NODES = ("qnode1", "qnode2", "qnode3")
PATH = list(NODES)


@dataclasses.dataclass
class Lab:
    plan: LabPlan
    agents: dict[str, FakeAgent]
    kms: dict[str, RelayComponent]
    modes: dict[str, KeyModes]
    stores: dict[str, KeyStore]
    access: AccessControl

    def set_mode(self, mode: KeyMode) -> None:
        self.access.policy = _policy(mode)

    def auto_install(self, path: Sequence[str], **kwargs: Any) -> None:
        def on_register(request: nl.AppRegistration) -> None:
            install_path(self.agents, path, request.server_app_id, request.client_app_id, **kwargs)

        self.agents[path[0]].on_register = on_register

    async def enc(self, number: int = 1) -> list[StoredKey]:
        return await self.modes["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode3", number, 256)

    def claim(self, keys: Sequence[StoredKey]) -> list[bytes]:
        got = self.stores["qnode3"].claim("app2", "app1", [k.key_id for k in keys])
        return [k.material for k in got]

    def origin(self, node: str, key: StoredKey) -> Origin | None:
        found = self.modes[node].origins.of(key.key_id)
        return None if found is None else found.origin


def _policy(mode: KeyMode) -> AccessPolicy:
    return AccessPolicy.from_dict({"saes": {"app1": {"key_mode": mode.value}, "app2": {}}})


@contextlib.asynccontextmanager
async def running_lab(
    tmp: Path, pool_max_bits: int = 256 * 64, timeouts: RelayTimeouts = FAST
) -> AsyncIterator[Lab]:
    plan = make_plan(tmp, NODES, list(itertools.pairwise(NODES)), pool_max_bits=pool_max_bits)
    agents = {n: FakeAgent(plan, n) for n in NODES}
    stores = {n: KeyStore(tmp / f"{n}.sqlite") for n in NODES}
    access = AccessControl(_policy(KeyMode.QKD_PREFERRED))
    kms: dict[str, RelayComponent] = {}
    modes: dict[str, KeyModes] = {}
    for n in NODES:
        config = km_config_of(plan, n)
        assert n != "qnode1" or "qnode3" in config.key_managers  # not a neighbour of qnode1
        kms[n] = RelayComponent(config, stores[n], timeouts=timeouts, admission_timeout_s=2.0)
        modes[n] = KeyModes(config, stores[n], kms[n], access)
    try:
        for agent in agents.values():
            await agent.start()
        for km in kms.values():
            await km.start()
        yield Lab(plan, agents, kms, modes, stores, access)
    finally:
        for m in modes.values():
            await m.close()
        for km in kms.values():
            await km.stop()
        for agent in agents.values():
            await agent.stop()
        for store in stores.values():
            store.close()


async def links_ready(lab: Lab) -> None:
    pools = [p for km in lab.kms.values() for p in km.pools.pools]
    await wait_until(
        lambda: (
            all(p.synced and p.ready_for_sending() >= 4 for p in pools)
            and not any(km.forwarder.link_sync.starting for km in lab.kms.values())
        ),
        what="link keys",
    )
