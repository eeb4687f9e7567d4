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
    """Channels to the neighbour key managers, at the relay addresses of `peers` (name -> address)."""

    def __init__(self, peers: Mapping[str, str], tls: TlsFiles) -> None:
        self._peers = dict(peers)
        ca, cert, key = tls_material(tls)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self._stubs: dict[str, tuple[grpc.aio.Channel, Any]] = {}

    def _channel(self, peer: str) -> tuple[grpc.aio.Channel, Any]:
        if peer not in self._stubs:
            address = self._peers.get(peer)
            if address is None:
                raise RelayFailure(
                    FailureKind.UNAVAILABLE, f"{peer} is not a neighbour: no relay address known"
                )
            channel = grpc.aio.secure_channel(address, self._credentials, options=FAST_RECONNECT)
            self._stubs[peer] = (channel, _RELAY_STUB(channel))
        return self._stubs[peer]

    def connect_ahead(self, peers: Iterable[str]) -> None:
        """Starts connecting (TCP + TLS handshake) to these KMs now, so that the first relay
        does not pay for it; a KM that is not up yet is retried by gRPC (backoff <= 2 s)."""
        for peer in peers:
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
        channel, stub = self._channel(peer)
        if channel.get_state(try_to_connect=True) is not grpc.ChannelConnectivity.READY:
            wait = min(connect_timeout, timeout)
            try:
                async with asyncio.timeout(wait):  # keeps a cancellation (gh-86296)
                    await channel.channel_ready()
            except TimeoutError:
                raise RelayFailure(
                    FailureKind.UNAVAILABLE,
                    f"{where}: key manager unreachable (no connection within {wait:.3g} s)",
                ) from None
        try:
            ack: pb.RelayAck = await stub.Forward(hop, timeout=timeout, wait_for_ready=False)
        except grpc.aio.AioRpcError as exc:
            trailing: Any = exc.trailing_metadata() or ()  # aio.Metadata: (key, value) pairs
            metadata = [(str(key), value) for key, value in trailing]
            raise RelayFailure.from_grpc(exc.code(), exc.details() or "", where, metadata) from None
        return ack

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
        for channel, _ in self._stubs.values():
            await channel.close(None)
        self._stubs.clear()
