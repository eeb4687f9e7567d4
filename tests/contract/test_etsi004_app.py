"""ETSI GS QKD 004 key streams for applications, over real gRPC with mutual TLS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from common.config import Address
from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from km.access import AccessControl, AccessPolicy
from km.etsi004.app_service import KeyStreamService, Status, StreamLimits, start_app_server
from km.key_store import KeyStore
from km.supply import KeySupply
from lab.pki import LabPki
from tests.harness.etsi014 import NODES, SAE_NODES, TwoNodeRelay, make_pki


@dataclass
class Km:
    node: str
    service: KeyStreamService
    port: int


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@asynccontextmanager
async def two_kms(
    tmp_path: Path, pki: LabPki, limits: StreamLimits | None = None
) -> AsyncIterator[dict[str, Km]]:
    """KMs of n1 and n2 serving ETSI 004; cross-node keys go through the relay double."""
    stores = {n: KeyStore(tmp_path / n / "keys.sqlite") for n in NODES}
    access = AccessControl(AccessPolicy.allow_all(SAE_NODES))
    kms: dict[str, Km] = {}
    servers = []
    for node in ("n1", "n2"):
        relay = TwoNodeRelay({n: s for n, s in stores.items() if n != node})
        supply = KeySupply(node, SAE_NODES, stores[node], relay)
        service = KeyStreamService(supply, access, limits)
        paths = pki.kms[node]
        server, port = await start_app_server(
            service, paths.cert, paths.key, pki.ca.cert, Address("127.0.0.1", 0)
        )
        servers.append(server)
        kms[node] = Km(node, service, port)
    try:
        yield kms
    finally:
        for server in servers:
            await server.stop(grace=None)
        for store in stores.values():
            store.close()


def channel(pki: LabPki, port: int, sae: str | None) -> grpc.aio.Channel:
    root = pki.ca.cert.read_bytes()
    if sae is None:
        credentials = grpc.ssl_channel_credentials(root)
    else:
        paths = pki.saes[sae]
        credentials = grpc.ssl_channel_credentials(
            root, paths.key.read_bytes(), paths.cert.read_bytes()
        )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)


def qos(chunk: int = 32, **fields: object) -> pb.QoS:
    return pb.QoS(key_chunk_size=chunk, **fields)  # type: ignore[arg-type]


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=60))


def test_same_node_stream_gives_both_ends_the_same_keys(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki) as kms:
            port = kms["n1"].port
            async with channel(pki, port, "a") as ca, channel(pki, port, "b") as cb:
                a, b = pb_grpc.KeyDeliveryStub(ca), pb_grpc.KeyDeliveryStub(cb)
                opened = await a.OpenConnect(
                    pb.OpenConnectRequest(source="sae:a", destination="sae:b", qos=qos())
                )
                assert opened.status == Status.PEER_NOT_CONNECTED and opened.key_stream_id
                sid = opened.key_stream_id
                early = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                assert early.status == Status.GET_KEY_PEER_NOT_CONNECTED
                joined = await b.OpenConnect(
                    pb.OpenConnectRequest(source="b", destination="a", qos=qos(), key_stream_id=sid)
                )
                assert joined.status == Status.SUCCESSFUL and joined.key_stream_id == sid
                k0a = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                assert (k0a.status, k0a.index, len(k0a.key_buffer)) == (0, 0, 32)
                k1b = await b.GetKey(pb.GetKeyRequest(key_stream_id=sid, index=1))
                k0b = await b.GetKey(pb.GetKeyRequest(key_stream_id=sid, index=0))
                k1a = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                assert k0b.key_buffer == k0a.key_buffer and k1a.key_buffer == k1b.key_buffer
                assert k1a.index == 1 and k0a.key_buffer != k1a.key_buffer
                again = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid, index=0))
                assert again.status == Status.GET_KEY_INSUFFICIENT_KEY
                assert kms["n1"].service.streams[sid].pending == {}

                closed = await a.Close(pb.CloseRequest(key_stream_id=sid))
                assert closed.status == Status.SUCCESSFUL
                after = await b.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                assert after.status == Status.GET_KEY_PEER_NOT_CONNECTED
                assert (await b.Close(pb.CloseRequest(key_stream_id=sid))).status == 0
                gone = await b.GetKey(pb.GetKeyRequest(key_stream_id=sid))
                assert gone.status == Status.NO_QKD_CONNECTION
                assert sid not in kms["n1"].service.streams

    run(body)


def test_open_in_use_and_qos_counter_proposals(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki) as kms:
            port = kms["n1"].port
            async with (
                channel(pki, port, "a") as ca,
                channel(pki, port, "b") as cb,
                channel(pki, port, "c") as cc,
            ):
                a, b, c = (pb_grpc.KeyDeliveryStub(x) for x in (ca, cb, cc))
                small = await a.OpenConnect(
                    pb.OpenConnectRequest(source="a", destination="b", qos=qos(chunk=4))
                )
                assert small.status == Status.OPEN_QOS_NOT_MET
                assert small.qos.key_chunk_size == 8 and not small.key_stream_id
                opened = await a.OpenConnect(
                    pb.OpenConnectRequest(
                        source="a", destination="b", qos=qos(chunk=16), key_stream_id="s-1"
                    )
                )
                assert (opened.status, opened.key_stream_id) == (1, "s-1")
                twice = await a.OpenConnect(
                    pb.OpenConnectRequest(
                        source="a", destination="b", qos=qos(chunk=16), key_stream_id="s-1"
                    )
                )
                assert twice.status == Status.OPEN_KEY_STREAM_IN_USE
                intruder = await c.OpenConnect(
                    pb.OpenConnectRequest(
                        source="c", destination="a", qos=qos(chunk=16), key_stream_id="s-1"
                    )
                )
                assert intruder.status == Status.OPEN_KEY_STREAM_IN_USE
                mismatch = await b.OpenConnect(
                    pb.OpenConnectRequest(
                        source="b", destination="a", qos=qos(chunk=32), key_stream_id="s-1"
                    )
                )
                assert mismatch.status == Status.OPEN_QOS_NOT_MET
                assert mismatch.qos.key_chunk_size == 16

    run(body)


def test_metadata_buffer_too_small(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki) as kms:
            port = kms["n1"].port
            async with channel(pki, port, "a") as ca, channel(pki, port, "b") as cb:
                a, b = pb_grpc.KeyDeliveryStub(ca), pb_grpc.KeyDeliveryStub(cb)
                wanted = qos(metadata_mimetype="application/json")
                sid = (
                    await a.OpenConnect(
                        pb.OpenConnectRequest(source="a", destination="b", qos=wanted)
                    )
                ).key_stream_id
                await b.OpenConnect(
                    pb.OpenConnectRequest(
                        source="b", destination="a", qos=wanted, key_stream_id=sid
                    )
                )
                small = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid, metadata_size=4))
                assert small.status == Status.GET_KEY_METADATA_TOO_SMALL
                ok = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid, metadata_size=1024))
                assert ok.status == Status.SUCCESSFUL
                assert json.loads(ok.metadata) == {"key_stream_id": sid, "index": 0}

    run(body)


def test_window_bounds_keys_held_for_a_slow_peer(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki, StreamLimits(window=4)) as kms:
            port = kms["n1"].port
            async with channel(pki, port, "a") as ca, channel(pki, port, "b") as cb:
                a, b = pb_grpc.KeyDeliveryStub(ca), pb_grpc.KeyDeliveryStub(cb)
                sid = (
                    await a.OpenConnect(pb.OpenConnectRequest(source="a", destination="b"))
                ).key_stream_id
                await b.OpenConnect(
                    pb.OpenConnectRequest(source="b", destination="a", key_stream_id=sid)
                )
                statuses = [
                    (await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))).status for _ in range(5)
                ]
                assert statuses == [0, 0, 0, 0, Status.GET_KEY_INSUFFICIENT_KEY]
                assert (await b.GetKey(pb.GetKeyRequest(key_stream_id=sid))).status == 0
                assert (await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))).status == 0

    run(body)


def test_identity_is_checked(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki) as kms:
            port = kms["n1"].port
            async with channel(pki, port, "a") as ca:
                a = pb_grpc.KeyDeliveryStub(ca)
                for source, destination, code in [
                    ("b", "c", grpc.StatusCode.PERMISSION_DENIED),
                    ("a", "nobody", grpc.StatusCode.INVALID_ARGUMENT),
                    ("a", "a", grpc.StatusCode.INVALID_ARGUMENT),
                ]:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await a.OpenConnect(
                            pb.OpenConnectRequest(source=source, destination=destination)
                        )
                    assert err.value.code() == code
            async with channel(pki, port, "stranger") as cs:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb_grpc.KeyDeliveryStub(cs).OpenConnect(
                        pb.OpenConnectRequest(source="stranger", destination="a")
                    )
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            async with channel(pki, port, None) as anonymous:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await pb_grpc.KeyDeliveryStub(anonymous).OpenConnect(
                        pb.OpenConnectRequest(source="a", destination="b"), timeout=10
                    )
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    run(body)


def test_stream_across_nodes_goes_through_the_supplier(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            two_kms(tmp_path, pki) as kms,
            channel(pki, kms["n1"].port, "a") as ca,
            channel(pki, kms["n2"].port, "d") as cd,
        ):
            a, d = pb_grpc.KeyDeliveryStub(ca), pb_grpc.KeyDeliveryStub(cd)
            opened = await a.OpenConnect(
                pb.OpenConnectRequest(source="a", destination="d", qos=qos())
            )
            assert opened.status == Status.PEER_NOT_CONNECTED
            sid = opened.key_stream_id
            joined = await d.OpenConnect(
                pb.OpenConnectRequest(
                    source="d", destination="a", qos=qos(timeout=5000), key_stream_id=sid
                )
            )
            assert joined.status == Status.PEER_NOT_CONNECTED
            k0a = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))
            k0d = await d.GetKey(pb.GetKeyRequest(key_stream_id=sid))
            assert k0a.status == k0d.status == 0 and k0a.key_buffer == k0d.key_buffer
            # the slave asks first and waits (QoS timeout) until the master's KM relays
            waiting = asyncio.ensure_future(d.GetKey(pb.GetKeyRequest(key_stream_id=sid)))
            k1a = await a.GetKey(pb.GetKeyRequest(key_stream_id=sid))
            k1d = await waiting
            assert k1d.status == 0 and (k1d.index, k1d.key_buffer) == (1, k1a.key_buffer)
            again = await d.GetKey(pb.GetKeyRequest(key_stream_id=sid, index=1))
            assert again.status == Status.GET_KEY_INSUFFICIENT_KEY

    run(body)


def test_slave_without_timeout_gets_insufficient_key_at_once(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki) as kms, channel(pki, kms["n2"].port, "d") as cd:
            d = pb_grpc.KeyDeliveryStub(cd)
            sid = (
                await d.OpenConnect(pb.OpenConnectRequest(source="d", destination="a"))
            ).key_stream_id
            got = await d.GetKey(pb.GetKeyRequest(key_stream_id=sid))
            assert got.status == Status.GET_KEY_INSUFFICIENT_KEY

    run(body)


def test_concurrent_get_key_never_hands_out_an_index_twice(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            two_kms(tmp_path, pki) as kms,
            channel(pki, kms["n1"].port, "a") as ca,
            channel(pki, kms["n2"].port, "d") as cd,
        ):
            a, d = pb_grpc.KeyDeliveryStub(ca), pb_grpc.KeyDeliveryStub(cd)
            sid = (
                await a.OpenConnect(pb.OpenConnectRequest(source="a", destination="d"))
            ).key_stream_id
            await d.OpenConnect(
                pb.OpenConnectRequest(
                    source="d", destination="a", key_stream_id=sid, qos=qos(timeout=5000)
                )
            )
            got_a = await asyncio.gather(
                *(a.GetKey(pb.GetKeyRequest(key_stream_id=sid)) for _ in range(20))
            )
            got_d = await asyncio.gather(
                *(d.GetKey(pb.GetKeyRequest(key_stream_id=sid)) for _ in range(20))
            )
            assert sorted(r.index for r in got_a) == list(range(20))
            by_index = {r.index: r.key_buffer for r in got_a}
            assert all(r.status == 0 and by_index[r.index] == r.key_buffer for r in got_d)
            assert sorted(r.index for r in got_d) == list(range(20))

    run(body)


def test_slave_waiting_past_its_qos_timeout_gets_status_6(pki: LabPki, tmp_path: Path) -> None:
    async def body() -> None:
        async with two_kms(tmp_path, pki) as kms, channel(pki, kms["n2"].port, "d") as cd:
            d = pb_grpc.KeyDeliveryStub(cd)
            sid = (
                await d.OpenConnect(
                    pb.OpenConnectRequest(source="d", destination="a", qos=qos(timeout=50))
                )
            ).key_stream_id
            got = await d.GetKey(pb.GetKeyRequest(key_stream_id=sid))
            assert (got.status, got.index) == (Status.TIMEOUT, 0)
            again = await d.GetKey(pb.GetKeyRequest(key_stream_id=sid))
            assert again.index == 0  # a failed index is asked for again, not skipped

    run(body)
