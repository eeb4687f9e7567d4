"""The emulated hardware of one node: a QKD module per PHYS link end, fibre cuts, an eavesdropper.

`NodeHardware` owns the modules of one node and the faults injected into them (AgentControl).
Every change of a module's channel is handed to `describe` (which turns it into
notifications) under the node's lock, and what it returns to `emit` after the lock is released;
the peer end of a link in the same `Site` gets the same fault at the same instant.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agents.config import AgentConfig, AgentLink
from agents.emulator.channel import ChannelChange, LinkStatus, RateLike
from agents.emulator.physics import link_rate
from agents.emulator.positions import PositionFile
from agents.emulator.qkd_module import LinkEnd, QkdModule
from agents.emulator.site import Site

POSITION_BLOCK_S = 0.5  # key handed out per recorded reservation, in seconds at nominal rate

Describe = Callable[[QkdModule, ChannelChange | None], list[str]]
Emit = Callable[[list[str]], None]


class NodeStatus(enum.Enum):
    """`etsi-qkd-node-types:qkdn-status-types` (the values this emulator uses)."""

    OPERATING = "OPERATING"
    DOWN = "DOWN"


@dataclass(frozen=True)
class ModuleSettings:
    idle_release_s: float = 5.0  # an idle 004 stream may be taken over after this
    module_store_s: float = 60.0  # a module keeps unfetched key this long at its nominal rate


@dataclass(frozen=True)
class LinkReport:
    """What AgentControl.Status tells about one PHYS link end."""

    qkdl_id: str
    peer_node: str
    peer_qkdn_id: str
    status: LinkStatus
    skr_bps: float
    qber: float
    available_keys: int
    consumed_keys: int
    enabled: bool
    fibre_up: bool
    eve_fraction: float
    aborted: bool


def _rate_model(link: AgentLink) -> Callable[[float], RateLike]:
    def rate(eve_fraction: float) -> RateLike:
        return link_rate(
            link.preset,
            link.length_km,
            extra_loss_db=link.extra_loss_db,
            eve_fraction=eve_fraction,
            skr_bps=link.skr_bps,
            qber=link.qber,
        )

    return rate


def _nothing(module: QkdModule, change: ChannelChange | None) -> list[str]:
    return []


def _drop(events: list[str]) -> None:
    return None


def combined_status(modules: Iterable[QkdModule]) -> LinkStatus:
    """The status of a path over `modules`: its worst hop."""
    statuses = [m.state.status for m in modules]
    for status in (LinkStatus.OFF, LinkStatus.PASSIVE, LinkStatus.PENDING):
        if status in statuses:
            return status
    return LinkStatus.ACTIVE


class NodeHardware:
    """The QKD modules of one node and the faults injected into them."""

    def __init__(
        self,
        config: AgentConfig,
        site: Site,
        settings: ModuleSettings | None = None,
        positions_dir: Path | None = None,
        durable_positions: bool = True,
    ) -> None:
        """`positions_dir`: where each module end records how far it handed out keys (one
        file per PHYS link); None keeps nothing, so a restarted stream starts again at 0."""
        self.config = config
        self.name = config.node
        self.qkdn_id = config.qkdn_id
        self.site = site
        self.settings = settings or ModuleSettings()
        self.status = NodeStatus.OPERATING
        self.lock = threading.RLock()
        self._positions_dir = positions_dir
        self._durable_positions = durable_positions
        self._describe: Describe = _nothing
        self._emit: Emit = _drop
        self.links: Mapping[str, AgentLink] = {link.qkdl_id: link for link in config.links}
        self.modules: Mapping[str, QkdModule] = {
            qkdl_id: self._make_module(link) for qkdl_id, link in self.links.items()
        }
        # peer qkdn_id -> the PHYS link to it
        self.neighbours: Mapping[str, str] = {
            link.peer.qkdn_id: qkdl_id for qkdl_id, link in self.links.items()
        }
        self.interfaces: Mapping[int, str] = {
            link.local_qkdi_id: qkdl_id for qkdl_id, link in self.links.items()
        }
        site.add(self)

    def attach(self, describe: Describe, emit: Emit) -> None:
        """Where channel changes go: `describe` turns one into events, `emit` sends them."""
        self._describe = describe
        self._emit = emit

    def _make_module(self, link: AgentLink) -> QkdModule:
        peer_id = link.peer.qkdn_id
        seed = Path(link.seed_file).read_bytes()
        chunk_bytes = max(1, self.config.module.key_size_bits // 8)
        rate = _rate_model(link)
        # The module's store, not the KM's pool: large enough that two KMs starting or
        # fetching seconds apart still find the same indices at both ends.
        nominal = rate(0.0).skr_bps * self.settings.module_store_s / (chunk_bytes * 8)
        pool = self.config.module.link_pool_max_bits / (chunk_bytes * 8)
        positions = None
        if self._positions_dir is not None:
            # About half a second of key per write, at least 64 indices.
            block = max(64, int(rate(0.0).skr_bps / (chunk_bytes * 8) * POSITION_BLOCK_S))
            positions = PositionFile(
                self._positions_dir / f"{link.qkdl_id}.position",
                link.qkdl_id,
                seed,
                block=block,
                durable=self._durable_positions,
            )
        return QkdModule(
            LinkEnd(link.qkdl_id, self.qkdn_id, peer_id, link.local_qkdi_id),
            seed,
            rate,
            self.site.clock,
            start=self.site.start,
            chunk_bytes=chunk_bytes,
            capacity_chunks=max(1, int(max(nominal, 4 * pool))),
            peer_stream_open=lambda: self._peer_stream_open(link.qkdl_id, peer_id),
            idle_release_s=self.settings.idle_release_s,
            positions=positions,
        )

    def _peer_stream_open(self, qkdl_id: str, peer_id: str) -> bool | None:
        peer = self.site.peer_module(qkdl_id, peer_id)
        return None if peer is None else peer.stream_open

    def module(self, qkdl_id: str) -> QkdModule | None:
        return self.modules.get(qkdl_id)

    def checked_module(self, qkdl_id: str) -> QkdModule:
        module = self.modules.get(qkdl_id)
        if module is None:
            raise KeyError(f"node {self.name} has no PHYS link {qkdl_id}")
        return module

    def hop_modules(self, hops: Iterable[str]) -> list[QkdModule]:
        """The modules of the PHYS links to the neighbours among `hops` (qkdn_ids)."""
        return [self.modules[self.neighbours[h]] for h in hops if h in self.neighbours]

    # ---- configuration ------------------------------------------------------------------------

    def set_enabled(self, wanted: Mapping[str, bool]) -> tuple[list[str], list[tuple[str, bool]]]:
        """Enables or disables modules (`qkdl_enable`); call under `lock`. The events of the
        changes and the links whose peer ends `tell_peers` must then be told about."""
        events: list[str] = []
        toggled: list[tuple[str, bool]] = []
        for qkdl_id, enabled in wanted.items():
            module = self.modules.get(qkdl_id)
            if module is None:
                continue
            change = module.set_enabled(enabled)
            if change is not None:
                toggled.append((qkdl_id, enabled))
                events += self._describe(module, change)
        return events, toggled

    def tell_peers(self, toggled: Iterable[tuple[str, bool]]) -> None:
        """The in-process peer ends see their link go or come back (outside `lock`)."""
        for qkdl_id, up in toggled:
            peer = self._peer_of(qkdl_id)
            if peer is not None:
                peer._peer_changed(qkdl_id, up)

    # ---- faults (AgentControl) ----------------------------------------------------------------

    def set_link(self, qkdl_id: str, up: bool, *, from_peer: bool = False) -> LinkReport:
        """Cuts (up=False) or restores the fibre of a link; the in-process peer end too."""
        module = self.checked_module(qkdl_id)
        with self.lock:
            events = self._describe(module, module.set_fibre(up))
        self._emit(events)
        peer = None if from_peer else self._peer_of(qkdl_id)
        if peer is not None:
            peer.set_link(qkdl_id, up, from_peer=True)
        return self.report(qkdl_id)

    def set_eavesdropper(
        self, qkdl_id: str, fraction: float, *, from_peer: bool = False
    ) -> LinkReport:
        """Intercept-resend on `fraction` of the signals (0 removes it); the peer end too."""
        module = self.checked_module(qkdl_id)
        with self.lock:
            events = self._describe(module, module.set_eavesdropper(fraction))
        self._emit(events)
        peer = None if from_peer else self._peer_of(qkdl_id)
        if peer is not None:
            peer.set_eavesdropper(qkdl_id, fraction, from_peer=True)
        return self.report(qkdl_id)

    def stop(self) -> bool:
        """The node fails: its modules stop, its peers in this process see their links go.
        False when it was already stopped."""
        with self.lock:
            if self.status is NodeStatus.DOWN:
                return False
            self.status = NodeStatus.DOWN
            events: list[str] = []
            for module in self.modules.values():
                events += self._describe(module, module.set_node_up(False))
        self._emit(events)
        self.tell_peers((qkdl_id, False) for qkdl_id in self.modules)
        return True

    def _peer_changed(self, qkdl_id: str, up: bool) -> None:
        module = self.checked_module(qkdl_id)
        with self.lock:
            events = self._describe(module, module.set_peer_up(up))
        self._emit(events)

    def _peer_of(self, qkdl_id: str) -> NodeHardware | None:
        """The node at the other end of `qkdl_id` when it lives in this process."""
        peer = self.site.node(self.modules[qkdl_id].end.peer_qkdn_id)
        return peer if isinstance(peer, NodeHardware) and peer.module(qkdl_id) is not None else None

    def report(self, qkdl_id: str) -> LinkReport:
        module = self.checked_module(qkdl_id)
        with self.lock:
            stats = module.stats()
            state = module.state
        return LinkReport(
            qkdl_id=qkdl_id,
            peer_node=self.links[qkdl_id].peer.node,
            peer_qkdn_id=module.end.peer_qkdn_id,
            status=stats.status,
            skr_bps=stats.skr_bps,
            qber=stats.qber,
            available_keys=stats.available_keys,
            consumed_keys=stats.consumed_keys,
            enabled=state.enabled,
            fibre_up=state.fibre_up,
            eve_fraction=state.eve_fraction,
            aborted=state.rate.aborted,
        )

    def reports(self) -> list[LinkReport]:
        return [self.report(qkdl_id) for qkdl_id in self.modules]
