"""Two slow key managers on a fast link settle after a resync instead of resyncing for ever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from agents.node.settings import NodeSettings
from km import link_pools
from km.key_store import KeyStore
from km.link_pools import LinkKeyPool
from km.relay.component import RelayComponent
from km.relay.forwarder import RelayTimeouts
from lab.pki import create_lab_pki
from lab.plan import Settings
from lab.timeline import Tracer, read_events
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import km_config_of
from tests.harness.relay import wait_until

NODES = ["qnode1", "qnode2"]
TIMEOUTS = RelayTimeouts(link_key_s=0.5, per_hop_s=1.5, entry_s=0.5)
# Both KMs see every module reply this late (a starved machine: their loops run late), so a
# pool fills more slowly than its module's store turns over and meets expired keys.
REPLY_DELAY_S = 0.1
SKR_BPS = 1_000_000.0  # ~3,900 keys/s, of which each module keeps 1 s (8 pools)
MODULE_STORE_S = 1.0
POOL_BITS = 256 * 512
SETTLE_S = 45.0  # both pools full and no resync pending within this bound
QUIET_S = 4.0  # then watched this long: a link at rest resyncs no more
# Resync events (both ends, both roles) from start to settled: each end meets the expiry edge
# a few times while its lead past the edge doubles to what its pace needs (~log2 of the module store
# / 128 each), each time one exchange (two events): 4-38 seen on a busy machine. Before the fix the
# two never settled (526 events in 30 s, both pools empty).
MAX_RESYNCS_TO_SETTLE = 60


class _LateCall:
    """A module call whose reply reaches the KM `delay` seconds after the module answered."""

    def __init__(self, call: Any, delay: float) -> None:
        self._call = call
        self._delay = delay

    def __await__(self) -> Any:
        return self._late().__await__()

    async def _late(self) -> Any:
        reply = await self._call
        await asyncio.sleep(self._delay)
        return reply

    async def trailing_metadata(self) -> Any:
        return await self._call.trailing_metadata()


class _LateStub:
    """The module stub of a KM whose event loop is late: every key reply arrives late."""

    def __init__(self, real: Any, delay: float) -> None:
        self._real = real
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def GetKeyBatch(self, request: Any, timeout: float | None = None) -> Any:
        return _LateCall(self._real.GetKeyBatch(request, timeout=timeout), self._delay)

    def GetKey(self, request: Any, timeout: float | None = None) -> Any:
        return _LateCall(self._real.GetKey(request, timeout=timeout), self._delay)


def _full(pool: LinkKeyPool) -> bool:
    return not pool.filling()  # both halves reached their high-water mark


def test_two_late_kms_settle_instead_of_resyncing_for_ever(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Both KMs' module replies arrive late, so the pools fill more slowly than the modules
    expire keys. Each end meets expired keys and tells the other (SyncLink): each
    disagreement costs a resync, which must leave the other end's matching keys alone and
    not send it back to the expiry edge. Within a bound both pools are full and agree, then
    the idle link stays quiet; every key either end holds is held by the other too."""
    plan = make_test_plan(
        tmp_path,
        NODES,
        [LinkSpec("qnode1", "qnode2", skr_bps=SKR_BPS)],
        settings=Settings(link_pool_max_bits=POOL_BITS),
    )
    create_lab_pki(tmp_path, NODES, [])
    traces = tmp_path / "trace"
    traces.mkdir()
    tracers = {n: Tracer(f"km:{n}", str(traces / f"{n}.jsonl")) for n in NODES}
    real_stub = link_pools._KEY_DELIVERY_STUB
    monkeypatch.setattr(
        link_pools, "_KEY_DELIVERY_STUB", lambda ch: _LateStub(real_stub(ch), REPLY_DELAY_S)
    )

    def resyncs() -> int:
        return sum(1 for e in read_events(traces) if e.event == "link_key.resync")

    async def run() -> tuple[int, int, set[int], set[int]]:
        stores = {n: KeyStore(tmp_path / f"{n}.sqlite") for n in NODES}
        kms = {
            n: RelayComponent(
                km_config_of(plan, n), stores[n], timeouts=TIMEOUTS, tracer=tracers[n]
            )
            for n in NODES
        }
        try:
            async with running_agents(
                plan, persist=False, settings=NodeSettings(module_store_s=MODULE_STORE_S)
            ):
                for km in kms.values():
                    await km.start()
                near = kms["qnode1"].pools.for_peer("qnode2")
                far = kms["qnode2"].pools.for_peer("qnode1")

                def settled() -> bool:
                    return (
                        near.synced
                        and far.synced
                        and _full(near)
                        and _full(far)
                        and not near.needs_resync()
                        and not far.needs_resync()
                    )

                try:
                    await wait_until(settled, timeout=SETTLE_S, what="both pools full, agreed")
                except AssertionError:
                    raise AssertionError(
                        f"not settled within {SETTLE_S} s: {resyncs()} resyncs;"
                        f" {near!r} at {near.position}, {far!r} at {far.position}"
                    ) from None
                to_settle = resyncs()
                quiet_from = time.monotonic()
                await wait_until(
                    lambda: time.monotonic() - quiet_from >= QUIET_S, timeout=QUIET_S + 5
                )
                return to_settle, resyncs() - to_settle, near.held(), far.held()
        finally:
            for km in kms.values():
                await km.stop()
            for store in stores.values():
                store.close()
            for tracer in tracers.values():
                tracer.close()

    to_settle, while_quiet, near_held, far_held = asyncio.run(run())
    assert to_settle <= MAX_RESYNCS_TO_SETTLE, to_settle
    assert while_quiet == 0, f"{while_quiet} resyncs on a link at rest"
    assert near_held == far_held  # no key one end holds that the other cannot match
