"""Outgoing relay calls: one mutual-TLS gRPC channel per peer key manager, opened lazily."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from km.link_pools import FAST_RECONNECT
from km.relay import relay_pb2 as pb
from km.relay import relay_pb2_grpc as pb_grpc
from km.relay.errors import RelayFailure
from lab.plan import LabPlan

# The generated stub is untyped; calling it through a typed alias keeps strict mypy quiet.
_RELAY_STUB: Callable[[grpc.aio.Channel], Any] = pb_grpc.RelayStub


def tls_material(plan: LabPlan, node: str) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, this KM's certificate, its private key) as PEM bytes."""
    try:
        cert, key = plan.node_certs[node]
    except KeyError:
        raise ValueError(f"the lab plan has no certificate for key manager {node!r}") from None
    return (
        Path(plan.credentials.ca_cert).read_bytes(),
        Path(cert).read_bytes(),
        Path(key).read_bytes(),
    )


class RelayClient:
    def __init__(self, plan: LabPlan, node: str) -> None:
        self._plan = plan
        ca, cert, key = tls_material(plan, node)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        self._stubs: dict[str, tuple[grpc.aio.Channel, Any]] = {}

    def _stub(self, peer: str) -> Any:
        if peer not in self._stubs:
            channel = grpc.aio.secure_channel(
                self._plan.node(peer).km_relay_address, self._credentials, options=FAST_RECONNECT
            )
            self._stubs[peer] = (channel, _RELAY_STUB(channel))
        return self._stubs[peer][1]

    async def forward(self, peer: str, hop: pb.RelayHop, timeout: float, where: str) -> pb.RelayAck:
        """Sends one hop to `peer`'s KM and waits for the ack from the end of the path."""
        try:
            ack: pb.RelayAck = await self._stub(peer).Forward(
                hop, timeout=timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as exc:
            trailing: Any = exc.trailing_metadata() or ()  # aio.Metadata: (key, value) pairs
            metadata = [(str(key), value) for key, value in trailing]
            raise RelayFailure.from_grpc(exc.code(), exc.details() or "", where, metadata) from None
        return ack

    async def close(self) -> None:
        for channel, _ in self._stubs.values():
            await channel.close(None)
        self._stubs.clear()
