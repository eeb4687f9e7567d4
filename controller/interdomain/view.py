"""A domain's abstract view (pure): borders, SAEs, reach and border rates, never internals.

What one controller shows its peers (`GET /interdomain/view`), in the spirit of ETSI GS QKD
018: its border nodes and the peer domain each meets, the SAEs it serves, which foreign SAEs
can be reached through it with the domain path after it (a path vector learned from its
neighbours' views, loop-free), and the key rate available between its borders, and between a
border and each of its SAEs (named by the SAE, not by the node serving it). Internal node
names, node or link ids and paths never appear.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from controller.model import DeviceId, Reservations, TopologySnapshot
from controller.paths import RouteView


class ViewError(ValueError):
    """A peer's view is malformed; the message names the field."""


@dataclass(frozen=True)
class Border:
    node: str  # the border node's name (public: the trusted site both domains share)
    peer_domain: str
    peer_node: str | None = None  # the peer domain's node at the same site (None: not said)

    def to_json(self) -> dict[str, Any]:
        data = {"node": self.node, "peer_domain": self.peer_domain}
        if self.peer_node is not None:
            data["peer_node"] = self.peer_node
        return data


@dataclass(frozen=True)
class BorderRate:
    a: str  # a border node, or an SAE of the domain
    b: str
    available_bps: int


@dataclass(frozen=True)
class DomainView:
    domain: str
    borders: tuple[Border, ...] = ()
    saes: tuple[str, ...] = ()
    reach: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    border_rates: tuple[BorderRate, ...] = ()
    updated: float = 0.0

    def borders_to(self, peer: str) -> list[str]:
        return sorted(b.node for b in self.borders if b.peer_domain == peer)

    def rate(self, a: str, b: str) -> int:
        """Available rate between two of its ends (borders or SAEs); 0 when not listed."""
        for rate in self.border_rates:
            if {rate.a, rate.b} == {a, b}:
                return rate.available_bps
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "borders": [b.to_json() for b in self.borders],
            "saes": list(self.saes),
            "reach": {sae: list(path) for sae, path in sorted(self.reach.items())},
            "border_rates": [
                {"from": r.a, "to": r.b, "available_bps": r.available_bps}
                for r in self.border_rates
            ],
            "updated": self.updated,
        }

    @staticmethod
    def from_json(data: Any) -> DomainView:
        """The view a peer sent; ViewError naming the first bad field."""
        if not isinstance(data, dict):
            raise ViewError("the view must be a JSON object")
        domain = _name(data.get("domain"), "domain")
        borders = tuple(
            Border(
                _name(b.get("node"), f"borders[{i}].node"),
                _name(b.get("peer_domain"), f"borders[{i}].peer_domain"),
                None
                if b.get("peer_node") is None
                else _name(b.get("peer_node"), f"borders[{i}].peer_node"),
            )
            for i, b in enumerate(_objects(data.get("borders", []), "borders"))
        )
        saes = tuple(
            _name(s, f"saes[{i}]") for i, s in enumerate(_list(data.get("saes", []), "saes"))
        )
        raw_reach = data.get("reach", {})
        if not isinstance(raw_reach, dict):
            raise ViewError("reach must be an object of SAE to domain path")
        reach = {
            _name(sae, "reach"): tuple(
                _name(d, f"reach.{sae}[{i}]") for i, d in enumerate(_list(path, f"reach.{sae}"))
            )
            for sae, path in raw_reach.items()
        }
        rates = []
        for i, r in enumerate(_objects(data.get("border_rates", []), "border_rates")):
            value = r.get("available_bps")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ViewError(f"border_rates[{i}].available_bps must be an integer >= 0")
            rates.append(
                BorderRate(
                    _name(r.get("from"), f"border_rates[{i}].from"),
                    _name(r.get("to"), f"border_rates[{i}].to"),
                    value,
                )
            )
        updated = data.get("updated", 0.0)
        if isinstance(updated, bool) or not isinstance(updated, int | float):
            raise ViewError("updated must be a number (unix seconds)")
        return DomainView(domain, borders, saes, reach, tuple(rates), float(updated))


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ViewError(f"{where} must be a non-empty string")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ViewError(f"{where} must be a list")
    return value


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    items = _list(value, where)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ViewError(f"{where}[{i}] must be an object")
    return items


def reach_of(
    own: str,
    borders: Mapping[str, str],
    own_saes: frozenset[str],
    peer_views: Mapping[str, DomainView],
) -> dict[str, tuple[str, ...]]:
    """Foreign SAE -> the shortest domain path after `own` that serves it, learned from the
    views of the neighbours (peers it shares a border with); a path through `own` is a loop
    and ignored, as is a neighbour whose view names another domain."""
    best: dict[str, tuple[str, ...]] = {}

    def offer(sae: str, path: tuple[str, ...]) -> None:
        if sae in own_saes or own in path or len(set(path)) != len(path):
            return
        known = best.get(sae)
        if known is None or (len(path), path) < (len(known), known):
            best[sae] = path

    for neighbour in sorted(set(borders.values())):
        view = peer_views.get(neighbour)
        if view is None or view.domain != neighbour:
            continue
        for sae in view.saes:
            offer(sae, (neighbour,))
        for sae, path in view.reach.items():
            offer(sae, (neighbour, *path))
    return best


def widest_rates(
    route: RouteView, ends: Mapping[str, DeviceId], pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """For each pair of named ends, the most free rate one path between them offers (the
    bottleneck of the widest path: on a maximum spanning tree of the free rates)."""
    graph = nx.Graph()
    routing = route.routing()
    graph.add_nodes_from(routing.nodes)
    for a, b, data in routing.edges(data=True):
        graph.add_edge(a, b, free=route.edge_free(data))
    tree = nx.maximum_spanning_tree(graph, weight="free")
    rates: dict[tuple[str, str], int] = {}
    for a, b in pairs:
        x, y = ends.get(a), ends.get(b)
        if x is None or y is None or x not in tree or y not in tree:
            rates[a, b] = 0
            continue
        try:
            nodes = nx.shortest_path(tree, x, y)
        except nx.NetworkXNoPath:
            rates[a, b] = 0
            continue
        rates[a, b] = min(
            (int(tree.edges[u, v]["free"]) for u, v in itertools.pairwise(nodes)), default=0
        )
    return rates


def compute_view(
    own: str,
    borders: Mapping[str, str],
    saes: Mapping[str, str],
    snapshot: TopologySnapshot,
    reservations: Reservations,
    peer_views: Mapping[str, DomainView],
    now: float,
    partners: Mapping[str, str] | None = None,
) -> DomainView:
    """This domain's view: `borders` border node -> peer domain, `saes` own SAE -> node name,
    `partners` border node -> the peer domain's node at its site (when known); free rates as
    admission counts them (skr minus what intents and holds reserve)."""
    names = {d.name: d.device_id for d in snapshot.devices.values()}
    ends: dict[str, DeviceId] = {}
    for node in borders:
        if node in names:
            ends[node] = names[node]
    for sae, node in saes.items():
        if node in names:
            ends[sae] = names[node]
    border_names = sorted(borders)
    pairs = list(itertools.combinations(border_names, 2))
    pairs += [(b, s) for b in border_names for s in sorted(saes)]
    rates = widest_rates(RouteView(snapshot, reservations), ends, pairs)
    return DomainView(
        own,
        tuple(Border(node, borders[node], (partners or {}).get(node)) for node in border_names),
        tuple(sorted(saes)),
        reach_of(own, borders, frozenset(saes), peer_views),
        tuple(BorderRate(a, b, rates[a, b]) for a, b in pairs),
        now,
    )
