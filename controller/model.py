"""Value objects of the controller: devices, links, snapshots, requests, decisions, intents.

Everything here is frozen: services exchange snapshots, never shared mutable state.
Rates are in bit/s, as in the ETSI 015 model (`skr`, `eskr`, `virt_bandwidth`, `app_qos`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx

from yang.model import KeyMode

# A link whose reported QBER is above this carries no key for anyone: BB84 distils no secret
# key above about 11 % (an eavesdropper). The agents already report such a link OFF; a device
# that still calls itself ACTIVE is not trusted either.
QBER_THRESHOLD = 0.11

DeviceId = str  # a node's `qkdn_id` (yang:uuid)
LinkId = str  # a link's `qkdl_id` (yang:uuid)
IntentId = str  # uuid; also the VIRT `qkdl_id` and the `app_id` installed on the nodes


class LinkStatus(enum.Enum):
    """ETSI 015 LINK-STATUS-TYPES; only ACTIVE links carry key."""

    ACTIVE = "ACTIVE"
    PASSIVE = "PASSIVE"
    PENDING = "PENDING"
    OFF = "OFF"


class IntentState(enum.Enum):
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    FAILED = "FAILED"
    WITHDRAWN = "WITHDRAWN"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Device:
    """A node as the controller sees it over NETCONF."""

    device_id: DeviceId
    name: str  # the lab name (from the plan) or the node's location id
    available: bool = True
    location: str = ""
    km_relay_address: str = ""  # where its key manager relays (host:port; "" when unknown)


@dataclass(frozen=True)
class Link:
    """A PHYS QKD link, merged from what both of its ends report."""

    qkdl_id: LinkId
    a: DeviceId
    b: DeviceId
    skr: int = 0
    eskr: int = 0
    expected_consumption: int = 0
    qber: float | None = None
    status: LinkStatus = LinkStatus.ACTIVE
    pool_level_bits: int | None = None  # link key pool level, when a source reports it

    def other_end(self, device: DeviceId) -> DeviceId:
        return self.b if device == self.a else self.a

    def joins(self, device: DeviceId) -> bool:
        return device in (self.a, self.b)


@dataclass(frozen=True)
class TopologySnapshot:
    """An immutable view of devices and PHYS links at one moment."""

    devices: Mapping[DeviceId, Device] = field(default_factory=dict)
    links: Mapping[LinkId, Link] = field(default_factory=dict)

    def usable_links(self) -> Iterator[Link]:
        """Links that can carry key now: ACTIVE, QBER not above the threshold, both ends known
        and reachable."""
        for link in self.links.values():
            if link.status is not LinkStatus.ACTIVE:
                continue
            if link.qber is not None and link.qber > QBER_THRESHOLD:
                continue
            ends = (self.devices.get(link.a), self.devices.get(link.b))
            if all(end is not None and end.available for end in ends):
                yield link

    @cached_property
    def routing(self) -> nx.Graph:
        """Undirected graph of the usable links (built once per snapshot); parallel links
        between two nodes share one edge, listed in its `links` attribute."""
        graph = nx.Graph()
        graph.add_nodes_from(d.device_id for d in self.devices.values() if d.available)
        for link in self.usable_links():
            if graph.has_edge(link.a, link.b):
                graph.edges[link.a, link.b]["links"] += (link,)
            else:
                graph.add_edge(link.a, link.b, links=(link,))
        return graph

    def links_between(self, a: DeviceId, b: DeviceId) -> list[Link]:
        return [link for link in self.links.values() if {link.a, link.b} == {a, b}]

    def name_of(self, device: DeviceId) -> str:
        found = self.devices.get(device)
        return found.name if found is not None else device

    def resolve(self, name_or_id: str) -> DeviceId:
        """A device id from a node name or id; KeyError naming the unknown node."""
        if name_or_id in self.devices:
            return name_or_id
        for device in self.devices.values():
            if device.name == name_or_id:
                return device.device_id
        raise KeyError(f"no node {name_or_id!r} in the topology")


@dataclass(frozen=True)
class QoS:
    """ETSI 015 `app_qos` plus `app_priority` (higher wins)."""

    min_bandwidth: int = 0
    max_bandwidth: int = 0
    priority: int = 0
    ttl: int = 0
    jitter: int = 0

    def __post_init__(self) -> None:
        for name in ("min_bandwidth", "max_bandwidth", "priority", "ttl", "jitter"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"QoS {name} must be a uint32, got {value}")
        if self.max_bandwidth and self.max_bandwidth < self.min_bandwidth:
            raise ValueError(
                f"QoS max_bandwidth {self.max_bandwidth} is below min_bandwidth {self.min_bandwidth}"
            )

    @property
    def wanted(self) -> int:
        """The rate to reserve when free: max_bandwidth, or min_bandwidth when no max is set."""
        return max(self.max_bandwidth, self.min_bandwidth)


@dataclass(frozen=True)
class KeyRequest:
    """A key association wanted between two nodes (and their SAEs)."""

    src: DeviceId
    dst: DeviceId
    server_app_id: str = ""  # master SAE
    client_app_ids: tuple[str, ...] = ()  # slave SAE(s)
    qos: QoS = QoS()
    forced_path: tuple[DeviceId, ...] | None = None
    # qkdsdn-node key-mode, from the master's key manager; pqc-only needs no QKD path.
    key_mode: KeyMode = KeyMode.QKD_PREFERRED

    @property
    def needs_qkd(self) -> bool:
        return self.key_mode is not KeyMode.PQC_ONLY

    def __post_init__(self) -> None:
        if self.src == self.dst:
            raise ValueError(f"a key request needs two different nodes, got {self.src} twice")
        if self.forced_path is not None and (
            len(self.forced_path) < 2
            or self.forced_path[0] != self.src
            or self.forced_path[-1] != self.dst
        ):
            raise ValueError(
                f"forced path {list(self.forced_path)} must run from {self.src} to {self.dst}"
            )

    @property
    def pair(self) -> str:
        """`master>slave`, the key of `forced_paths` in the lab plan."""
        return f"{self.server_app_id}>{','.join(self.client_app_ids)}"

    def label(self, name_of: Callable[[DeviceId], str]) -> str:
        """`master>slave` for people: a node's name stands in for a missing SAE id."""
        master = self.server_app_id or name_of(self.src)
        return f"{master}>{','.join(self.client_app_ids) or name_of(self.dst)}"


@dataclass(frozen=True)
class Path:
    """Nodes from source to destination and, per hop, the PHYS link used."""

    nodes: tuple[DeviceId, ...]
    links: tuple[LinkId, ...]

    def __post_init__(self) -> None:
        if len(self.nodes) != len(self.links) + 1:
            raise ValueError("a path has one link fewer than it has nodes")

    @property
    def hops(self) -> int:
        return len(self.links)


@dataclass(frozen=True)
class Reservation:
    """Key rate held by one intent on every link of its path."""

    intent_id: IntentId
    links: tuple[LinkId, ...]
    bandwidth: int
    priority: int = 0


@dataclass(frozen=True)
class Reservations:
    """The ledger of reserved rate, keyed by intent."""

    by_intent: Mapping[IntentId, Reservation] = field(default_factory=dict)

    def reserved_on(self, link: LinkId, excluding: frozenset[IntentId] = frozenset()) -> int:
        return sum(
            r.bandwidth
            for r in self.by_intent.values()
            if link in r.links and r.intent_id not in excluding
        )

    def on_link(self, link: LinkId) -> list[Reservation]:
        return [r for r in self.by_intent.values() if link in r.links]

    def with_(self, reservation: Reservation) -> Reservations:
        updated = dict(self.by_intent)
        updated[reservation.intent_id] = reservation
        return Reservations(updated)

    def without(self, *intent_ids: IntentId) -> Reservations:
        return Reservations({k: v for k, v in self.by_intent.items() if k not in intent_ids})


@dataclass(frozen=True)
class Decision:
    """The outcome of admission: a path and a reservation, or a reason."""

    admitted: bool
    path: Path | None = None
    bandwidth: int = 0
    preempted: tuple[IntentId, ...] = ()
    reason: str = ""

    @staticmethod
    def reject(reason: str) -> Decision:
        return Decision(admitted=False, reason=reason)


@dataclass(frozen=True)
class Intent:
    """A key association the controller manages, and where it stands."""

    intent_id: IntentId
    request: KeyRequest
    state: IntentState
    path: Path | None = None
    bandwidth: int = 0
    reason: str = ""

    @staticmethod
    def new_id() -> IntentId:
        return str(uuid.uuid4())

    def reservation(self) -> Reservation | None:
        if self.path is None or self.state not in (IntentState.INSTALLED, IntentState.INSTALLING):
            return None
        return Reservation(
            self.intent_id, self.path.links, self.bandwidth, self.request.qos.priority
        )
