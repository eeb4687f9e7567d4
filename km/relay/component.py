"""Composition of the relay side of one key manager (what `km/main.py` starts and stops).

    relay = RelayComponent(plan, node, store)
    await relay.start()
    supply = KeySupply(..., remote=relay.supplier)
    ...
    await relay.stop()

It owns the link-key pools (fed by the node's agent over ETSI 004), the NodeLink client
(application registration, running configuration), the association view, the relay gRPC
server on `km_relay_port` (mutual TLS) and the client channels to the other KMs.
"""

from __future__ import annotations

import contextlib

import grpc

from common.tracing import Tracer
from km.associations import AppRequest, Associations, NodeView
from km.key_store import KeyStore
from km.link_pools import LinkKeyPools
from km.node_link.client import NodeLinkClient
from km.relay.client import RelayClient
from km.relay.forwarder import DEFAULT_TIMEOUTS, Forwarder, RelayTimeouts
from km.relay.servicer import relay_server
from km.relay.supplier import RelaySupplier
from km.tls import km_tls
from lab.plan import LabPlan


class RelayComponent:
    def __init__(
        self,
        plan: LabPlan,
        node: str,
        store: KeyStore,
        *,
        timeouts: RelayTimeouts = DEFAULT_TIMEOUTS,
        admission_timeout_s: float = 10.0,
        pool_max_bits: int | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.plan = plan
        self.node = node
        qkdn_id = plan.node(node).qkdn_id
        # The lab timeline (QKDSDN_TRACE_FILE) unless the caller brings its own tracer.
        self._own_tracer = Tracer.from_env(f"km:{node}") if tracer is None else None
        self.tracer = tracer or self._own_tracer or Tracer(f"km:{node}", None)
        self.pools = LinkKeyPools(plan, node, max_bits=pool_max_bits)
        self.node_link = NodeLinkClient(
            plan.node(node).agent_grpc_address, node, self._on_view, tls=km_tls(plan, node)
        )
        self.associations = Associations(qkdn_id, self._register)
        self._client = RelayClient(plan, node)
        self.forwarder = Forwarder(
            plan,
            node,
            store,
            self.pools,
            self.associations,
            self._client,
            timeouts=timeouts,
            tracer=self.tracer,
        )
        self.supplier = RelaySupplier(
            plan, node, store, self.associations, self.forwarder,
            admission_timeout_s=admission_timeout_s, tracer=self.tracer,
        )  # fmt: skip
        self._server: grpc.aio.Server | None = None

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

    async def start(self) -> None:
        if self._server is not None:
            return
        server, _ = relay_server(self.plan, self.node, self.forwarder)
        await server.start()
        self._server = server
        await self.pools.start()
        await self.node_link.start()
        self._client.connect_ahead(pool.link.peer_node for pool in self.pools.pools)

    async def stop(self) -> None:
        await self.supplier.close()
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None
        await self.node_link.stop()
        await self.pools.stop()
        with contextlib.suppress(Exception):
            await self._client.close()
        if self._own_tracer is not None:
            self._own_tracer.close()
