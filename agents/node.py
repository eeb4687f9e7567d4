"""One emulated QKD node: its modules, its configuration subscriber and its notifications.

`QkdNode` is the datastore's `NodeBackend` (veto / apply / operational), owns one
`QkdModule` per PHYS link end, turns channel changes into ETSI 015 notifications and feeds
the running configuration to the key manager (NodeLink). A `Site` holds the nodes of one
process: when both ends of a link live in it, a fault on the fibre reaches both at the same
instant, so both key streams stay index-for-index identical. No sockets here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents import notifications
from agents.channel import ChannelChange, LinkStatus, RateLike
from agents.config import AgentConfig, AgentLink
from agents.config_feed import ConfigFeed
from agents.initial_config import QKD_NODE, decimal3, identity, initial_running
from agents.notifications import AppRequest, Performance, Severity
from agents.physics import link_rate
from agents.positions import PositionFile
from agents.qkd_module import Clock, KeyResult, LinkEnd, OpenResult, QkdModule, Status
from common.tracing import Tracer

log = logging.getLogger(__name__)

Publish = Callable[[str], None]
UINT32_MAX = 2**32 - 1
POSITION_BLOCK_S = 0.5  # key handed out per recorded reservation, in seconds at nominal rate
PHYS = identity("PHYS")
VIRT = identity("VIRT")


class NodeStatus(enum.Enum):
    """`etsi-qkd-node-types:qkdn-status-types` (the values this emulator uses)."""

    OPERATING = "OPERATING"
    DOWN = "DOWN"


@dataclass(frozen=True)
class NodeSettings:
    perf_interval_s: float = 10.0  # period of sdqkdn_link_perf_update
    significant_change: float = 0.10  # an SKR change above this raises a perf update at once
    renotify_after_s: float = 5.0  # a repeated registration re-raises application_new after
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


class Site:
    """The nodes hosted by one process, sharing a clock and a key-stream start time."""

    def __init__(self, clock: Clock = time.monotonic, start: float | None = None) -> None:
        self.clock = clock
        self.start = clock() if start is None else start
        self._nodes: dict[str, QkdNode] = {}

    def add(self, node: QkdNode) -> None:
        self._nodes[node.qkdn_id] = node

    def node(self, qkdn_id: str) -> QkdNode | None:
        return self._nodes.get(qkdn_id)

    def peer_module(self, qkdl_id: str, peer_qkdn_id: str) -> QkdModule | None:
        peer = self._nodes.get(peer_qkdn_id)
        return None if peer is None else peer.module(qkdl_id)


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


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _u32(value: float) -> int:
    return max(0, min(UINT32_MAX, int(value)))


def _items(body: dict[str, Any], container: str, lst: str) -> list[dict[str, Any]]:
    items = body.get(container, {}).get(lst, [])
    return list(items) if isinstance(items, list) else []


@dataclass
class _App:
    created: str
    baseline: dict[str, int] = field(default_factory=dict)  # consumed bits per PHYS link


class QkdNode:
    """The emulated node of an agent configuration."""

    def __init__(
        self,
        config: AgentConfig,
        site: Site,
        publish: Publish | None = None,
        settings: NodeSettings | None = None,
        tracer: Tracer | None = None,
        positions_dir: Path | None = None,
        durable_positions: bool = True,
    ) -> None:
        """`positions_dir`: where each module end records how far it handed out keys (one
        file per PHYS link); None keeps nothing, so a restarted stream starts again at 0."""
        self.config = config
        self.name = name = config.node
        self.qkdn_id = config.qkdn_id
        self._positions_dir = positions_dir
        self._durable_positions = durable_positions
        self.site = site
        self.settings = settings or NodeSettings()
        self.status = NodeStatus.OPERATING
        self.feed = ConfigFeed()
        self._publish = publish
        self._tracer = tracer or Tracer(f"agent:{name}", None)
        self._lock = threading.RLock()
        self._links: dict[str, AgentLink] = {link.qkdl_id: link for link in config.links}
        self._modules = {qkdl_id: self._make_module(link) for qkdl_id, link in self._links.items()}
        self._neighbours = {link.peer.qkdn_id: qkdl_id for qkdl_id, link in self._links.items()}
        self._running: dict[str, Any] = {}
        self._apps: dict[str, _App] = {}
        self._registrations: dict[tuple[str, tuple[str, ...], str], float] = {}
        self._overloaded: set[str] = set()
        self._reported_skr: dict[str, float] = {}
        # Told (qkdl_id, distilling) when a PHYS link stops or starts distilling key (metrics).
        self.link_watchers: list[Callable[[str, bool], None]] = []
        site.add(self)

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

    def __repr__(self) -> str:
        return f"QkdNode({self.name}, {self.qkdn_id})"

    # ---- composition -------------------------------------------------------------------------

    def initial_running(self) -> dict[str, Any]:
        """The configuration to boot with when nothing is persisted."""
        return initial_running(self.config)

    def start(self, running: dict[str, Any]) -> None:
        """Adopts the datastore's running config once composed (no change callback for it)."""
        self._adopt(running, quiet=True)

    def module(self, qkdl_id: str) -> QkdModule | None:
        return self._modules.get(qkdl_id)

    @property
    def modules(self) -> tuple[QkdModule, ...]:
        return tuple(self._modules.values())

    def set_publisher(self, publish: Publish | None) -> None:
        self._publish = publish

    # ---- NodeBackend -------------------------------------------------------------------------

    def veto(self, new_running: dict[str, Any]) -> str | None:
        """Refuses what the emulated hardware cannot do; None accepts."""
        body = new_running.get(QKD_NODE)
        if not isinstance(body, dict):
            return "the configuration has no qkd_node"
        if body.get("qkdn_id") != self.qkdn_id:
            return f"qkdn_id is fixed to {self.qkdn_id}"
        for reason in self._interface_problems(body):
            return reason
        links = {link.get("qkdl_id"): link for link in _items(body, "qkd_links", "qkd_link")}
        for reason in self._link_problems(links):
            return reason
        for app in _items(body, "qkd_applications", "qkd_app"):
            for backing in app.get("backing_qkdl_id", []):
                if backing not in links:
                    return f"qkd_app {app.get('app_id')}: backing link {backing} is not configured"
        return None

    def _interface_problems(self, body: dict[str, Any]) -> Iterator[str]:
        present: set[int] = {
            int(iface["qkdi_id"])
            for iface in _items(body, "qkd_interfaces", "qkd_interface")
            if "qkdi_id" in iface
        }
        ours = {link.local_qkdi_id: qkdl_id for qkdl_id, link in self._links.items()}
        for qkdi_id in sorted(i for i in present if i not in ours):
            yield f"qkd_interface {qkdi_id}: this node has no such QKD module"
        for qkdi_id, qkdl_id in sorted(ours.items()):
            if qkdi_id not in present:
                yield f"qkd_interface {qkdi_id} is the module of PHYS link {qkdl_id}: it cannot be removed"

    def _link_problems(self, links: dict[Any, dict[str, Any]]) -> Iterator[str]:
        for qkdl_id in self._links:
            if qkdl_id not in links:
                yield f"PHYS link {qkdl_id} cannot be removed (set qkdl_enable to false instead)"
        for qkdl_id, link in links.items():
            kind = link.get("qkdl_type")
            if qkdl_id in self._links:
                yield from self._phys_problems(qkdl_id, link, kind)
            elif kind == PHYS:
                yield f"PHYS link {qkdl_id}: no fibre of this node has that id"
            elif kind == VIRT:
                yield from self._virt_problems(qkdl_id, link)
            else:
                yield f"qkd_link {qkdl_id}: qkdl_type must be VIRT for a link this node does not own"

    def _phys_problems(self, qkdl_id: str, link: dict[str, Any], kind: Any) -> Iterator[str]:
        own = self._links[qkdl_id]
        if kind not in (None, PHYS):
            yield f"qkd_link {qkdl_id} is a PHYS link of this node, not {kind}"
        expected = {
            "qkdl_local": (self.qkdn_id, own.local_qkdi_id),
            "qkdl_remote": (own.peer.qkdn_id, own.peer.qkdi_id),
        }
        for end, (qkdn_id, qkdi_id) in expected.items():
            given = link.get(end, {})
            if given.get("qkdn_id", qkdn_id) != qkdn_id or given.get("qkdi_id", qkdi_id) != qkdi_id:
                yield f"PHYS link {qkdl_id}: {end} is fixed to node {qkdn_id} interface {qkdi_id}"

    def _virt_problems(self, qkdl_id: str, link: dict[str, Any]) -> Iterator[str]:
        hops = [("virt_prev_hop", link["virt_prev_hop"])] if "virt_prev_hop" in link else []
        hops += [("virt_next_hop", hop) for hop in link.get("virt_next_hop", [])]
        for leaf, hop in hops:
            if hop == self.qkdn_id:
                yield f"VIRT link {qkdl_id}: {leaf} {hop} is this node itself"
            elif hop not in self._neighbours:
                yield f"VIRT link {qkdl_id}: {leaf} {hop} is not a neighbour (no PHYS link to it)"

    def apply(self, new_running: dict[str, Any]) -> None:
        self._adopt(new_running, quiet=False)

    def _adopt(self, running: dict[str, Any], quiet: bool) -> None:
        events: list[str] = []
        peers: list[tuple[str, bool]] = []
        with self._lock:
            self._running = running
            body = running.get(QKD_NODE, {})
            for link in _items(body, "qkd_links", "qkd_link"):
                module = self._modules.get(link.get("qkdl_id", ""))
                if module is None:
                    continue
                enabled = bool(link.get("qkdl_enable", True))
                change = module.set_enabled(enabled)
                if change is not None:
                    peers.append((module.end.qkdl_id, enabled))
                    events += self._change_events(module, change)
            self._track_apps(body)
            events += self._overload_events(self._modules)
        for qkdl_id, enabled in peers:
            peer = self._peer_of(qkdl_id)
            if peer is not None:
                peer._peer_changed(qkdl_id, enabled)
        if not quiet:
            self._emit(events)
        self.feed.publish(running)

    def _track_apps(self, body: dict[str, Any]) -> None:
        apps = {str(a.get("app_id")): a for a in _items(body, "qkd_applications", "qkd_app")}
        for app_id in list(self._apps):
            if app_id not in apps:
                del self._apps[app_id]
        for app_id, app in apps.items():
            if app_id not in self._apps:
                baseline = {
                    q: self._modules[q].stats().consumed_bits for q in self._phys_under(app)
                }
                self._apps[app_id] = _App(_now_text(), baseline)
            server, clients = app.get("server_app_id"), tuple(sorted(app.get("client_app_id", [])))
            for key in [k for k in self._registrations if k[0] == server and k[1] == clients]:
                del self._registrations[key]

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        """State leaves of <get>: statuses, link performance, application status and use."""
        with self._lock:
            body = running.get(QKD_NODE, {})
            state: dict[str, Any] = {
                "qkdn_id": self.qkdn_id,
                "qkdn_status": identity(self.status.value),
            }
            interfaces = [
                {"qkdi_id": iface["qkdi_id"], "qkdi_status": identity(self._iface_status(iface))}
                for iface in _items(body, "qkd_interfaces", "qkd_interface")
                if "qkdi_id" in iface
            ]
            if interfaces:
                state["qkd_interfaces"] = {"qkd_interface": interfaces}
            links = [self._link_state(link, body) for link in _items(body, "qkd_links", "qkd_link")]
            if links:
                state["qkd_links"] = {"qkd_link": links}
            apps = [
                self._app_state(app, body) for app in _items(body, "qkd_applications", "qkd_app")
            ]
            if apps:
                state["qkd_applications"] = {"qkd_app": apps}
        return {QKD_NODE: state}

    def _iface_status(self, iface: dict[str, Any]) -> str:
        if self.status is NodeStatus.DOWN:
            return "FAILED"
        for module in self._modules.values():
            if module.end.qkdi_id == iface.get("qkdi_id"):
                return "ENABLED" if module.state.enabled else "DISABLED"
        return "DISABLED"

    def _link_state(self, link: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        qkdl_id = link.get("qkdl_id", "")
        module = self._modules.get(qkdl_id)
        entry: dict[str, Any] = {"qkdl_id": qkdl_id, "qkdl_type": link.get("qkdl_type", PHYS)}
        if module is not None:
            stats = module.stats()
            entry["qkdl_status"] = identity(stats.status.value)
            entry["qkdl_performance"] = {
                "expected_consumption": _u32(self.expected_consumption(qkdl_id, body)),
                "skr": _u32(stats.skr_bps),
                "eskr": _u32(stats.eskr_bps),
                "phys_perf": [{"perf_type": identity("QBER"), "value": decimal3(stats.qber)}],
            }
            return entry
        hops = self._hop_modules(link)
        entry["qkdl_status"] = identity(self._combined_status(hops).value)
        if hops:
            entry["qkdl_performance"] = {
                "expected_consumption": _u32(link.get("virt_bandwidth", 0)),
                "skr": _u32(min(m.stats().skr_bps for m in hops)),
                "eskr": _u32(min(m.stats().eskr_bps for m in hops)),
            }
        return entry

    def _app_state(self, app: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        app_id = app.get("app_id", "")
        record = self._apps.get(app_id) or _App(_now_text())
        links = {link.get("qkdl_id"): link for link in _items(body, "qkd_links", "qkd_link")}
        statuses = []
        for backing in app.get("backing_qkdl_id", []):
            link = links.get(backing, {})
            module = self._modules.get(backing)
            hops = [module] if module is not None else self._hop_modules(link)
            statuses.append(self._combined_status(hops))
        status = "ON" if all(s is LinkStatus.ACTIVE for s in statuses) else "DISCONNECTED"
        if _expired(app.get("expiration_time")):
            status = "OUT-OF-TIME"
        consumed = sum(
            self._modules[q].stats().consumed_bits - record.baseline.get(q, 0)
            for q in self._phys_under(app)
        )
        return {
            "app_id": app_id,
            "app_status": identity(status),
            "creation_time": record.created,
            "app_statistics": {
                "statistics": [
                    {
                        "end_time": _now_text(),
                        "start_time": record.created,
                        "consumed_bits": _u32(consumed),
                    }
                ]
            },
        }

    def _hop_modules(self, link: dict[str, Any]) -> list[QkdModule]:
        hops = [link["virt_prev_hop"]] if "virt_prev_hop" in link else []
        hops += list(link.get("virt_next_hop", []))
        return [self._modules[self._neighbours[h]] for h in hops if h in self._neighbours]

    def _phys_under(self, app: dict[str, Any]) -> list[str]:
        """PHYS links of this node that carry `app` (directly or under its VIRT link)."""
        body = self._running.get(QKD_NODE, {})
        links = {link.get("qkdl_id"): link for link in _items(body, "qkd_links", "qkd_link")}
        found: list[str] = []
        for backing in app.get("backing_qkdl_id", []):
            if backing in self._modules:
                found.append(backing)
            else:
                found += [m.end.qkdl_id for m in self._hop_modules(links.get(backing, {}))]
        return list(dict.fromkeys(found))

    @staticmethod
    def _combined_status(modules: Iterable[QkdModule]) -> LinkStatus:
        statuses = [m.state.status for m in modules]
        for status in (LinkStatus.OFF, LinkStatus.PASSIVE, LinkStatus.PENDING):
            if status in statuses:
                return status
        return LinkStatus.ACTIVE

    def expected_consumption(self, qkdl_id: str, body: dict[str, Any] | None = None) -> int:
        """bit/s the configuration plans to draw from PHYS link `qkdl_id`.

        The `virt_bandwidth` of every VIRT link that crosses it (its previous or next hop is
        the peer of this link) plus the bandwidth of apps backed by this link directly.
        """
        if body is None:
            body = self._running.get(QKD_NODE, {})
        peer_id = self._links[qkdl_id].peer.qkdn_id
        total = 0
        for virt in _items(body, "qkd_links", "qkd_link"):
            if virt.get("qkdl_type") != VIRT:
                continue
            hops = [virt.get("virt_prev_hop"), *virt.get("virt_next_hop", [])]
            if peer_id in hops:
                total += int(virt.get("virt_bandwidth", 0))
        for app in _items(body, "qkd_applications", "qkd_app"):
            if qkdl_id in app.get("backing_qkdl_id", []):
                qos = app.get("app_qos", {})
                total += int(qos.get("max_bandwidth") or qos.get("min_bandwidth") or 0)
        return total

    # ---- faults (AgentControl) ----------------------------------------------------------------

    def _checked_module(self, qkdl_id: str) -> QkdModule:
        module = self._modules.get(qkdl_id)
        if module is None:
            raise KeyError(f"node {self.name} has no PHYS link {qkdl_id}")
        return module

    def set_link(self, qkdl_id: str, up: bool, *, from_peer: bool = False) -> LinkReport:
        """Cuts (up=False) or restores the fibre of a link; the in-process peer end too."""
        module = self._checked_module(qkdl_id)
        with self._lock:
            change = module.set_fibre(up)
            events = self._change_events(module, change)
        self._emit(events)
        peer = None if from_peer else self._peer_of(qkdl_id)
        if peer is not None:
            peer.set_link(qkdl_id, up, from_peer=True)
        return self.report(qkdl_id)

    def set_eavesdropper(
        self, qkdl_id: str, fraction: float, *, from_peer: bool = False
    ) -> LinkReport:
        """Intercept-resend on `fraction` of the signals (0 removes it); the peer end too."""
        module = self._checked_module(qkdl_id)
        with self._lock:
            change = module.set_eavesdropper(fraction)
            events = self._change_events(module, change)
        self._emit(events)
        peer = None if from_peer else self._peer_of(qkdl_id)
        if peer is not None:
            peer.set_eavesdropper(qkdl_id, fraction, from_peer=True)
        return self.report(qkdl_id)

    def stop(self) -> None:
        """The node fails: its modules stop, its peers in this process see their links go."""
        with self._lock:
            if self.status is NodeStatus.DOWN:
                return
            self.status = NodeStatus.DOWN
            events: list[str] = []
            for module in self._modules.values():
                events += self._change_events(module, module.set_node_up(False))
        self._emit(events)
        for qkdl_id in self._modules:
            peer = self._peer_of(qkdl_id)
            if peer is not None:
                peer._peer_changed(qkdl_id, False)
        self.feed.close()

    def _peer_changed(self, qkdl_id: str, up: bool) -> None:
        module = self._checked_module(qkdl_id)
        with self._lock:
            events = self._change_events(module, module.set_peer_up(up))
        self._emit(events)

    def _peer_of(self, qkdl_id: str) -> QkdNode | None:
        """The node at the other end of `qkdl_id` when it lives in this process."""
        peer = self.site.node(self._modules[qkdl_id].end.peer_qkdn_id)
        return peer if peer is not None and peer.module(qkdl_id) is not None else None

    def report(self, qkdl_id: str) -> LinkReport:
        module = self._checked_module(qkdl_id)
        with self._lock:
            stats = module.stats()
            state = module.state
        peer = self._links[qkdl_id].peer.node
        return LinkReport(
            qkdl_id=qkdl_id,
            peer_node=peer,
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
        return [self.report(qkdl_id) for qkdl_id in self._modules]

    def telemetry(self) -> list[tuple[LinkReport, Performance]]:
        """Each PHYS link's report and 015 performance, read together (for the metrics)."""
        with self._lock:
            return [(self.report(q), self.performance(q)) for q in self._modules]

    # ---- ETSI 004 (module side) ---------------------------------------------------------------

    def open_connect(
        self, source: str, destination: str, key_stream_id: str, chunk_bytes: int, owner: str
    ) -> OpenResult:
        """OPEN_CONNECT; without a key_stream_id, the stream of the link to `destination`."""
        if not key_stream_id:
            key_stream_id = next(
                (q for q, m in self._modules.items() if m.end.peer_uri == destination), ""
            )
        module = self._modules.get(key_stream_id)
        if module is None:
            return OpenResult(Status.NO_QKD_CONNECTION, key_stream_id, 0, 0, "no such key stream")
        with self._lock:
            return module.open_connect(source, destination, key_stream_id, chunk_bytes, owner)

    def get_key(self, key_stream_id: str, index: int | None) -> KeyResult:
        module = self._modules.get(key_stream_id)
        if module is None:
            return KeyResult(Status.NO_QKD_CONNECTION, index or 0, message="no such key stream")
        with self._lock:
            return module.get_key(key_stream_id, index)

    def ready_in(self, key_stream_id: str, index: int | None) -> float | None:
        module = self._modules.get(key_stream_id)
        if module is None or not module.stream_open:
            return None
        with self._lock:
            return module.ready_in(index)

    def close_stream(self, key_stream_id: str) -> Status:
        module = self._modules.get(key_stream_id)
        if module is None:
            return Status.NO_QKD_CONNECTION
        with self._lock:
            return module.close(key_stream_id)

    # ---- NodeLink -----------------------------------------------------------------------------

    def register_application(self, request: AppRequest) -> tuple[bool, str]:
        """Raises `sdqkdn_application_new` for the key manager (at most once per
        `renotify_after_s` for the same applications while no qkd_app for them exists)."""
        problem = _registration_problem(request)
        if problem:
            return False, problem
        if self.status is NodeStatus.DOWN:
            return False, "the node is stopped"
        key = (request.server_app_id, tuple(sorted(request.client_app_ids)), request.remote_qkdn_id)
        now = self.site.clock()
        with self._lock:
            last = self._registrations.get(key)
            if last is not None and now - last < self.settings.renotify_after_s:
                return True, "already registered: waiting for the controller"
            self._registrations[key] = now
        self._tracer.emit(
            "app.registered",
            node=self.name,
            server_app_id=request.server_app_id,
            client_app_ids=list(request.client_app_ids),
            remote_qkdn_id=request.remote_qkdn_id,
        )
        try:
            self._emit([notifications.application_new(request)], raise_errors=True)
        except ValueError as error:
            with self._lock:
                self._registrations.pop(key, None)
            return False, str(error)
        return True, "sdqkdn_application_new raised"

    # ---- notifications ------------------------------------------------------------------------

    def performance(self, qkdl_id: str) -> Performance:
        stats = self._modules[qkdl_id].stats()
        return Performance(
            expected_consumption=_u32(self.expected_consumption(qkdl_id)),
            skr=_u32(stats.skr_bps),
            eskr=_u32(stats.eskr_bps),
            qber=stats.qber,
        )

    def _change_events(self, module: QkdModule, change: ChannelChange | None) -> list[str]:
        if change is None:
            return []
        qkdl_id = module.end.qkdl_id
        events: list[str] = []
        after = change.after
        self._tracer.emit(
            "link.changed",
            node=self.name,
            qkdl_id=qkdl_id,
            status=after.status.value,
            skr_bps=after.skr_bps,
            qber=after.qber,
            reason=after.reason,
        )
        if change.went_down or change.came_up:
            for watch in self.link_watchers:
                watch(qkdl_id, change.came_up)
        if change.went_down:
            events.append(notifications.link_down(qkdl_id, after.reason))
            events.append(
                notifications.link_alarm("alarm", qkdl_id, after.status.value, after.reason)
            )
        elif change.came_up:
            events.append(
                notifications.link_alarm(
                    "event", qkdl_id, "ACTIVE", "distilling key again", Severity.MINOR
                )
            )
        elif change.status_changed:
            events.append(
                notifications.link_alarm(
                    "event", qkdl_id, after.status.value, after.reason, Severity.MINOR
                )
            )
        if after.status is LinkStatus.ACTIVE and after.qber > change.before.qber * 1.1:
            events.append(
                notifications.link_alarm(
                    "alarm",
                    qkdl_id,
                    "ACTIVE",
                    f"QBER rose from {change.before.qber:.3f} to {after.qber:.3f}",
                    Severity.MINOR,
                )
            )
        reported = self._reported_skr.get(qkdl_id, change.before.skr_bps)
        moved = abs(after.skr_bps - reported) > self.settings.significant_change * max(reported, 1)
        if moved:
            events.append(self._perf_update(qkdl_id))
        events += self._overload_events([qkdl_id])
        return events

    def _perf_update(self, qkdl_id: str) -> str:
        perf = self.performance(qkdl_id)
        self._reported_skr[qkdl_id] = self._modules[qkdl_id].state.skr_bps
        return notifications.link_perf_update(qkdl_id, perf)

    def _overload_events(self, qkdl_ids: Iterable[str]) -> list[str]:
        events = []
        for qkdl_id in qkdl_ids:
            perf = self.performance(qkdl_id)
            # A link that is down is reported by sdqkdn_link_down, not as overloaded.
            active = self._modules[qkdl_id].state.status is LinkStatus.ACTIVE
            over = active and perf.expected_consumption > perf.skr
            if over and qkdl_id not in self._overloaded:
                self._overloaded.add(qkdl_id)
                events.append(notifications.link_overloaded(qkdl_id, perf))
            elif not over:
                self._overloaded.discard(qkdl_id)
        return events

    def perf_updates(self) -> list[str]:
        """One `sdqkdn_link_perf_update` per PHYS link (the periodic report)."""
        with self._lock:
            return [self._perf_update(qkdl_id) for qkdl_id in self._modules]

    async def run_perf_updates(self) -> None:
        """Publishes the periodic performance reports until the node stops or is cancelled."""
        while self.status is NodeStatus.OPERATING:
            await asyncio.sleep(self.settings.perf_interval_s)
            if self.status is NodeStatus.OPERATING:
                self._emit(self.perf_updates())

    def _emit(self, events: list[str], raise_errors: bool = False) -> None:
        publish = self._publish
        if publish is None:
            return
        for event in events:
            try:
                publish(event)
            except ValueError:
                if raise_errors:
                    raise
                log.exception("%s: notification not sent", self.name)


def _expired(expiration: Any) -> bool:
    if not isinstance(expiration, str):
        return False
    try:
        when = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when < datetime.now(UTC)


def _registration_problem(request: AppRequest) -> str:
    if not request.server_app_id:
        return "server_app_id is required"
    if not request.client_app_ids or not all(request.client_app_ids):
        return "at least one client_app_id is required"
    if request.app_type not in ("CLIENT", "INTERNAL"):
        return f"app_type must be CLIENT or INTERNAL, not {request.app_type!r}"
    try:
        uuid.UUID(request.remote_qkdn_id)
    except ValueError:
        return f"remote_qkdn_id {request.remote_qkdn_id!r} is not a UUID"
    return ""
