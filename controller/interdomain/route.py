"""The domain path of an inter-domain request (pure): fewest domains, then most key rate.

Chosen on the abstract views only: the path vector of the neighbours' views says which
domains lead to the slave SAE; each domain's view names its borders toward the previous and
the next domain on the path and the rate between them. Two domains may meet at several border
sites: every pair of borders at one site (a border's `peer_node`, or this domain's `partners`)
is a way across, and the routes are ranked so that the next one can be tried when a domain
refuses the first (a border out of service, its links down).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from controller.interdomain.view import DomainView


@dataclass(frozen=True)
class Segment:
    """What one domain after the origin is asked to carry: ingress (None: the master SAE is
    there) to egress (None: the slave SAE is there)."""

    domain: str
    ingress: str | None
    egress: str | None


@dataclass(frozen=True)
class DomainRoute:
    domains: tuple[str, ...]  # the origin first
    segments: tuple[Segment, ...]  # one per domain after the origin
    rate_bps: int  # the least available rate the views show along it
    egress: str | None = None  # the origin's own border it leaves by (None: not chosen here)

    @property
    def borders(self) -> frozenset[str]:
        """Every border node the route crosses (its own and the other domains')."""
        nodes = (
            {self.egress} | {s.ingress for s in self.segments} | {s.egress for s in self.segments}
        )
        return frozenset(n for n in nodes if n is not None)


def candidate_paths(
    own: str,
    neighbours: list[str],
    views: Mapping[str, DomainView],
    slave: str,
) -> list[tuple[str, ...]]:
    """Domain paths (origin first) that the neighbours' views say reach `slave`."""
    found: list[tuple[str, ...]] = []
    for neighbour in neighbours:
        view = views.get(neighbour)
        if view is None:
            continue
        if slave in view.saes:
            found.append((own, neighbour))
        path = view.reach.get(slave)
        if path is not None and own not in path and neighbour not in path:
            found.append((own, neighbour, *path))
    return found


@dataclass(frozen=True)
class BorderSide:
    """One domain's borders toward another, each with the node it meets (None: unknown)."""

    borders: tuple[tuple[str, str | None], ...]


def _side(view: DomainView, toward: str) -> BorderSide:
    return BorderSide(tuple((b.node, b.peer_node) for b in view.borders if b.peer_domain == toward))


def crossings(left: BorderSide, right: BorderSide, avoid: frozenset[str]) -> list[tuple[str, str]]:
    """The border pairs (left, right) at one site: a pair is at one site when each side that
    names its partner names the other; when neither does, every pair is possible."""
    pairs = []
    for (a, a_partner), (b, b_partner) in itertools.product(left.borders, right.borders):
        if a in avoid or b in avoid:
            continue
        if a_partner is not None and a_partner != b:
            continue
        if b_partner is not None and b_partner != a:
            continue
        pairs.append((a, b))
    return sorted(pairs)


def _routes_on(
    path: tuple[str, ...],
    views: Mapping[str, DomainView],
    slave: str,
    own_side: BorderSide,
    own_rate: Mapping[str, int] | None,
    avoid: frozenset[str],
) -> list[DomainRoute] | str:
    """Every choice of border pairs along one domain path, with its bottleneck rate."""
    for domain in path[1:]:
        if domain not in views:
            return f"no view of domain {domain}"
    options: list[list[tuple[str, str]]] = []
    for index in range(len(path) - 1):
        before, after = path[index], path[index + 1]
        left = own_side if index == 0 else _side(views[before], after)
        right = _side(views[after], before)
        if not left.borders:
            return f"domain {before} shows no border toward {after}"
        if not right.borders:
            return f"domain {after} shows no border toward {before}"
        pairs = crossings(left, right, avoid)
        if not pairs:
            return f"no border site between {before} and {after} is usable"
        options.append(pairs)
    routes = []
    for combo in itertools.product(*options):
        segments = []
        rates = []
        if own_rate is not None:
            rates.append(own_rate.get(combo[0][0], 0))
        for index in range(1, len(path)):
            ingress = combo[index - 1][1]
            egress = combo[index][0] if index < len(combo) else None
            segments.append(Segment(path[index], ingress, egress))
            rates.append(views[path[index]].rate(ingress, egress or slave))
        routes.append(DomainRoute(path, tuple(segments), min(rates, default=0), combo[0][0]))
    return routes


def plan_routes(
    own: str,
    borders: Mapping[str, str],
    views: Mapping[str, DomainView],
    slave: str,
    *,
    partners: Mapping[str, str] | None = None,
    own_rate: Mapping[str, int] | None = None,
    avoid: frozenset[str] = frozenset(),
    egress: str | None = None,
) -> list[DomainRoute] | str:
    """Every way toward `slave`, best first (fewest domains, then the most rate; ties by
    name), or the reason there is none. `borders`: own border node -> peer domain;
    `partners`: own border node -> the peer domain's node at its site (when known);
    `own_rate`: own border -> the rate from the master's node to it; `avoid`: border nodes
    out of service; `egress`: leave by this own border only."""
    if egress is not None:
        if egress not in borders:
            return f"node {egress} is not a border of domain {own}"
        usable = {egress: borders[egress]}
    else:
        usable = dict(borders)
    neighbours = sorted(set(usable.values()))
    known = partners or {}
    routes: list[DomainRoute] = []
    reasons: list[str] = []
    for path in candidate_paths(own, neighbours, views, slave):
        own_side = BorderSide(
            tuple(
                (node, known.get(node)) for node, peer in sorted(usable.items()) if peer == path[1]
            )
        )
        planned = _routes_on(path, views, slave, own_side, own_rate, avoid)
        if isinstance(planned, str):
            reasons.append(planned)
            continue
        routes.extend(planned)
    if not routes:
        why = f"; {'; '.join(dict.fromkeys(reasons))}" if reasons else ""
        via = f" through {', '.join(neighbours)}" if neighbours else ""
        return f"no domain{via} reaches SAE {slave}{why}"
    return sorted(
        routes,
        key=lambda r: (len(r.domains), -r.rate_bps, r.domains, sorted(r.borders)),
    )


def plan_route(
    own: str,
    borders: Mapping[str, str],
    views: Mapping[str, DomainView],
    slave: str,
    egress: str | None = None,
) -> DomainRoute | str:
    """The best domain path toward `slave` (through own border `egress` when given), or the
    reason there is none."""
    routes = plan_routes(own, borders, views, slave, egress=egress)
    return routes if isinstance(routes, str) else routes[0]
