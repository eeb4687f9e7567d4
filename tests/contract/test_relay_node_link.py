"""NodeLinkClient against a NodeLink server on 127.0.0.1: config pushes, registration, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.roles import TlsMaterial
from km.associations import AppRequest, NodeView
from km.node_link.client import NodeLinkClient
from km.supply import SupplyError
from tests.harness.configs import km_config_of
from tests.harness.relay import FakeAgent, empty_config, install_path, make_plan, wait_until


def test_follows_pushes_registers_and_survives_an_agent_restart(tmp_path: Path) -> None:
    async def run() -> None:
        plan = make_plan(tmp_path, ["qnode1", "qnode2"], [("qnode1", "qnode2")])
        agents = {n: FakeAgent(plan, n) for n in ("qnode1", "qnode2")}
        views: list[NodeView] = []
        client = NodeLinkClient(
            plan.node("qnode1").agent_grpc_address,
            "qnode1",
            views.append,
            tls=TlsMaterial.of(km_config_of(plan, "qnode1").tls),
        )
        await client.start()  # before the agent: the client keeps trying
        try:
            with pytest.raises(SupplyError, match="unreachable"):
                await client.register(AppRequest("app1", ("app2",), "x", 256, 60))
            await agents["qnode1"].start()
            await wait_until(lambda: len(views) == 1, what="initial config")
            assert views[0].associations == () and views[0].qkdn_id == agents["qnode1"].qkdn_id
            await client.register(AppRequest("app1", ("app2",), agents["qnode2"].qkdn_id, 256, 60))
            (registration,) = agents["qnode1"].registrations
            assert registration.server_app_id == "app1"
            assert list(registration.client_app_id) == ["app2"]
            install_path(agents, ["qnode1", "qnode2"])
            await wait_until(lambda: len(views) == 2 and len(views[-1].associations) == 1)
            # A malformed push is ignored: the last good view stays.
            agents["qnode1"].push({"etsi-qkd-sdn-node:qkd_node": {"qkd_links": 3}})
            await agents["qnode1"].stop()
            await wait_until(lambda: not client.connected.is_set(), what="disconnect seen")
            assert len(views) == 2
            agents["qnode1"].push(empty_config(agents["qnode1"].qkdn_id))
            await agents["qnode1"].start()
            await wait_until(lambda: len(views) == 3, what="config after the agent restart")
        finally:
            await client.stop()
            for agent in agents.values():
                await agent.stop()

    asyncio.run(run())
