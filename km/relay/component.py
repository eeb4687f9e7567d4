"""Composition of the relay side of one key manager (what `km/main.py` starts and stops).

    relay = RelayComponent(config, store)
    await relay.start()
    supply = KeySupply(..., remote=relay.supplier)
    ...
    await relay.stop()

It owns the link-key pools (fed by the node's agent over ETSI 004), the NodeLink client
(application registration, running configuration), the association view, the relay gRPC
server on `listen.relay` (mutual TLS) and the client channels to the other KMs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import grpc

from common.roles import TlsMaterial
from common.tracing import Tracer
from km.associations import AppRequest, Associations, NodeView
from km.config import KmConfig
from km.key_store import KeyStore
from km.link_pools import LinkKeyPools
from km.node_link.client import NodeLinkClient
from km.relay.client import RelayClient
from km.relay.forwarder import DEFAULT_TIMEOUTS, Forwarder, RelayTimeouts
from km.relay.relayed_keys import RelayedKeys
from km.relay.servicer import relay_server


class RelayComponent:
    def __init__(
        self,
        config: KmConfig,
        store: KeyStore,
        *,
        timeouts: RelayTimeouts = DEFAULT_TIMEOUTS,
        admission_timeout_s: float = 10.0,
        pool_max_bits: int | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.config = config
        self.node = node = config.node
        qkdn_id = config.qkdn_id
        # The lab timeline (QKDSDN_TRACE_FILE) unless the caller brings its own tracer.
        self._own_tracer = Tracer.from_env(f"km:{node}") if tracer is None else None
        self.tracer = tracer or self._own_tracer or Tracer(f"km:{node}", None)
        # A pool sends only once its link is resynchronised with the peer KM (LinkSync).
        self.pools = LinkKeyPools(config, max_bits=pool_max_bits, sync_before_sending=True)
        self.node_link = NodeLinkClient(
            str(config.agent), node, self._on_view, tls=TlsMaterial.of(config.tls)
        )
        self.associations = Associations(qkdn_id, self._register)
        # A peer's relay address: from the file, else as the controller wrote it on this
        # node's VIRT links (learned through the association view).
        self._client = RelayClient(config.configured_relays(), config.tls, self._learned_relay)
        self.forwarder = Forwarder(
            config,
            store,
            self.pools,
            self.associations,
            self._client,
            timeouts=timeouts,
            tracer=self.tracer,
        )
        self.supplier = RelayedKeys(
            config, store, self.associations, self.forwarder,
            admission_timeout_s=admission_timeout_s, tracer=self.tracer,
        )  # fmt: skip
        self._server: grpc.aio.Server | None = None
        self._services: list[Callable[[grpc.aio.Server], None]] = []

    def on_server(self, add: Callable[[grpc.aio.Server], None]) -> None:
        """Adds another KM-to-KM service to the relay's gRPC server (before `start`)."""
        self._services.append(add)

    async def _register(self, request: AppRequest) -> None:
        self.tracer.emit(
            "association.requested",
            master=request.master,
            slaves=list(request.slaves),
            remote_qkdn_id=request.remote_qkdn_id,
        )
        await self.node_link.register(request)

    def _on_view(self, view: NodeView) -> None:
        self.associations.update(view)
        if self._server is not None and view.relay_addresses:
            self._client.connect_ahead(pool.link.peer_node for pool in self.pools.pools)

    def _learned_relay(self, peer: str) -> str | None:
        try:
            qkdn_id = self.config.qkdn_id_of(peer)
        except KeyError:
            return None
        return self.associations.view.relay_addresses.get(qkdn_id)

    async def start(self) -> None:
        if self._server is not None:
            return
        server, port = relay_server(self.config.listen.relay, self.config.tls, self.forwarder)
        for add in self._services:
            add(server)
        await server.start()
        self._server = server
        self.relay_port = port
        await self.pools.start()
        self.forwarder.link_sync.start()
        await self.node_link.start()
        self._client.connect_ahead(pool.link.peer_node for pool in self.pools.pools)

    async def stop(self) -> None:
        await self.supplier.close()
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
        await self.node_link.stop()
        await self.forwarder.link_sync.stop()
        await self.pools.stop()
        with contextlib.suppress(Exception):
            await self._client.close()
        if self._own_tracer is not None:
            self._own_tracer.close()
