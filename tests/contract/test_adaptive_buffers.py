"""Adaptive relay buffers against real agents (NETCONF on 127.0.0.1): the controller grows an
association's relay/buffer from its measured consumption on its source node, as a committed
transaction, shrinks it after the hold time when demand falls, and a re-route keeps it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.buffer_service import BufferService
from controller.buffers import BufferSettings, Direction
from controller.model import KeyRequest, QoS
from controller.web.feed import LiveFeed
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.configs import controller_from_plan

DEADLINE_S = 20.0
NODE = "etsi-qkd-sdn-node:qkd_node"
SDN = "qkdsdn-node"


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def buffers_held(agents: dict[str, Any], node: str) -> dict[str, int]:
    apps = agents[node].datastore.running_json()[NODE].get("qkd_applications", {})
    return {
        app["app_id"]: int(app.get(f"{SDN}:relay", {}).get("buffer", 3))
        for app in apps.get("qkd_app", [])
    }


def test_the_controller_sizes_a_relay_buffer_from_the_measured_consumption(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["n1", "n2", "n3"], [("n1", "n2"), ("n2", "n3"), ("n1", "n3")])

    async def scenario() -> None:
        async with running_agents(plan) as agents:
            controller = controller_from_plan(plan, poll_interval=30.0, device_grace=0.0)
            await controller.start(connect_timeout=DEADLINE_S)
            try:
                snap = controller.topology()
                n1, n3 = snap.resolve("n1"), snap.resolve("n3")
                intent = await controller.install(
                    KeyRequest(n1, n3, "app1", ("app2",), QoS(100, 1_000, 5))
                )
                rates = {intent.intent_id: 5120.0}  # 20 keys of 256 bits a second
                clock = [0.0]
                service = BufferService(
                    controller.topology,
                    controller.intent_service,
                    lambda: rates,
                    BufferSettings(hold_s=10.0),
                    clock=lambda: clock[0],
                )
                feed = LiveFeed(controller.topology)
                service.listeners.add(feed.on_buffer)

                [grown] = await service.step()
                assert grown.done and (grown.old, grown.new) == (3, 20)
                assert grown.direction is Direction.GROW
                assert buffers_held(agents, "n1") == {intent.intent_id: 20}  # the source node
                assert buffers_held(agents, "n3") == {intent.intent_id: 3}
                assert controller.intent_service.buffers() == {intent.intent_id: 20}
                assert feed.entries()[-1].text.startswith("buffer app1>app2: 3 → 20 keys")
                assert await service.step() == []  # settled

                rates[intent.intent_id] = 300.0  # demand falls to 2 keys a second
                clock[0] = 5.0
                assert await service.step() == []  # within the hold time
                clock[0] = 11.0
                [shrunk] = await service.step()
                assert shrunk.done and (shrunk.old, shrunk.new) == (20, 2)
                assert buffers_held(agents, "n1") == {intent.intent_id: 2}

                # A re-route writes the association anew on every node: with its buffer.
                [direct] = snap.links_between(n1, n3)
                agents["n1"].node.set_link(direct.qkdl_id, False)
                await until(
                    lambda: (
                        (path := controller.intent_service.get(intent.intent_id).path) is not None
                        and path.hops == 2
                    ),
                    "the re-route through n2",
                )
                await controller.settle()
                assert buffers_held(agents, "n1") == {intent.intent_id: 2}
                assert buffers_held(agents, "n2") == {intent.intent_id: 2}
            finally:
                await controller.stop()

    asyncio.run(scenario())
