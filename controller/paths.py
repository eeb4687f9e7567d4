"""Path policies (pure): fewest hops, key-aware, k-shortest alternatives (Yen), forced paths.

A policy sees a `RouteView`: the topology snapshot plus the rate already reserved on each link.
It returns candidate paths, best first, whose every hop has at least `need` bit/s free.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import networkx as nx

from controller.model import (
    DeviceId,
    KeyRequest,
    Link,
    LinkId,
    Path,
    Reservations,
    TopologySnapshot,
)

EdgeData = Mapping[str, Any]


@dataclass(frozen=True)
class RouteView:
    """What a policy needs to rank paths: links, and free rate = skr minus reservations."""

    snapshot: TopologySnapshot
    reservations: Reservations = field(default_factory=Reservations)
    ignored: frozenset[str] = frozenset()  # intents whose reservations count as free (pre-emption)

    @property
    def _graph(self) -> nx.Graph:
        return self.snapshot.routing

    @cached_property
    def _reserved(self) -> dict[LinkId, int]:
        totals: dict[LinkId, int] = {}
        for reservation in self.reservations.by_intent.values():
            if reservation.intent_id in self.ignored:
                continue
            for link in reservation.links:
                totals[link] = totals.get(link, 0) + reservation.bandwidth
        return totals

    def routing(self) -> nx.Graph:
        return self._graph

    def free(self, link: Link) -> int:
        """Rate not yet promised to an intent: skr minus reservations.

        Not eskr: the agents report eskr = skr minus the key drawn over the last seconds, and
        key managers draw at the full rate while they fill their link-key pools (eskr stays
        0 for a minute on a 14 kbit/s link), though that key serves the same applications.
        Reserving on skr counts each association once, whether or not it draws right now."""
        return max(0, link.skr - self._reserved.get(link.qkdl_id, 0))

    def best_link(self, a: DeviceId, b: DeviceId) -> Link | None:
        """The usable link between a and b with the most free rate."""
        if not self._graph.has_edge(a, b):
            return None
        links: tuple[Link, ...] = self._graph.edges[a, b]["links"]
        return max(links, key=self.free)

    def edge_free(self, data: EdgeData) -> int:
        return max(self.free(link) for link in data["links"])

    def path_of(self, nodes: Iterable[DeviceId]) -> Path | None:
        """The Path over these nodes, using each hop's best link; None if a hop is unusable."""
        node_list = tuple(nodes)
        links = []
        for a, b in itertools.pairwise(node_list):
            link = self.best_link(a, b)
            if link is None:
                return None
            links.append(link.qkdl_id)
        return Path(node_list, tuple(links))

    def capacity_view(self, need: int) -> nx.Graph:
        """The routing graph without hops whose free rate is below `need`."""

        def keep(a: DeviceId, b: DeviceId) -> bool:
            return self.edge_free(self._graph.edges[a, b]) >= need

        return nx.subgraph_view(self._graph, filter_edge=keep)


def need_of(request: KeyRequest) -> int:
    """Free rate every hop must have: the minimum bandwidth, and some key at all."""
    return max(request.qos.min_bandwidth, 1)


class PathPolicy(Protocol):
    """Ranks the paths of a request; only paths whose every hop has `need` free."""

    @property
    def name(self) -> str: ...

    def candidates(self, view: RouteView, request: KeyRequest, k: int = 1) -> list[Path]: ...


def _endpoints_routable(view: RouteView, request: KeyRequest) -> bool:
    graph = view.routing()
    return request.src in graph and request.dst in graph


HopCost = Callable[[DeviceId, DeviceId, EdgeData], float | None]  # None hides the hop


def _k_paths(view: RouteView, request: KeyRequest, k: int, cost: HopCost | None) -> list[Path]:
    """Best path (BFS, or A* when hops have costs); Yen's k-shortest for k > 1.

    Every hop costs at least 1, so the rest of the way from a node costs at least
    min(its direct hop to the destination, 2) (2 when it has none): a consistent heuristic,
    with which A* expands little more than the source and the best middle nodes."""
    need = need_of(request)
    src, dst = request.src, request.dst
    graph = view.routing()
    try:
        if k == 1:
            if cost is None:
                nodes = nx.bidirectional_shortest_path(view.capacity_view(need), src, dst)
            else:
                near = graph[dst]

                def remaining(node: DeviceId, target: DeviceId) -> float:
                    if node == dst:
                        return 0.0
                    edge = near.get(node)
                    direct = None if edge is None else cost(node, dst, edge)
                    return 2.0 if direct is None else min(direct, 2.0)

                nodes = nx.astar_path(graph, src, dst, heuristic=remaining, weight=cost)
            found = [nodes]
        else:
            found = list(
                itertools.islice(
                    nx.shortest_simple_paths(view.capacity_view(need), src, dst, cost), k
                )
            )
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return []
    return [p for p in (view.path_of(nodes) for nodes in found) if p is not None]


@dataclass(frozen=True)
class FewestHops:
    """Shortest path in hops among the hops that can carry the request."""

    name: str = "fewest-hops"

    def candidates(self, view: RouteView, request: KeyRequest, k: int = 1) -> list[Path]:
        if not _endpoints_routable(view, request):
            return []
        return _k_paths(view, request, k, None)


@dataclass(frozen=True)
class KeyAware:
    """Cost per hop grows as its free key rate shrinks and its key pool runs low.

    cost = 1 + congestion_weight * wanted / free, times (1 + shortfall of the pool below the
    ready level); so an empty-ish hop is avoided while a longer, idle path exists.
    """

    name: str = "key-aware"
    congestion_weight: float = 4.0
    pool_ready_bits: int = 150_000

    def hop_cost(self, view: RouteView, request: KeyRequest, data: EdgeData) -> float | None:
        """The cost of a hop for this request; None when no link of the hop has `need` free."""
        return self.cost_function(view, request)("", "", data)

    def cost_function(self, view: RouteView, request: KeyRequest) -> HopCost:
        need = need_of(request)
        scale = self.congestion_weight * max(request.qos.wanted, need)
        ready = self.pool_ready_bits
        free = view.free

        def cost(a: DeviceId, b: DeviceId, data: EdgeData) -> float | None:
            links: tuple[Link, ...] = data["links"]
            link = links[0] if len(links) == 1 else max(links, key=free)
            available = free(link)
            if available < need:
                return None
            value = 1.0 + scale / available
            pool = link.pool_level_bits
            if pool is not None and pool < ready:
                value *= 1.0 + (ready - pool) / ready
            return value

        return cost

    def candidates(self, view: RouteView, request: KeyRequest, k: int = 1) -> list[Path]:
        if not _endpoints_routable(view, request):
            return []
        return _k_paths(view, request, k, self.cost_function(view, request))


@dataclass(frozen=True)
class ForcedPath:
    """Always the given node sequence (the reference experiment's indirect path), if it can carry
    the request; no alternative otherwise."""

    nodes: tuple[DeviceId, ...]
    name: str = "forced"

    def candidates(self, view: RouteView, request: KeyRequest, k: int = 1) -> list[Path]:
        if (self.nodes[0], self.nodes[-1]) != (request.src, request.dst):
            return []
        path = view.path_of(self.nodes)
        if path is None:
            return []
        need = need_of(request)
        if any(view.free(view.snapshot.links[link]) < need for link in path.links):
            return []
        return [path]


POLICIES: Mapping[str, Callable[[], PathPolicy]] = {
    "fewest-hops": FewestHops,
    "key-aware": KeyAware,
}


def policy_named(name: str) -> PathPolicy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown path policy {name!r}; known: {', '.join(POLICIES)}") from None


def policy_for(request: KeyRequest, policy: PathPolicy) -> PathPolicy:
    """The request's forced path wins over the service's policy."""
    if request.forced_path is not None:
        return ForcedPath(request.forced_path)
    return policy


def find_paths(
    snapshot: TopologySnapshot,
    request: KeyRequest,
    policy: PathPolicy,
    k: int = 1,
    reservations: Reservations | None = None,
) -> list[Path]:
    """Up to k candidate paths, best first (Yen's k-shortest under the policy's costs)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    view = RouteView(snapshot, reservations or Reservations())
    return policy_for(request, policy).candidates(view, request, k)
