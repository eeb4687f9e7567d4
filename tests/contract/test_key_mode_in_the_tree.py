"""The key mode in the node's 015 tree (qkdsdn-node:key_mode): written by the controller as
it installs an intent, shown by NETCONF <get> (ncclient) and RESTCONF, carried from a key
manager's registration through the agent's sdqkdn_application_new to every node of the path."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from lxml import etree

from agents.notifications import AppRequest
from common.config import TlsFiles
from controller.intents.compile import compile_install
from controller.model import IntentState, KeyRequest, QoS
from controller.model import Path as RoutePath
from lab.pki import create_lab_pki
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.configs import controller_from_plan
from tests.harness.netconf import (
    LINK_ID,
    NODE_ID,
    NS,
    PASSWORD,
    USERNAME,
    connect,
    netconf_console_output,
    running_agent,
)
from yang.model import KeyMode

T = TypeVar("T")
SDN_NS = "urn:qkdsdn:yang:qkdsdn-node"
NODE = "etsi-qkd-sdn-node:qkd_node"
OTHER = "55555555-5555-4555-8555-555555555555"
DEADLINE_S = 15.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    pki = create_lab_pki(tmp_path_factory.mktemp("pki"), ["n1"], [])
    return TlsFiles(pki.agents["n1"].cert, pki.agents["n1"].key, pki.ca.cert)


def test_the_key_mode_the_controller_writes_is_read_back_over_netconf_and_restconf(
    tmp_path: Path, tls: TlsFiles
) -> None:
    request = KeyRequest(NODE_ID, OTHER, "app1", ("app2",), key_mode=KeyMode.HYBRID_EITHER)
    intent = "66666666-6666-4666-8666-666666666666"
    edit = compile_install(intent, request, RoutePath((NODE_ID, OTHER), (LINK_ID,)), 100)
    with running_agent(tmp_path, restconf_tls=tls) as agent:
        with connect(agent) as session:
            session.edit_config(target="running", config=edit[NODE_ID].config)
            got = session.get(("subtree", f'<qkd_node xmlns="{NS}"><qkd_applications/></qkd_node>'))
            modes = got.data_ele.xpath(
                "//q:qkd_app[q:app_id=$id]/s:key_mode/text()",
                namespaces={"q": NS, "s": SDN_NS},
                id=intent,
            )
            assert modes == ["hybrid-either"]
        # netconf-console2, with the XPath filter docs/yang.md gives
        output = netconf_console_output(
            agent,
            "--ns", f"q={NS}", "--ns", f"s={SDN_NS}",
            "--get", "--filter", "/q:qkd_node/q:qkd_applications/q:qkd_app/s:key_mode",
        )  # fmt: skip
        reply = etree.fromstring(output.split("?>", 1)[-1].strip().encode())
        assert [e.text for e in reply.iter(f"{{{SDN_NS}}}key_mode")] == ["hybrid-either"]
        assert not list(reply.iter(f"{{{SDN_NS}}}relay"))  # only what the filter selects
        context = ssl.create_default_context(cafile=str(tls.ca))
        with httpx.Client(
            base_url=agent.restconf_url, verify=context, auth=(USERNAME, PASSWORD), timeout=10
        ) as client:
            body = client.get(f"/restconf/data/{NODE}/qkd_applications").json()
            [app] = body["etsi-qkd-sdn-node:qkd_applications"]["qkd_app"]
            assert app["qkdsdn-node:key_mode"] == "hybrid-either"
            as_xml = client.get(
                f"/restconf/data/{NODE}/qkd_applications",
                headers={"accept": "application/yang-data+xml"},
            )
            element = etree.fromstring(as_xml.content)
            assert element.findtext(f".//{{{SDN_NS}}}key_mode") == "hybrid-either"
            # a value outside the enumeration is refused, nothing changed
            bad = dict(app, **{"qkdsdn-node:key_mode": "hybrid-maybe"})
            refused = client.put(
                f"/restconf/data/{NODE}/qkd_applications/qkd_app={intent}",
                json={"etsi-qkd-sdn-node:qkd_app": [bad]},
            )
            assert refused.status_code == 400, refused.text
            again = client.get(f"/restconf/data/{NODE}/qkd_applications").json()
            [kept] = again["etsi-qkd-sdn-node:qkd_applications"]["qkd_app"]
            assert kept["qkdsdn-node:key_mode"] == "hybrid-either"


def _apps(handle: Any) -> dict[str, dict[str, Any]]:
    body = handle.datastore.running_json().get(NODE, {})
    return {a["app_id"]: a for a in body.get("qkd_applications", {}).get("qkd_app", [])}


def test_a_registered_key_mode_reaches_every_node_of_the_path_and_follows_a_change(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["n1", "n2", "n3"], [("n1", "n2"), ("n2", "n3")])

    async def scenario() -> None:
        async with running_agents(plan) as agents:
            controller = controller_from_plan(plan, poll_interval=30.0, device_grace=0.0)
            await controller.start(connect_timeout=DEADLINE_S)
            try:
                n1, n3 = plan.node("n1").qkdn_id, plan.node("n3").qkdn_id

                def register(mode: str) -> None:
                    ok, message = agents["n1"].node.register_application(
                        AppRequest("app1", ("app2",), n1, n3, min_bandwidth=100, key_mode=mode)
                    )
                    assert ok, message

                def modes() -> list[str | None]:
                    return [
                        next(iter(_apps(agents[n]).values()), {}).get("qkdsdn-node:key_mode")
                        for n in ("n1", "n2", "n3")
                    ]

                register("hybrid-either")
                await until(lambda: modes() == ["hybrid-either"] * 3, "the mode on the path")
                await controller.settle()
                [intent] = controller.intents()
                assert intent.state is IntentState.INSTALLED
                assert intent.request.key_mode is KeyMode.HYBRID_EITHER
                # the operator changes the mode: the same intent, rewritten on its path
                register("qkd-only")
                await until(lambda: modes() == ["qkd-only"] * 3, "the new mode on the path")
                await controller.settle()
                [same] = controller.intents()
                assert same.intent_id == intent.intent_id and same.path == intent.path
                assert same.request.key_mode is KeyMode.QKD_ONLY
                # pqc-only needs no QKD path: the intent is withdrawn, its rate freed
                register("pqc-only")
                await until(lambda: modes() == [None] * 3, "the path withdrawn")
                await controller.settle()
                [gone] = controller.intents()
                assert gone.state is IntentState.WITHDRAWN
                assert controller.intent_service.reservations().by_intent == {}
                # an unknown mode is refused by the agent, nothing raised
                ok, message = agents["n1"].node.register_application(
                    AppRequest("app1", ("app2",), n1, n3, key_mode="hybrid-maybe")
                )
                assert not ok and "hybrid-maybe" in message
            finally:
                await controller.stop()

    run(scenario())


def test_a_restarted_controller_rebuilds_the_key_mode_from_the_nodes(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["n1", "n2"], [("n1", "n2")])

    async def scenario() -> None:
        async with running_agents(plan):
            first = controller_from_plan(plan, poll_interval=30.0, device_grace=0.0)
            await first.start(connect_timeout=DEADLINE_S)
            try:
                snap = first.topology()
                request = KeyRequest(
                    snap.resolve("n1"),
                    snap.resolve("n2"),
                    "app1",
                    ("app2",),
                    QoS(10, 300),
                    key_mode=KeyMode.HYBRID_STRICT,
                )
                installed = await first.install(request)
                assert installed.state is IntentState.INSTALLED, installed.reason
            finally:
                await first.stop()
            second = controller_from_plan(plan, poll_interval=30.0, device_grace=0.0)
            await second.start(connect_timeout=DEADLINE_S)
            try:
                [rebuilt] = second.intents()
                assert rebuilt.request.key_mode is KeyMode.HYBRID_STRICT
            finally:
                await second.stop()

    run(scenario())
