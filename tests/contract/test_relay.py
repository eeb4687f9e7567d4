"""The trusted-node relay over 2 and 3 key managers: real gRPC, mutual TLS, real key stores.

Each node has a fake agent (ETSI 004 module side + NodeLink over gRPC on 127.0.0.1); the
"controller" is `install_path`, writing what the real controller writes into the configs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from common.protos import node_link_pb2 as nl
from common.protos import relay_pb2 as pb
from km.key_store import KeyClaimError, KeyStore, StoredKey
from km.relay.client import RelayClient
from km.relay.component import RelayComponent
from km.relay.errors import FailureKind, RelayFailure
from km.relay.forwarder import RelayTimeouts
from km.supply import SupplyError
from lab.plan import LabPlan
from lab.timeline import Tracer, read_events
from tests.harness.configs import km_config_of, relay_client
from tests.harness.relay import FakeAgent, install_path, make_plan, reject, wait_until

FAST = RelayTimeouts(link_key_s=0.3, per_hop_s=1.0, entry_s=0.2, connect_s=0.3)


@dataclasses.dataclass
class Lab:
    plan: LabPlan
    agents: dict[str, FakeAgent]
    kms: dict[str, RelayComponent]
    stores: dict[str, KeyStore]

    def auto_install(self, path: Sequence[str], **kwargs: object) -> None:
        """The controller admits the first registration on the source along `path`."""

        def on_register(request: nl.AppRegistration) -> None:
            install_path(self.agents, path, request.server_app_id, request.client_app_id, **kwargs)  # type: ignore[arg-type]

        self.agents[path[0]].on_register = on_register


@contextlib.asynccontextmanager
async def running_lab(tmp: Path, nodes: Sequence[str]) -> AsyncIterator[Lab]:
    links = list(itertools.pairwise(nodes))
    plan = make_plan(tmp, nodes, links)
    agents = {n: FakeAgent(plan, n) for n in nodes}
    stores = {n: KeyStore(tmp / f"{n}.sqlite") for n in nodes}
    tracers = {n: Tracer(f"km:{n}", str(tmp / f"trace-{n}.jsonl")) for n in nodes}
    kms = {
        n: RelayComponent(
            km_config_of(plan, n),
            stores[n],
            timeouts=FAST,
            admission_timeout_s=2.0,
            tracer=tracers[n],
        )
        for n in nodes
    }
    try:
        for agent in agents.values():
            await agent.start()
        for km in kms.values():
            await km.start()
        yield Lab(plan, agents, kms, stores)
    finally:
        for km in kms.values():
            await km.stop()
        for agent in agents.values():
            await agent.stop()
        for store in stores.values():
            store.close()
        for tracer in tracers.values():
            tracer.close()


async def _links_ready(lab: Lab) -> None:
    pools = [p for km in lab.kms.values() for p in km.pools.pools]
    await wait_until(
        lambda: (
            all(p.synced and p.ready_for_sending() >= 4 for p in pools)
            and not any(km.forwarder.link_sync.starting for km in lab.kms.values())
        ),
        what="link keys",
    )


def _claim(lab: Lab, node: str, keys: Sequence[StoredKey]) -> list[StoredKey]:
    return lab.stores[node].claim("app2", "app1", [k.key_id for k in keys])


def test_keys_relayed_over_three_kms_are_identical_at_both_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    materials: list[bytes] = []

    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2", "qnode3"]) as lab:
            lab.auto_install(["qnode1", "qnode2", "qnode3"])
            await _links_ready(lab)
            supplier = lab.kms["qnode1"].supplier
            keys = await supplier.enc_keys("app1", ["app2"], "qnode3", 2, 256)
            assert len(keys) == 2 and len(lab.agents["qnode1"].registrations) == 1
            far = _claim(lab, "qnode3", keys)
            assert [k.material for k in far] == [k.material for k in keys]
            assert len(lab.stores["qnode2"]) == 0  # the trusted node keeps nothing
            # Three more relayed ahead, then served from that buffer without registering again.
            await supplier.wait_refills()
            assert supplier.ready_count("app1", "app2") == 3
            again = await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            assert supplier.ready_count("app1", "app2") in (2, 3)
            assert [k.material for k in _claim(lab, "qnode3", again)] == [again[0].material]
            assert len(lab.agents["qnode1"].registrations) == 1
            with pytest.raises(KeyClaimError, match="unknown key_ID"):  # once only
                _claim(lab, "qnode3", again)
            materials.extend(k.material for k in [*keys, *again])
            # Relayed now or relayed ahead: minted in one place, UUIDv7 key_IDs (RFC 9562).
            assert {uuid.UUID(k.key_id).version for k in [*keys, *again]} == {7}

    asyncio.run(run())
    events = read_events(tmp_path)
    names = {e.event for e in events}
    assert {
        "association.requested",
        "association.admitted",
        "relay.link_key",
        "relay.hop.received",
        "relay.stored",
        "relay.done",
        "relay.served",
    } <= names
    served = [e.fields["from_buffer"] for e in events if e.event == "relay.served"]
    assert served == [False, True]
    hops = [e for e in events if e.event == "relay.link_key"]
    assert {e.source for e in hops} == {"km:qnode1", "km:qnode2"}
    traces = "".join(p.read_text() for p in tmp_path.glob("trace-*.jsonl")) + caplog.text
    for material in materials:
        assert material.hex() not in traces and material.hex().upper() not in traces


def test_one_time_pad_over_two_kms_and_a_given_multicast_key(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2"]) as lab:
            lab.auto_install(["qnode1", "qnode2"], mode="otp", buffer=0)
            await _links_ready(lab)
            supplier = lab.kms["qnode1"].supplier
            keys = await supplier.enc_keys("app1", ["app2"], "qnode2", 1, 512)
            assert [k.material for k in _claim(lab, "qnode2", keys)] == [keys[0].material]
            given = supplier.mint.keys("app1", ["app2"], 2, 256)
            assert await supplier.enc_keys("app1", ["app2"], "qnode2", 2, 256, keys=given) == given
            assert [k.material for k in _claim(lab, "qnode2", given)] == [k.material for k in given]
            assert supplier.ready_count("app1", "app2") == 0  # buffer 0: nothing ahead

    asyncio.run(run())


def test_a_hop_without_link_key_fails_and_nothing_is_stored(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2", "qnode3"]) as lab:
            for a, b in (("qnode2", "qnode3"), ("qnode3", "qnode2")):
                lab.agents[a].stream(b).generated = 0  # the module has produced nothing yet
            lab.auto_install(["qnode1", "qnode2", "qnode3"])
            pool = lab.kms["qnode1"].pools.for_peer("qnode2")
            await wait_until(lambda: pool.ready_for_sending() >= 4)
            with pytest.raises(SupplyError) as info:
                await lab.kms["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            assert info.value.status_code == 503
            # The module of qnode2–qnode3 has produced nothing: those KMs cannot even agree
            # where the stream starts.
            assert info.value.message.startswith("hop qnode2→qnode3: no link key within 0.3 s")
            assert len(lab.stores["qnode3"]) == 0
            assert lab.kms["qnode1"].supplier.ready_count("app1", "app2") == 0

    asyncio.run(run())


def test_a_node_without_forwarding_entry_refuses(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2", "qnode3"]) as lab:
            lab.auto_install(["qnode1", "qnode2", "qnode3"], skip_nodes=["qnode2"])
            await _links_ready(lab)
            with pytest.raises(SupplyError, match="hop qnode1→qnode2: no forwarding entry"):
                await lab.kms["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            assert len(lab.stores["qnode3"]) == 0

    asyncio.run(run())


def test_a_forwarding_entry_that_arrives_late_is_waited_for(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2", "qnode3"]) as lab:
            path = ["qnode1", "qnode2", "qnode3"]
            loop = asyncio.get_running_loop()

            def on_register(request: nl.AppRegistration) -> None:
                # qnode2's commit reaches its KM after the source already relays.
                intent = install_path(lab.agents, path, skip_nodes=["qnode2"], buffer=0)
                loop.call_later(
                    0.05,
                    lambda: install_path(
                        lab.agents, path, skip_nodes=["qnode1", "qnode3"], buffer=0, intent=intent
                    ),
                )

            lab.agents["qnode1"].on_register = on_register
            await _links_ready(lab)
            keys = await lab.kms["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            assert [k.material for k in _claim(lab, "qnode3", keys)] == [keys[0].material]

    asyncio.run(run())


def test_rejection_and_unreachable_km_give_503(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2", "qnode3"]) as lab:
            await _links_ready(lab)
            lab.agents["qnode1"].on_register = lambda request: reject(
                lab.agents["qnode1"], "qnode3", "no free key rate on qnode2–qnode3"
            )
            with pytest.raises(SupplyError, match="rejected: no free key rate") as info:
                await lab.kms["qnode1"].supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            assert info.value.status_code == 503
            # A second association (another slave) whose last KM is down.
            lab.auto_install(["qnode1", "qnode2", "qnode3"])
            await lab.kms["qnode3"].stop()
            with pytest.raises(SupplyError, match="hop qnode2→qnode3: key manager unreachable"):
                await lab.kms["qnode1"].supplier.enc_keys("app1", ["app3"], "qnode3", 1, 256)

    asyncio.run(run())


class _Tap:
    """Stands in for KM 1's relay client: records and optionally corrupts outgoing hops."""

    def __init__(self, inner: RelayClient, corrupt: bool) -> None:
        self.inner = inner
        self.corrupt = corrupt
        self.sent: list[pb.RelayHop] = []

    async def forward(
        self, peer: str, hop: pb.RelayHop, timeout: float, where: str, connect_timeout: float
    ) -> pb.RelayAck:
        copy = pb.RelayHop()
        copy.CopyFrom(hop)
        self.sent.append(copy)
        if self.corrupt:
            sealed = bytearray(hop.sealed)
            sealed[-1] ^= 0x01
            hop.sealed = bytes(sealed)
        return await self.inner.forward(peer, hop, timeout, where, connect_timeout)


def test_tampering_replay_and_impersonation_are_refused(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2", "qnode3"]) as lab:
            lab.auto_install(["qnode1", "qnode2", "qnode3"], buffer=0)
            await _links_ready(lab)
            forwarder = lab.kms["qnode1"].forwarder
            tap = _Tap(forwarder.client, corrupt=True)
            forwarder.client = tap  # type: ignore[assignment]
            supplier = lab.kms["qnode1"].supplier
            with pytest.raises(SupplyError, match="hop qnode1→qnode2: authentication failed"):
                await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            assert len(lab.stores["qnode3"]) == 0
            tap.corrupt = False
            keys = await supplier.enc_keys("app1", ["app2"], "qnode3", 1, 256)
            replay = tap.sent[-1]
            with pytest.raises(RelayFailure, match="already used or skipped") as info:
                await tap.inner.forward("qnode2", replay, 2.0, "test")
            # To the sender this looks like a receiver that lost its keys: it may drop its own
            # keys below the receiver's lowest matchable index, none of which qnode1 holds.
            assert info.value.kind is FailureKind.LINK_KEYS_GONE
            pool = lab.kms["qnode1"].pools.for_peer("qnode2")
            held = pool.ready_for_sending()
            assert info.value.frontier is not None
            assert pool.discard_own_below(info.value.frontier) == 0
            assert pool.ready_for_sending() == held
            # qnode3's certificate cannot speak for qnode1.
            impostor = relay_client(km_config_of(lab.plan, "qnode3"))
            try:
                with pytest.raises(RelayFailure, match="may not send as qnode1") as info:
                    await impostor.forward("qnode2", replay, 2.0, "test")
                assert info.value.kind is FailureKind.REFUSED
            finally:
                await impostor.close()
            assert [k.material for k in _claim(lab, "qnode3", keys)] == [keys[0].material]

    asyncio.run(run())


def test_the_relay_port_requires_a_client_certificate(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2"]) as lab:
            ca = Path(lab.plan.credentials.ca_cert).read_bytes()
            channel = grpc.aio.secure_channel(
                lab.plan.node("qnode2").km_relay_address,
                grpc.ssl_channel_credentials(root_certificates=ca),
            )
            try:
                call = channel.unary_unary(
                    "/qkdsdn.relay.Relay/Forward",
                    request_serializer=pb.RelayHop.SerializeToString,
                    response_deserializer=pb.RelayAck.FromString,
                )
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(pb.RelayHop(), timeout=2.0)
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            finally:
                await channel.close(None)

    asyncio.run(run())


def test_a_restarted_km_costs_one_retry_not_a_failure(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2"]) as lab:
            lab.auto_install(["qnode1", "qnode2"], buffer=0)
            await _links_ready(lab)
            supplier = lab.kms["qnode1"].supplier
            await supplier.enc_keys("app1", ["app2"], "qnode2", 1, 256)
            # qnode2's KM restarts: its module handed every fetched index to the old process.
            await lab.kms["qnode2"].stop()
            fresh = RelayComponent(
                km_config_of(lab.plan, "qnode2"), lab.stores["qnode2"], timeouts=FAST
            )
            lab.kms["qnode2"] = fresh
            await fresh.start()
            await wait_until(lambda: fresh.pools.for_peer("qnode1").level_bits > 0)
            await wait_until(lambda: fresh.associations.view.revision >= 0, what="config")
            # No waiting for the start-up resynchronisation: if qnode1 sends first with keys
            # the fresh KM cannot match, the hop resynchronises and is retried once.
            keys = await supplier.enc_keys("app1", ["app2"], "qnode2", 1, 256)
            assert [k.material for k in _claim(lab, "qnode2", keys)] == [keys[0].material]
            # The fresh KM's start-up exchange completes too: it may send to qnode1.
            await wait_until(lambda: fresh.pools.for_peer("qnode1").synced, what="resync")

    asyncio.run(run())


def test_an_oversized_hop_is_refused_before_any_work(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_lab(tmp_path, ["qnode1", "qnode2"]) as lab:
            lab.auto_install(["qnode1", "qnode2"], buffer=0)
            await _links_ready(lab)
            plan = lab.plan
            # An index of qnode1's parity that qnode2 has not fetched, used or skipped yet.
            at_qnode2 = lab.kms["qnode2"].pools.for_peer("qnode1").position
            sends_even = lab.kms["qnode1"].pools.for_peer("qnode2").link.sends_even
            first = at_qnode2.even if sends_even else at_qnode2.odd
            hop = pb.RelayHop(
                virt_link_id="v",
                hop=1,
                sender=plan.node("qnode1").qkdn_id,
                receiver=plan.node("qnode2").qkdn_id,
                mode="aes-gcm",
                link_key_indices=[first],
                sealed=b"x",
                key_ids=[f"k{i}" for i in range(plan.settings.max_key_per_request * 20)],
                size_bits=256,
                master="app1",
                slaves=["app2"],
            )
            with pytest.raises(RelayFailure, match="exceed the limits") as info:
                await lab.kms["qnode1"].forwarder.client.forward("qnode2", hop, 2.0, "t", 1.0)
            assert info.value.kind is FailureKind.BAD_REQUEST
            del hop.key_ids[:]
            hop.key_ids.append("Not-A-UUID")
            with pytest.raises(RelayFailure, match="not a lower-case UUID"):
                await lab.kms["qnode1"].forwarder.client.forward("qnode2", hop, 2.0, "t", 1.0)
            # The link key the hop named was not consumed.
            assert (
                len(await lab.kms["qnode2"].pools.for_peer("qnode1").take_index(first, 1.0)) == 32
            )

    asyncio.run(run())
