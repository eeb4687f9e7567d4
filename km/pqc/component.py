"""Composition of the key modes of one key manager beside its relay (what `km/main.py` builds).

    relay = RelayComponent(config, store)
    modes = KeyModes(config, store, relay, access)
    supply = KeySupply(..., remote=modes.supplier)

It serves `PqcExchange` on the relay's gRPC server (same mutual TLS), reaches the end KMs at
their relay addresses (`key_managers` in km.yaml, else the neighbours'), and judges the QKD
path of each association from the node's configuration, the link-key pools and relay failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from km.access import AccessControl
from km.associations import AdmissionState, AppRequest, Association, NodeView
from km.config import KmConfig
from km.key_store import KeyStore
from km.link_pools import LinkKeyError
from km.pqc.client import PqcClient
from km.pqc.health import PathIdentity, qkd_health
from km.pqc.kem import Kem
from km.pqc.mode import KeyMode, Origin, QkdHealth
from km.pqc.origins import OriginBook
from km.pqc.provider import PqcProvider, PqcSettings
from km.pqc.responder import Responder, add_to_server
from km.pqc.supplier import KeyModeSupplier
from km.relay.component import RelayComponent
from km.supply import SupplyError

log = logging.getLogger(__name__)


class KeyModes:
    def __init__(
        self, config: KmConfig, store: KeyStore, relay: RelayComponent, access: AccessControl
    ) -> None:
        self.config = config
        self.relay = relay
        self.access = access
        self.origins = OriginBook()
        settings = config.settings
        addresses = {peer.node: str(peer.relay) for peer in config.peers}
        addresses.update({node: str(address) for node, address in config.key_managers.items()})
        self.provider = PqcProvider(
            config.qkdn_id,
            config.qkdn_id_of,
            PqcClient(addresses, config.tls),
            relay.supplier,
            PqcSettings(
                kem=Kem.parse(settings.pqc_kem),
                batch=settings.pqc_batch,
                rekey_s=settings.pqc_rekey_s,
                max_hybrid_batch=settings.max_key_per_request,
            ),
        )
        self.supplier = KeyModeSupplier(
            relay.supplier,
            self.provider,
            self.mode_of,
            self.health,
            self.origins,
            installed=self.installed,
            tracer=relay.tracer,
            admit=self._admit,
            admission_wait_s=settings.admission_wait_s,
        )
        relay.supplier.key_mode_of = self.supplier.mode  # registered with new associations
        self.responder = Responder(config, store, self.origins, mode_here=self.mode_here)
        relay.on_server(lambda server: add_to_server(server, self.responder))
        relay.associations.listeners.append(self._on_view)
        access.replaced_listeners.append(self.sync_modes)
        # app_id -> the mode registered because the tree gave another one (asked once)
        self._mode_asked: dict[str, KeyMode] = {}
        self._mode_tasks: set[asyncio.Task[None]] = set()

    async def _admit(
        self, master: str, slaves: Sequence[str], slave_node: str, size_bits: int, wait: float
    ) -> object:
        return await self.relay.supplier.ensure(master, slaves, slave_node, size_bits, wait)

    def mode_here(self, master: str, slaves: Sequence[str]) -> KeyMode | None:
        """The key mode this node's tree gives (master → slaves) ending here (the slaves'
        side): what the controller wrote, never the master's policy; None when not written."""
        assoc = self.relay.associations.view.destination_association(master, slaves)
        return None if assoc is None else assoc.key_mode

    def sync_modes(self) -> None:
        """Re-registers every admitted association this node originates whose key mode in the
        tree is not the policy's (a policy reload, or a policy changed while the KM was down):
        the controller then rewrites it on the path (pqc-only: withdraws the path)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for assoc in self.relay.associations.view.associations:
            if assoc.prev_hop is not None or assoc.state is not AdmissionState.ADMITTED:
                continue
            if not assoc.slaves or assoc.master not in self.config.applications:
                continue
            wanted = self.supplier.mode(assoc.master, assoc.slaves)
            if (assoc.key_mode or KeyMode.QKD_PREFERRED) is wanted:
                self._mode_asked.pop(assoc.app_id, None)
                continue
            if self._mode_asked.get(assoc.app_id) is wanted or assoc.destination is None:
                continue
            self._mode_asked[assoc.app_id] = wanted
            task = loop.create_task(self._register_mode(assoc, wanted))
            self._mode_tasks.add(task)
            task.add_done_callback(self._mode_tasks.discard)

    async def _register_mode(self, assoc: Association, mode: KeyMode) -> None:
        assert assoc.destination is not None
        ttl = self.relay.supplier.key_ttl_s
        request = AppRequest(
            master=assoc.master,
            slaves=assoc.slaves,
            remote_qkdn_id=assoc.destination,
            min_bandwidth=self.config.settings.key_size_bits,  # as a first registration asks
            ttl_s=0 if ttl is None else int(ttl),
            key_mode=mode,
        )
        self.relay.tracer.emit(
            "keys.mode_changed", master=assoc.master, slaves=list(assoc.slaves), mode=mode.value
        )
        try:
            await self.relay.node_link.register(request)
        except SupplyError as exc:
            self._mode_asked.pop(assoc.app_id, None)
            log.warning(
                "key mode %s of %s→%s not registered: %s",
                mode.value, assoc.master, ",".join(assoc.slaves), exc.message,
            )  # fmt: skip

    def _on_view(self, old: NodeView, new: NodeView) -> None:
        """The controller changed an association this node originates: say so on the timeline
        and, when QKD is lost for a mode with a fallback, start the post-quantum exchange now,
        so the next request finds keys ready."""
        self.sync_modes()
        before = {a.app_id: a for a in old.associations if a.prev_hop is None}
        for assoc in new.associations:
            if assoc.prev_hop is not None or not assoc.slaves:
                continue
            was = before.get(assoc.app_id)
            if was is not None and (was.state, was.path) == (assoc.state, assoc.path):
                continue
            self.relay.tracer.emit(
                "keys.qkd_path",
                master=assoc.master,
                slaves=list(assoc.slaves),
                state=assoc.state.value,
                reason=assoc.reason,
            )
            if assoc.state in (AdmissionState.FAILED, AdmissionState.REJECTED):
                self._prepare_fallback(assoc.master, assoc.slaves)

    def _prepare_fallback(self, master: str, slaves: Sequence[str]) -> None:
        mode = self.supplier.mode(master, slaves)
        if mode not in (KeyMode.QKD_PREFERRED, KeyMode.HYBRID_EITHER):
            return
        slave_node = self.config.applications.get(slaves[0])
        if slave_node is None or slave_node == self.config.node:
            return
        self.provider.prepare(
            Origin.PQC, mode, master, slaves, slave_node, self.config.settings.key_size_bits
        )

    def mode_of(self, master: str, slave: str) -> KeyMode:
        return self.access.policy.mode_for(master, slave)

    def _slave_qkdn_id(self, slave_node: str) -> str | None:
        try:
            return self.config.qkdn_id_of(slave_node)
        except KeyError:
            return None

    def installed(self, master: str, slaves: Sequence[str], slave_node: str) -> PathIdentity | None:
        qkdn_id = self._slave_qkdn_id(slave_node)
        if qkdn_id is None:
            return None
        assoc = self.relay.associations.view.source_association(master, slaves, qkdn_id)
        return None if assoc is None else PathIdentity.of(assoc)

    def health(self, master: str, slaves: Sequence[str], slave_node: str) -> QkdHealth:
        qkdn_id = self._slave_qkdn_id(slave_node)
        if qkdn_id is None:
            return QkdHealth(False, f"unknown node {slave_node!r}")
        view = self.relay.associations.view
        assoc = view.source_association(master, slaves, qkdn_id)
        first_hop: int | None = None
        if assoc is not None and assoc.next_hop is not None:
            try:
                pool = self.relay.pools.for_peer(self.config.name_of(assoc.next_hop))
                first_hop = pool.ready_for_sending()
            except LinkKeyError:
                first_hop = None
        ready = self.relay.supplier.ready_count(master, slaves[0]) if len(slaves) == 1 else 0
        return qkd_health(
            view, master, slaves, qkdn_id,
            ready=ready, first_hop_keys=first_hop, failed_paths=self.supplier.failed_paths(),
        )  # fmt: skip

    async def close(self) -> None:
        for task in list(self._mode_tasks):
            task.cancel()
        await asyncio.gather(*self._mode_tasks, return_exceptions=True)
        await self.provider.close()
