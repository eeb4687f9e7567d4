"""LinkKeyPools against the module side of ETSI 004 over real gRPC on 127.0.0.1 (a scripted
module for exact faults, and the real agents)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from km.link_pools import LinkKeyPools, PoolState
from lab.pki import create_lab_pki
from lab.plan import Settings
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import km_config_of
from tests.harness.relay import FakeAgent, make_plan, wait_until


async def _pair(
    tmp: Path, max_bits: int, *, batches: bool = True, refill_pause: float = 0.2
) -> tuple[dict[str, FakeAgent], dict[str, LinkKeyPools]]:
    plan = make_plan(tmp, ["qnode1", "qnode2"], [("qnode1", "qnode2")], pool_max_bits=max_bits)
    agents = {n: FakeAgent(plan, n) for n in ("qnode1", "qnode2")}
    for agent in agents.values():
        agent.batches = batches
        await agent.start()
    pools = {
        n: LinkKeyPools(km_config_of(plan, n), refill_pause=refill_pause)
        for n in ("qnode1", "qnode2")
    }
    for p in pools.values():
        await p.start()
    return agents, pools


async def _close(agents: dict[str, FakeAgent], pools: dict[str, LinkKeyPools]) -> None:
    for p in pools.values():
        await p.stop()
    for agent in agents.values():
        await agent.stop()


def test_pools_fill_to_the_maximum_and_agree_on_every_index(tmp_path: Path) -> None:
    async def run() -> None:
        agents, pools = await _pair(tmp_path, 256 * 16)
        try:
            one, two = pools["qnode1"].for_peer("qnode2"), pools["qnode2"].for_peer("qnode1")
            await wait_until(lambda: one.level_bits >= 256 * 16 and two.level_bits >= 256 * 16)
            assert one.state is PoolState.READY
            requests = agents["qnode1"].stream("qnode2").requests
            for _ in range(5):  # each half of 8 keys falls to 3, below its low-water mark
                index, key = await one.take_for_sending(1.0)
                assert one.link.is_ours(index)
                assert await two.take_index(index, 1.0) == key
                index, key = await two.take_for_sending(1.0)
                assert await one.take_index(index, 1.0) == key
            # Refilled in the background after the takes, and not beyond the maximum.
            await wait_until(lambda: one.level_bits == 256 * 16)
            assert agents["qnode1"].stream("qnode2").requests <= requests + 10
        finally:
            await _close(agents, pools)

    asyncio.run(run())


def test_a_full_pool_still_fetches_the_index_the_peer_chose(tmp_path: Path) -> None:
    async def run() -> None:
        agents, pools = await _pair(tmp_path, 256 * 4)
        try:
            two = pools["qnode2"].for_peer("qnode1")
            await wait_until(lambda: two.level_bits >= 256 * 4)
            # qnode1 (parity even or odd, whichever) used an index far ahead of qnode2's fill.
            far = 101 if two.link.sends_even else 100
            key = await two.take_index(far, 2.0)
            assert len(key) == 32
            assert far in agents["qnode2"].stream("qnode1").consumed
        finally:
            await _close(agents, pools)

    asyncio.run(run())


def test_pools_recover_from_link_down_and_agent_restart(tmp_path: Path) -> None:
    async def run() -> None:
        agents, pools = await _pair(tmp_path, 256 * 8)
        try:
            one = pools["qnode1"].for_peer("qnode2")
            await wait_until(lambda: one.level_bits >= 256 * 8)
            stream = agents["qnode1"].stream("qnode2")
            stream.up = False
            while one.ready_for_sending():
                await one.take_for_sending(1.0)
            await wait_until(lambda: not one.link_up, what="link seen down")
            stream.up = True
            await wait_until(lambda: one.ready_for_sending() > 0, what="refill after link up")
            # The agent goes away and comes back on the same port: the pool reconnects.
            await agents["qnode1"].stop()
            while one.ready_for_sending():
                await one.take_for_sending(1.0)
            await agents["qnode1"].start()
            await wait_until(lambda: one.ready_for_sending() > 0, what="refill after restart")
        finally:
            await _close(agents, pools)

    asyncio.run(run())


def test_pools_against_real_agents_agree_and_follow_link_faults(tmp_path: Path) -> None:
    async def run() -> None:
        plan = make_test_plan(
            tmp_path,
            ["qnode1", "qnode2"],
            [LinkSpec("qnode1", "qnode2", skr_bps=200_000.0)],
            settings=Settings(link_pool_max_bits=256 * 32),
        )
        create_lab_pki(tmp_path, ["qnode1", "qnode2"], [])
        async with running_agents(plan, persist=False) as agents:
            pools = {n: LinkKeyPools(km_config_of(plan, n)) for n in ("qnode1", "qnode2")}
            for p in pools.values():
                await p.start()
            try:
                one, two = pools["qnode1"].for_peer("qnode2"), pools["qnode2"].for_peer("qnode1")
                await wait_until(lambda: one.ready_for_sending() >= 4 and two.level_bits > 0)
                for _ in range(4):
                    index, key = await one.take_for_sending(1.0)
                    assert await two.take_index(index, 2.0) == key
                qkdl_id = one.link.qkdl_id
                agents["qnode1"].node.set_link(qkdl_id, False)  # both ends: the fibre is cut
                while one.ready_for_sending():
                    await one.take_for_sending(1.0)
                # A pool below its low-water mark asks the module, and learns the link is down.
                await wait_until(lambda: not one.link_up, what="link seen down")
                agents["qnode1"].node.set_link(qkdl_id, True)
                await wait_until(lambda: one.ready_for_sending() > 0, what="keys after repair")
                index, key = await one.take_for_sending(1.0)
                assert await two.take_index(index, 2.0) == key
            finally:
                for p in pools.values():
                    await p.stop()

    asyncio.run(run())


def test_one_way_traffic_never_starves_the_sender(tmp_path: Path) -> None:
    """qnode1 only sends: the peer's keys it holds must not crowd out its own."""

    async def run() -> None:
        agents, pools = await _pair(tmp_path, 256 * 8)
        try:
            one, two = pools["qnode1"].for_peer("qnode2"), pools["qnode2"].for_peer("qnode1")
            for _ in range(40):  # five times the pool size
                index, key = await one.take_for_sending(2.0)
                assert await two.take_index(index, 2.0) == key
            assert one.level_bits <= 256 * 8 and two.level_bits <= 256 * 8
        finally:
            await _close(agents, pools)

    asyncio.run(run())


def test_a_pool_at_its_high_water_mark_stops_calling_the_module_until_below_low_water(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        agents, pools = await _pair(tmp_path, 256 * 64)  # 32 keys per parity half
        try:
            one, two = pools["qnode1"].for_peer("qnode2"), pools["qnode2"].for_peer("qnode1")
            await wait_until(lambda: one.level_bits == 256 * 64 and two.level_bits == 256 * 64)
            stream = agents["qnode1"].stream("qnode2")
            calls = stream.calls
            assert calls <= 4  # filled in a few batches, not one call per key
            for _ in range(3):  # a few keys used: still above the low-water mark
                index, key = await one.take_for_sending(1.0)
                assert await two.take_index(index, 1.0) == key
            # Observed for longer than the fetcher's pause: not one call to the module.
            await asyncio.sleep(5 * 0.2)
            assert stream.calls == calls
            for _ in range(14):  # own half 32 -> 15 keys: below low water (16)
                index, key = await one.take_for_sending(1.0)
                assert await two.take_index(index, 1.0) == key
            await wait_until(lambda: one.ready_for_sending() == 32, what="own half refilled")
            assert stream.calls <= calls + 2
        finally:
            await _close(agents, pools)

    asyncio.run(run())


def test_pools_fill_one_key_per_call_from_a_module_without_batches(tmp_path: Path) -> None:
    async def run() -> None:
        agents, pools = await _pair(tmp_path, 256 * 16, batches=False)
        try:
            one, two = pools["qnode1"].for_peer("qnode2"), pools["qnode2"].for_peer("qnode1")
            await wait_until(lambda: one.level_bits == 256 * 16 and two.level_bits == 256 * 16)
            assert agents["qnode1"].stream("qnode2").calls >= 16
            index, key = await one.take_for_sending(1.0)
            assert await two.take_index(index, 1.0) == key
        finally:
            await _close(agents, pools)

    asyncio.run(run())
