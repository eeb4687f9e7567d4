"""Outgoing post-quantum exchanges: one mutual-TLS gRPC channel per end key manager, lazily."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from common.config import TlsFiles
from common.protos import pqc_pb2 as pb
from common.protos import pqc_pb2_grpc as pb_grpc
from km.link_pools import FAST_RECONNECT
from km.relay.client import tls_material

_STUB: Callable[[grpc.aio.Channel], Any] = pb_grpc.PqcExchangeStub

# Codes with which the peer refused before storing anything: QKD keys the exchange was to
# combine are still intact at the peer, so hybrid-either may deliver them alone.
REFUSED_BEFORE_STORING = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class PeerFailure(Exception):
    """The exchange with a peer KM did not complete. `untouched`: the peer changed nothing."""

    def __init__(self, message: str, untouched: bool) -> None:
        super().__init__(message)
        self.message = message
        self.untouched = untouched


class PqcClient:
    """Channels to end key managers by node name (`addresses`: node -> relay host:port)."""

    def __init__(
        self, addresses: Mapping[str, str], tls: TlsFiles, connect_timeout_s: float = 1.0
    ) -> None:
        self._addresses = dict(addresses)
        ca, cert, key = tls_material(tls)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self._stubs: dict[str, tuple[grpc.aio.Channel, Any]] = {}
        self.connect_timeout_s = connect_timeout_s

    def knows(self, node: str) -> bool:
        return node in self._addresses

    def _channel(self, node: str) -> tuple[grpc.aio.Channel, Any]:
        if node not in self._stubs:
            address = self._addresses.get(node)
            if address is None:
                raise PeerFailure(f"no address of the key manager of {node}", untouched=True)
            channel = grpc.aio.secure_channel(address, self._credentials, options=FAST_RECONNECT)
            self._stubs[node] = (channel, _STUB(channel))
        return self._stubs[node]

    async def establish(self, node: str, offer: pb.KemOffer, timeout: float) -> pb.KemAnswer:
        channel, stub = self._channel(node)
        if channel.get_state(try_to_connect=True) is not grpc.ChannelConnectivity.READY:
            wait = min(self.connect_timeout_s, timeout)
            try:
                async with asyncio.timeout(wait):
                    await channel.channel_ready()
            except TimeoutError:
                raise PeerFailure(
                    f"key manager of {node} unreachable (no connection within {wait:.3g} s)",
                    untouched=True,
                ) from None
        try:
            answer: pb.KemAnswer = await stub.Establish(offer, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise PeerFailure(
                f"key manager of {node}: {exc.code().name} {exc.details() or ''}".rstrip(),
                untouched=exc.code() in REFUSED_BEFORE_STORING,
            ) from None
        return answer

    async def close(self) -> None:
        for channel, _ in self._stubs.values():
            await channel.close(None)
        self._stubs.clear()
