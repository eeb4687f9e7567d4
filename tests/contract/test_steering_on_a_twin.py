"""Data-driven steering against real agents (NETCONF on 127.0.0.1): an association leaves a
link whose SKR collapsed (an eavesdropper), by one transactional install, and comes back
when the link recovers; static control leaves it where it was."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from controller.model import IntentState, KeyRequest, QoS
from controller.steering import ActionKind, SteeringSettings
from controller.steering_service import SteeringDecision, SteeringService
from controller.web.feed import LiveFeed
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.configs import controller_from_plan

DEADLINE_S = 20.0
NODE = "etsi-qkd-sdn-node:qkd_node"


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_steering_moves_an_association_off_a_collapsed_link_and_back(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["n1", "n2", "n3"], [("n1", "n2"), ("n2", "n3"), ("n1", "n3")])

    async def scenario() -> None:
        async with running_agents(plan) as agents:
            controller = controller_from_plan(plan, poll_interval=30.0, device_grace=0.0)
            await controller.start(connect_timeout=DEADLINE_S)
            try:
                clock = [0.0]
                steering = SteeringService(
                    controller.topology,
                    controller.intent_service,
                    SteeringSettings(hold_s=5.0),
                    clock=lambda: clock[0],
                )
                feed = LiveFeed(controller.topology)
                steering.listeners.add(feed.on_steering)
                snap = controller.topology()
                n1, n3 = snap.resolve("n1"), snap.resolve("n3")
                [direct] = snap.links_between(n1, n3)
                intent = await controller.install(
                    KeyRequest(n1, n3, "app1", ("app2",), QoS(100, 1_000, 5))
                )
                assert intent.path is not None and intent.path.links == (direct.qkdl_id,)
                assert await steering.step() == []  # healthy: the reference rates are learnt

                agents["n1"].node.set_eavesdropper(direct.qkdl_id, 0.13)  # about 10x less SKR
                full = direct.skr
                await until(
                    lambda: controller.topology().links[direct.qkdl_id].skr < full / 2,
                    "the collapsed SKR at the controller",
                )
                # Static control: the link is still ACTIVE, nothing re-routes the association.
                await controller.settle()
                assert controller.intent_service.get(intent.intent_id).path == intent.path

                clock[0] = 1.0
                [decision] = await steering.step()
                assert isinstance(decision, SteeringDecision)
                assert decision.kind is ActionKind.MOVE and decision.moved
                assert decision.path == ("n1", "n2", "n3")
                assert "SKR fell" in decision.reason
                moved = controller.intent_service.get(intent.intent_id)
                assert moved.state is IntentState.INSTALLED and moved.path is not None
                assert moved.path.hops == 2 and moved.reason.startswith("re-routed: steering")
                relay = agents["n2"].datastore.running_json()[NODE]["qkd_applications"]["qkd_app"]
                assert [a["app_id"] for a in relay] == [intent.intent_id]  # the trusted node
                assert steering.health[direct.qkdl_id].degraded
                assert feed.entries()[-1].text.startswith("steering app1>app2: link n1–n3 SKR")

                agents["n1"].node.set_eavesdropper(direct.qkdl_id, 0.0)
                await until(
                    lambda: controller.topology().links[direct.qkdl_id].skr > 0.9 * full,
                    "the recovered SKR",
                )
                clock[0] = 3.0  # within the hold time: nothing moves yet
                assert await steering.step() == []
                clock[0] = 7.0
                [back] = await steering.step()
                assert back.kind is ActionKind.RETURN and back.moved
                assert back.path == ("n1", "n3")
                clock[0] = 20.0
                assert await steering.step() == []  # settled: no flapping
            finally:
                await controller.stop()

    asyncio.run(scenario())
