"""Internal interfaces authenticate their caller by role: the agents' gRPC and the relay.

Real agents (running_agents) and a real relay server on 127.0.0.1 with the lab PKI; every
certificate below is signed by the lab CA, so only the role and name tell them apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents.main import AgentHandle
from common.protos import control_pb2 as ctl
from common.protos import control_pb2_grpc as ctl_grpc
from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from common.protos import node_link_pb2 as nl
from common.protos import node_link_pb2_grpc as nl_grpc
from common.protos import relay_pb2 as relay_pb
from common.protos import relay_pb2_grpc as relay_grpc
from common.roles import Identity, Role, TlsMaterial, channel_credentials
from km.key_store import KeyStore
from km.relay.component import RelayComponent
from lab.pki import CertPaths, issue_certificate, load_ca
from lab.plan import LabPlan
from tests.harness.agents import LinkSpec, make_test_plan, running_agents
from tests.harness.configs import km_config_of
from tests.harness.relay import FakeAgent, make_plan

DEADLINE_S = 10.0


def tls_of(plan: LabPlan, identity: Identity) -> TlsMaterial:
    """A certificate for `identity` signed by the lab CA (made on demand, like a stolen one)."""
    ca = load_ca(Path(plan.credentials.ca_cert), Path(plan.credentials.ca_key))
    stem = Path(plan.state_dir) / "pki" / f"test-{identity.role.value}-{identity.name}"
    paths = CertPaths(stem.with_suffix(".pem"), stem.with_suffix(".key"))
    issue_certificate(ca, identity, paths, client=True, reuse=True)
    return TlsMaterial.from_files(paths.cert, paths.key, plan.credentials.ca_cert)


def roleless_tls(plan: LabPlan, common_name: str) -> TlsMaterial:
    """A client certificate signed by the lab CA with a CN but no role SAN (pre-role style)."""
    ca = load_ca(Path(plan.credentials.ca_cert), Path(plan.credentials.ca_key))
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return TlsMaterial(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        Path(plan.credentials.ca_cert).read_bytes(),
    )


def no_client_cert(plan: LabPlan) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(plan.credentials.ca_cert).read_bytes()
    )


@asynccontextmanager
async def channel_as(address: str, tls: TlsMaterial | None, plan: LabPlan) -> AsyncIterator[Any]:
    credentials = channel_credentials(tls) if tls is not None else no_client_cert(plan)
    async with grpc.aio.secure_channel(address, credentials) as channel:
        yield channel


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def two_agents(
    tmp_path: Path, body: Callable[[LabPlan, AgentHandle, AgentHandle], Awaitable[None]]
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [LinkSpec("a", "b", skr_bps=256_000.0, qber=0.02)])

    async def scenario() -> None:
        async with running_agents(plan, plan_ports=False, persist=False) as agents:
            await body(plan, agents["a"], agents["b"])

    asyncio.run(asyncio.wait_for(scenario(), 60))


def open_request(plan: LabPlan, at: str = "a", peer: str = "b") -> pb.OpenConnectRequest:
    return pb.OpenConnectRequest(
        source=f"qkdn:{plan.node(at).qkdn_id}",
        destination=f"qkdn:{plan.node(peer).qkdn_id}",
        key_stream_id=plan.links[0].qkdl_id,
    )


def test_link_keys_are_served_only_to_the_nodes_own_key_manager(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: AgentHandle, b: AgentHandle) -> None:
        get = pb.GetKeyRequest(key_stream_id=plan.links[0].qkdl_id)
        strangers: dict[str, tuple[TlsMaterial | None, grpc.StatusCode]] = {
            "no client certificate": (None, grpc.StatusCode.UNAVAILABLE),
            "the KM of the other node": (
                tls_of(plan, Identity(Role.KM, "b")),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            "an application named like the node": (
                tls_of(plan, Identity(Role.SAE, "a")),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            "the controller": (
                tls_of(plan, Identity(Role.CONTROLLER, "controller")),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            "the operator": (
                tls_of(plan, Identity(Role.OPERATOR, "lab")),
                grpc.StatusCode.PERMISSION_DENIED,
            ),
            "a certificate with CN=a and no role": (
                roleless_tls(plan, "a"),
                grpc.StatusCode.UNAUTHENTICATED,
            ),
        }
        for who, (tls, code) in strangers.items():
            async with channel_as(a.grpc_address, tls, plan) as channel:
                stub: Any = pb_grpc.KeyDeliveryStub(channel)
                for call in (stub.OpenConnect(open_request(plan)), stub.GetKey(get)):
                    error = await refused(call)
                    assert error.code() is code, (who, error.code(), error.details())
                    if code is grpc.StatusCode.PERMISSION_DENIED:
                        assert "only the key manager of node 'a'" in (error.details() or "")
        # The node's own key manager is served: a 32-byte link key (once b's KM opened too).
        own = TlsMaterial.from_files(*plan.node_certs["a"], plan.credentials.ca_cert)
        peer = TlsMaterial.from_files(*plan.node_certs["b"], plan.credentials.ca_cert)
        async with (
            channel_as(a.grpc_address, own, plan) as channel,
            channel_as(b.grpc_address, peer, plan) as at_b,
        ):
            stub = pb_grpc.KeyDeliveryStub(channel)
            assert (await stub.OpenConnect(open_request(plan))).status == 1  # b not yet
            opened = await pb_grpc.KeyDeliveryStub(at_b).OpenConnect(open_request(plan, "b", "a"))
            assert opened.status == 0
            deadline = time.monotonic() + DEADLINE_S
            while (reply := await stub.GetKey(get)).status == 2:  # not yet generated
                assert time.monotonic() < deadline, "no key generated"
                await asyncio.sleep(0.01)
            assert reply.status == 0 and len(reply.key_buffer) == 32

    two_agents(tmp_path, body)


def test_node_link_is_only_for_the_nodes_own_key_manager(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: AgentHandle, b: AgentHandle) -> None:
        registration = nl.AppRegistration(
            server_app_id="app1",
            client_app_id=["app2"],
            remote_qkdn_id=plan.node("b").qkdn_id,
            app_type="CLIENT",
        )
        for tls in (tls_of(plan, Identity(Role.KM, "b")), tls_of(plan, Identity(Role.SAE, "a"))):
            async with channel_as(a.grpc_address, tls, plan) as channel:
                stub: Any = nl_grpc.NodeLinkStub(channel)
                error = await refused(stub.RegisterApplication(registration))
                assert error.code() is grpc.StatusCode.PERMISSION_DENIED
                stream = stub.WatchConfig(nl.WatchRequest(km_id="a"))
                error = await refused(stream.read())
                assert error.code() is grpc.StatusCode.PERMISSION_DENIED
                report = nl.ConsumptionReport(
                    km_id="a",
                    km_run="forged",
                    pairs=[
                        nl.PairConsumption(
                            server_app_id="app1", client_app_id="app2", delivered_bits=256
                        )
                    ],
                )
                error = await refused(stub.ReportConsumption(report))
                assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert a.node.status.name == "OPERATING"
        assert a.node.backend.consumption.bits("app1", ["app2"]) == 0
        own = TlsMaterial.from_files(*plan.node_certs["a"], plan.credentials.ca_cert)
        async with channel_as(a.grpc_address, own, plan) as channel:
            stub = nl_grpc.NodeLinkStub(channel)
            stream = stub.WatchConfig(nl.WatchRequest(km_id="a"))
            first = await asyncio.wait_for(stream.read(), DEADLINE_S)
            assert plan.node("a").qkdn_id in first.qkd_node_json
            stream.cancel()

    two_agents(tmp_path, body)


def test_only_the_operator_may_cut_a_link_or_stop_the_node(tmp_path: Path) -> None:
    async def body(plan: LabPlan, a: AgentHandle, b: AgentHandle) -> None:
        cut = ctl.SetLinkRequest(qkdl_id=plan.links[0].qkdl_id, up=False)
        for tls, code in (
            (None, grpc.StatusCode.UNAVAILABLE),
            (tls_of(plan, Identity(Role.KM, "a")), grpc.StatusCode.PERMISSION_DENIED),
            (tls_of(plan, Identity(Role.SAE, "operator")), grpc.StatusCode.PERMISSION_DENIED),
            (roleless_tls(plan, "lab"), grpc.StatusCode.UNAUTHENTICATED),
        ):
            async with channel_as(a.grpc_address, tls, plan) as channel:
                stub: Any = ctl_grpc.AgentControlStub(channel)
                for call in (stub.SetLink(cut), stub.StopNode(ctl.StopNodeRequest())):
                    error = await refused(call)
                    assert error.code() is code, (error.code(), error.details())
        operator = TlsMaterial.from_files(*plan.operator_cert, plan.credentials.ca_cert)
        async with channel_as(a.grpc_address, operator, plan) as channel:
            stub = ctl_grpc.AgentControlStub(channel)
            status = await stub.Status(ctl.StatusRequest())
            assert [link.status for link in status.links] == ["ACTIVE"]  # nothing was cut
            reply = await stub.SetLink(cut)
            assert reply.link.status != "ACTIVE"

    two_agents(tmp_path, body)


def test_a_relay_hop_from_an_application_named_like_a_node_is_refused(tmp_path: Path) -> None:
    async def run() -> None:
        plan = make_plan(tmp_path, ["qnode1", "qnode2"], [("qnode1", "qnode2")])
        agent = FakeAgent(plan, "qnode2")
        store = KeyStore(tmp_path / "qnode2.sqlite")
        km = RelayComponent(km_config_of(plan, "qnode2"), store)
        await agent.start()
        await km.start()
        hop = relay_pb.RelayHop(
            virt_link_id="v",
            hop=1,
            sender=plan.node("qnode1").qkdn_id,
            receiver=plan.node("qnode2").qkdn_id,
            mode="aes-gcm",
        )
        address = plan.node("qnode2").km_relay_address
        impostors = {
            tls_of(plan, Identity(Role.SAE, "qnode1")): grpc.StatusCode.PERMISSION_DENIED,
            roleless_tls(plan, "qnode1"): grpc.StatusCode.UNAUTHENTICATED,
        }
        try:
            for tls, code in impostors.items():
                async with channel_as(address, tls, plan) as channel:
                    stub: Any = relay_grpc.RelayStub(channel)
                    error = await refused(stub.Forward(hop, timeout=DEADLINE_S))
                    assert error.code() is code, (error.code(), error.details())
                    assert "relay:" in (error.details() or "")
                    void = relay_pb.RelayVoid(
                        virt_link_id="v", hop=1, sender=hop.sender, receiver=hop.receiver
                    )  # a void takes relayed keys back: the same check
                    error = await refused(stub.Void(void, timeout=DEADLINE_S))
                    assert error.code() is code, (error.code(), error.details())
                    assert "relay:" in (error.details() or "")
        finally:
            await km.stop()
            await agent.stop()
            store.close()

    asyncio.run(asyncio.wait_for(run(), 60))
