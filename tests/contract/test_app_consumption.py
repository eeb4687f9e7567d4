"""Per-association consumption end to end: SAEs draw N keys over ETSI 014 from real key
managers, the KMs report it over NodeLink, the agents publish it as the 015
`qkd_app/app_statistics` (read here over NETCONF), and the controller measures it."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from lxml import etree

from controller.model import IntentState
from controller.names import QKD_NODE_FILTER
from km.main import KeyManager
from lab.pki import create_lab_pki
from lab.plan import LabPlan
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import controller_from_plan, km_config_of

DEADLINE_S = 30.0
NODES = ["n1", "n2"]
KEY_BITS = 256
QKD = "urn:etsi:qkd:yang:etsi-qkd-node"


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def sae_client(plan: LabPlan, sae: str) -> httpx.AsyncClient:
    pki = Path(plan.state_dir) / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / f"sae-{sae}.pem", pki / f"sae-{sae}.key")
    return httpx.AsyncClient(verify=context, timeout=DEADLINE_S)


def consumed_bits_in(xml: str, app_id: str) -> int | None:
    """consumed_bits of `app_id`'s statistics in a NETCONF <get> reply."""
    root = etree.fromstring(xml.encode())
    for app in root.iter(f"{{{QKD}}}qkd_app"):
        if app.findtext(f"{{{QKD}}}app_id") == app_id:
            value = app.findtext(f".//{{{QKD}}}statistics/{{{QKD}}}consumed_bits")
            return None if value is None else int(value)
    return None


def test_after_n_keys_the_app_statistics_say_n_times_the_key_size(tmp_path: Path) -> None:
    plan = make_test_plan(
        tmp_path,
        NODES,
        [LinkSpec("n1", "n2", skr_bps=200_000.0)],
        [("app1", "n1"), ("app2", "n2")],
    )
    create_lab_pki(tmp_path, NODES, ["app1", "app2"])
    km1_url = f"https://{km_config_of(plan, 'n1').listen.etsi014}"
    km2_url = f"https://{km_config_of(plan, 'n2').listen.etsi014}"

    async def scenario() -> None:
        async with running_agents(plan, persist=False) as agents:
            controller = controller_from_plan(plan, poll_interval=0.5, device_grace=0.0)
            await controller.start(connect_timeout=DEADLINE_S)
            managers = [KeyManager(km_config_of(plan, n)) for n in NODES]
            try:
                for manager in managers:
                    await manager.start()
                key_ids: list[str] = []
                async with sae_client(plan, "app1") as app1:
                    for number in (3, 2):  # N = 5 keys in two requests
                        reply = await app1.get(
                            f"{km1_url}/api/v1/keys/app2/enc_keys",
                            params={"number": number, "size": KEY_BITS},
                        )
                        assert reply.status_code == 200, reply.text
                        key_ids += [k["key_ID"] for k in reply.json()["keys"]]
                async with sae_client(plan, "app2") as app2:
                    reply = await app2.post(
                        f"{km2_url}/api/v1/keys/app1/dec_keys",
                        json={"key_IDs": [{"key_ID": k} for k in key_ids[:4]]},
                    )
                    assert reply.status_code == 200, reply.text
                [intent] = [i for i in controller.intents() if i.state is IntentState.INSTALLED]
                expected = {"n1": 5 * KEY_BITS, "n2": 4 * KEY_BITS}

                async def netconf_reading(node: str) -> int | None:
                    device = controller.topology().resolve(node)
                    xml = await controller.devices.call(device, lambda s: s.get(QKD_NODE_FILTER))
                    return consumed_bits_in(xml, intent.intent_id)

                readings: dict[str, int | None] = {}

                async def read_all() -> None:
                    for node in NODES:
                        readings[node] = await netconf_reading(node)

                deadline = time.monotonic() + DEADLINE_S
                await read_all()
                while readings != expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    await read_all()
                # The master's node: 5 keys of 256 bits handed to app1; the slave's: 4 to app2.
                assert readings == expected
                # The controller reads the source node's statistic from its polls.
                await until(
                    lambda: (
                        intent.intent_id in controller.consumption.usage()
                        and controller.consumption.usage()[intent.intent_id].bits == 5 * KEY_BITS
                    ),
                    "the controller's reading",
                )
                assert agents["n1"].node.backend.consumption.bits("app1", ["app2"]) == 5 * KEY_BITS
            finally:
                for manager in managers:
                    await manager.stop()
                await controller.stop()

    asyncio.run(scenario())
