"""The `Relay` gRPC service of one key manager: thin adapters over its forwarder (every RPC).

The caller's identity is its TLS client certificate (mutual TLS with the lab CA): it must carry
the role km (`urn:qkdsdn:km:<node>`, common/roles.py), and the forwarder checks that node
against the hop's `sender`. A certificate of another role (an SAE named like a node) is refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc

from common.config import Address, TlsFiles
from common.protos import relay_pb2 as pb
from common.protos import relay_pb2_grpc as pb_grpc
from common.roles import Role, peer_identity
from km.relay.client import tls_material
from km.relay.errors import RelayFailure
from km.relay.forwarder import Forwarder

log = logging.getLogger(__name__)

# Used when the caller set no deadline: every hop must still end.
DEFAULT_DEADLINE_S = 30.0

_ADD_SERVICER: Callable[[Any, grpc.aio.Server], None] = pb_grpc.add_RelayServicer_to_server


async def key_manager_peer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The node whose key manager is calling; any other caller is refused (the call aborts)."""
    caller = peer_identity(context)
    if caller is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED, "relay: the client certificate names no role"
        )
    assert caller is not None
    if caller.role is not Role.KM:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED, f"relay: only key managers may relay, not {caller}"
        )
    return caller.name


class RelayServicer:
    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    async def Forward(
        self, request: pb.RelayHop, context: grpc.aio.ServicerContext[pb.RelayHop, pb.RelayAck]
    ) -> pb.RelayAck:
        sender = await key_manager_peer(context)
        remaining = context.time_remaining()
        deadline = time.monotonic() + (DEFAULT_DEADLINE_S if remaining is None else remaining)
        try:
            return await self.forwarder.receive(request, sender, deadline)
        except RelayFailure as exc:
            log.info("relay refused: %s", exc.message)
            await context.abort(exc.grpc_code, exc.message, exc.trailing_metadata)
            raise  # abort raises; this line is never reached

    async def Void(
        self,
        request: pb.RelayVoid,
        context: grpc.aio.ServicerContext[pb.RelayVoid, pb.RelayVoidAck],
    ) -> pb.RelayVoidAck:
        sender = await key_manager_peer(context)
        remaining = context.time_remaining()
        deadline = time.monotonic() + (DEFAULT_DEADLINE_S if remaining is None else remaining)
        try:
            return await self.forwarder.voids.receive(request, sender, deadline)
        except RelayFailure as exc:
            log.info("void refused: %s", exc.message)
            await context.abort(exc.grpc_code, exc.message)
            raise  # abort raises; this line is never reached

    async def SyncLink(
        self,
        request: pb.LinkPosition,
        context: grpc.aio.ServicerContext[pb.LinkPosition, pb.LinkPosition],
    ) -> pb.LinkPosition:
        try:
            peer = await key_manager_peer(context)  # role km, or the call is aborted
            return await self.forwarder.link_sync.answer(request, peer)
        except RelayFailure as exc:
            log.info("resync refused: %s", exc.message)
            await context.abort(exc.grpc_code, exc.message)
            raise  # abort raises; this line is never reached


def relay_server(
    address: Address, tls: TlsFiles, forwarder: Forwarder
) -> tuple[grpc.aio.Server, int]:
    """A gRPC server with the Relay service on `address`, mutual TLS required.

    Returns the server (not started) and the bound port.
    """
    ca, cert, key = tls_material(tls)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # a taken port fails loudly
    _ADD_SERVICER(RelayServicer(forwarder), server)
    credentials = grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port(str(address), credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address} for the relay of {forwarder.node}")
    return server, port
