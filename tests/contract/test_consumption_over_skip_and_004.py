"""Keys drawn over SKIP and ETSI 004 count in the consumption like ETSI 014's: real key
managers (SKIP and 004 servers on), agents and controller; the 015 `consumed_bits` of the
association, read over NETCONF, add up what each interface handed out."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import replace
from pathlib import Path

import grpc
import httpx

from common.config import Address
from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from controller.model import IntentState
from controller.names import QKD_NODE_FILTER
from km.config import KmConfig
from km.main import KeyManager
from lab.launcher import free_ports
from lab.pki import create_lab_pki
from lab.plan import LabPlan
from tests.contract.test_app_consumption import consumed_bits_in
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import controller_from_plan, km_config_of

DEADLINE_S = 30.0
NODES = ["n1", "n2"]
KEY_BITS = 256


def with_skip(config: KmConfig, port: int) -> KmConfig:
    return replace(config, listen=replace(config.listen, skip=Address("127.0.0.1", port)))


def tls_context(plan: LabPlan, sae: str) -> ssl.SSLContext:
    pki = Path(plan.state_dir) / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / f"sae-{sae}.pem", pki / f"sae-{sae}.key")
    return context


def stream_channel(plan: LabPlan, sae: str, address: Address) -> grpc.aio.Channel:
    pki = Path(plan.state_dir) / "pki"
    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(),
        (pki / f"sae-{sae}.key").read_bytes(),
        (pki / f"sae-{sae}.pem").read_bytes(),
    )
    return grpc.aio.secure_channel(str(address), credentials)


def test_keys_handed_out_over_skip_and_etsi004_are_counted_in_the_app_statistics(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(
        tmp_path,
        NODES,
        [LinkSpec("n1", "n2", skr_bps=200_000.0)],
        [("app1", "n1"), ("app2", "n2")],
    )
    create_lab_pki(tmp_path, NODES, ["app1", "app2"])
    skip_ports = dict(zip(NODES, free_ports(len(NODES)), strict=True))
    configs = {n: with_skip(km_config_of(plan, n), skip_ports[n]) for n in NODES}

    async def scenario() -> None:
        async with running_agents(plan, persist=False):
            controller = controller_from_plan(plan, poll_interval=0.5, device_grace=0.0)
            await controller.start(connect_timeout=DEADLINE_S)
            managers = {n: KeyManager(configs[n]) for n in NODES}
            try:
                for manager in managers.values():
                    await manager.start()
                skip = {n: f"https://127.0.0.1:{skip_ports[n]}" for n in NODES}
                # SKIP: app1 draws two keys at n1, app2 fetches one of them at n2.
                async with httpx.AsyncClient(verify=tls_context(plan, "app1")) as app1:
                    drawn = []
                    for _ in range(2):
                        reply = await app1.get(
                            f"{skip['n1']}/key",
                            params={"remoteSystemID": "app2", "size": KEY_BITS},
                            timeout=DEADLINE_S,
                        )
                        assert reply.status_code == 200, reply.text
                        drawn.append(reply.json()["keyId"])
                async with httpx.AsyncClient(verify=tls_context(plan, "app2")) as app2:
                    reply = await app2.get(
                        f"{skip['n2']}/key/{drawn[0]}",
                        params={"remoteSystemID": "app1"},
                        timeout=DEADLINE_S,
                    )
                    assert reply.status_code == 200, reply.text
                # ETSI 004: one key of KEY_BITS at each end of a stream app1 -> app2.
                qos = pb.QoS(key_chunk_size=KEY_BITS // 8, timeout=int(DEADLINE_S * 1000))
                n1_004 = Address("127.0.0.1", managers["n1"].grpc_port)
                n2_004 = Address("127.0.0.1", managers["n2"].grpc_port)
                async with (
                    stream_channel(plan, "app1", n1_004) as c1,
                    stream_channel(plan, "app2", n2_004) as c2,
                ):
                    s1, s2 = pb_grpc.KeyDeliveryStub(c1), pb_grpc.KeyDeliveryStub(c2)
                    opened = await s1.OpenConnect(
                        pb.OpenConnectRequest(source="app1", destination="app2", qos=qos)
                    )
                    sid = opened.key_stream_id
                    await s2.OpenConnect(
                        pb.OpenConnectRequest(
                            source="app2", destination="app1", qos=qos, key_stream_id=sid
                        )
                    )
                    k1 = await s1.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                    k2 = await s2.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                    assert k1.status == k2.status == 0, (k1.status, k2.status)
                    assert k1.key_buffer == k2.key_buffer
                installed = [i for i in controller.intents() if i.state is IntentState.INSTALLED]
                assert installed
                [intent] = [i for i in installed if i.request.server_app_id == "app1"]
                # n1: two SKIP keys and one 004 key to app1; n2: one of each to app2.
                expected = {"n1": 3 * KEY_BITS, "n2": 2 * KEY_BITS}
                readings: dict[str, int | None] = {}

                async def read_all() -> None:
                    for node in NODES:
                        device = controller.topology().resolve(node)
                        xml = await controller.devices.call(
                            device, lambda s: s.get(QKD_NODE_FILTER)
                        )
                        readings[node] = consumed_bits_in(xml, intent.intent_id)

                deadline = time.monotonic() + DEADLINE_S
                await read_all()
                while readings != expected and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    await read_all()
                assert readings == expected
                ledger = managers["n1"].consumption
                assert ledger is not None and ledger.bits("app1", "app2") == 3 * KEY_BITS
            finally:
                for manager in managers.values():
                    await manager.stop()
                await controller.stop()

    asyncio.run(scenario())
