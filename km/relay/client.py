"""Outgoing relay calls: one mutual-TLS gRPC channel per peer key manager, opened lazily."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import grpc

from common.config import TlsFiles
from common.protos import relay_pb2 as pb
from common.protos import relay_pb2_grpc as pb_grpc
from km.link_pools import FAST_RECONNECT
from km.relay.errors import FailureKind, RelayFailure

DEFAULT_CONNECT_TIMEOUT_S = 1.0

# The generated stub is untyped; calling it through a typed alias keeps strict mypy quiet.
_RELAY_STUB: Callable[[grpc.aio.Channel], Any] = pb_grpc.RelayStub


def tls_material(tls: TlsFiles) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, this KM's certificate, its private key) as PEM bytes."""
    return tls.ca.read_bytes(), tls.cert.read_bytes(), tls.key.read_bytes()


class RelayClient:
    """Channels to the neighbour key managers, at the relay addresses of `peers` (name ->
    address, from the KM's file) or else at the one `learned(name)` gives (from the network;
    None: unknown yet). A configured address always wins; a learned one that changes (the
    peer KM moved) replaces the channel at the next call."""

    def __init__(
        self,
        peers: Mapping[str, str],
        tls: TlsFiles,
        learned: Callable[[str], str | None] | None = None,
    ) -> None:
        self._peers = dict(peers)
        self._learned = learned
        ca, cert, key = tls_material(tls)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self._stubs: dict[str, tuple[str, grpc.aio.Channel, Any]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def address_of(self, peer: str) -> str | None:
        """Where `peer`'s relay is reached now: configured, else learned, else None."""
        configured = self._peers.get(peer)
        if configured is not None or self._learned is None:
            return configured
        return self._learned(peer)

    def _channel(self, peer: str) -> tuple[grpc.aio.Channel, Any]:
        address = self.address_of(peer)
        if address is None:
            raise RelayFailure(
                FailureKind.UNAVAILABLE, f"{peer}: no relay address known (not a neighbour yet)"
            )
        known = self._stubs.get(peer)
        if known is not None and known[0] == address:
            return known[1], known[2]
        if known is not None:  # the peer moved: the old channel goes
            task = asyncio.get_running_loop().create_task(known[1].close(None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        channel = grpc.aio.secure_channel(address, self._credentials, options=FAST_RECONNECT)
        self._stubs[peer] = (address, channel, _RELAY_STUB(channel))
        return channel, self._stubs[peer][2]

    def connect_ahead(self, peers: Iterable[str]) -> None:
        """Starts connecting (TCP + TLS handshake) to these KMs now, so that the first relay
        does not pay for it; a KM that is not up yet is retried by gRPC (backoff <= 2 s).
        Peers whose address is not known yet are left for later."""
        for peer in peers:
            if self.address_of(peer) is not None:
                self._channel(peer)[0].get_state(try_to_connect=True)

    async def forward(
        self,
        peer: str,
        hop: pb.RelayHop,
        timeout: float,
        where: str,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> pb.RelayAck:
        """Sends one hop to `peer`'s KM and waits for the ack from the end of the path.

        A channel that is not connected (peer starting, restarted, or down) gets up to
        `connect_timeout` to connect before the KM is reported unreachable.
        """
        stub = await self._connected(peer, min(connect_timeout, timeout), where)
        try:
            ack: pb.RelayAck = await stub.Forward(hop, timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            trailing: Any = exc.trailing_metadata() or ()  # aio.Metadata: (key, value) pairs
            metadata = [(str(key), value) for key, value in trailing]
            raise RelayFailure.from_grpc(exc.code(), exc.details() or "", where, metadata) from None
        return ack

    async def void(
        self,
        peer: str,
        msg: pb.RelayVoid,
        timeout: float,
        where: str,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> pb.RelayVoidAck:
        """Sends a void to `peer`'s KM; returns the answer from the end of the path."""
        stub = await self._connected(peer, min(connect_timeout, timeout), where)
        try:
            ack: pb.RelayVoidAck = await stub.Void(msg, timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            raise RelayFailure.from_grpc(exc.code(), exc.details() or "", where) from None
        return ack

    async def _connected(self, peer: str, wait: float, where: str) -> pb_grpc.RelayStub:
        """`peer`'s stub once its channel is connected: a channel that is not (peer starting,
        restarted, or down) gets `wait` seconds before the KM is reported unreachable."""
        channel, stub = self._channel(peer)
        if channel.get_state(try_to_connect=True) is not grpc.ChannelConnectivity.READY:
            try:
                async with asyncio.timeout(wait):  # keeps a cancellation (gh-86296)
                    await channel.channel_ready()
            except TimeoutError:
                raise RelayFailure(
                    FailureKind.UNAVAILABLE,
                    f"{where}: key manager unreachable (no connection within {wait:.3g} s)",
                ) from None
        return stub

    async def sync_link(
        self, peer: str, position: pb.LinkPosition, timeout: float, where: str
    ) -> pb.LinkPosition:
        """SyncLink with `peer`'s KM (waits for the connection within `timeout`)."""
        _, stub = self._channel(peer)
        try:
            answer: pb.LinkPosition = await stub.SyncLink(
                position, timeout=timeout, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            raise RelayFailure.from_grpc(exc.code(), exc.details() or "", where) from None
        return answer

    async def close(self) -> None:
        for _, channel, _ in self._stubs.values():
            await channel.close(None)
        self._stubs.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
