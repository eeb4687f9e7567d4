"""Processes listen where their configuration says: an agent and a KM's link pools on IPv6."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from agents import config as agent_config
from agents.main import running_agents
from common.protos import control_pb2 as ctl
from common.protos import control_pb2_grpc as ctl_grpc
from km import config as km_config
from km.link_pools import LinkKeyPools
from lab.configs import process_configs
from lab.pki import create_lab_pki
from tests.harness.agents import LinkSpec, agent_channel, make_test_plan, operator_tls
from tests.harness.relay import wait_until


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_agents_and_link_pools_speak_over_ipv6_when_configured(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [LinkSpec("a", "b", skr_bps=100_000.0)])
    create_lab_pki(tmp_path, ["a", "b"], [])
    data = process_configs(plan, {"a": "::1", "b": "::1"})
    folder = tmp_path / "config"
    agents = [agent_config.parse(data[f"agent-{n}"], folder / f"agent-{n}.yaml") for n in "ab"]
    kms = {n: km_config.parse(data[f"km-{n}"], folder / f"km-{n}.yaml") for n in "ab"}
    assert str(agents[0].listen.grpc).startswith("[::1]:")
    assert str(kms["a"].agent) == str(agents[0].listen.grpc)

    async def scenario() -> None:
        async with running_agents(agents, persist=False) as handles:
            grpc_address = str(agents[0].listen.grpc)
            async with agent_channel(grpc_address, operator_tls(plan)) as channel:
                control: Any = ctl_grpc.AgentControlStub(channel)
                status = await control.Status(ctl.StatusRequest(), timeout=10)
            assert status.name == "a"
            netconf = agents[1].listen.netconf
            _, writer = await asyncio.open_connection(netconf.host, netconf.port)
            writer.close()
            pools = {n: LinkKeyPools(kms[n]) for n in "ab"}
            for pool in pools.values():
                await pool.start()
            try:
                [a_pool] = pools["a"].pools
                await wait_until(lambda: a_pool.level_bits > 0, 20.0, "link keys over IPv6")
            finally:
                for pool in pools.values():
                    await pool.stop()
            assert handles["a"].grpc_address == grpc_address

    asyncio.run(scenario())
