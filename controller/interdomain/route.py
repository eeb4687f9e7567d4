"""The domain path of an inter-domain request (pure): fewest domains, then most key rate.

Chosen on the abstract views only: the path vector of the neighbours' views says which
domains lead to the slave SAE, and each domain's view names its border toward the previous
and the next domain on the path (its ingress and egress) and the rate between them.
"""

from __future__ import annotations

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


def segments_of(
    path: tuple[str, ...], views: Mapping[str, DomainView], slave: str
) -> tuple[tuple[Segment, ...], int] | str:
    """Ingress and egress in every domain after the origin, and the path's rate; or why not."""
    segments: list[Segment] = []
    rate: int | None = None
    for index in range(1, len(path)):
        domain, before = path[index], path[index - 1]
        after = path[index + 1] if index + 1 < len(path) else None
        view = views.get(domain)
        if view is None:
            return f"no view of domain {domain}"
        ingresses = view.borders_to(before)
        if not ingresses:
            return f"domain {domain} shows no border toward {before}"
        egresses: list[str | None] = list(view.borders_to(after)) if after else [None]
        if not egresses:
            return f"domain {domain} shows no border toward {after}"
        best = max(
            ((i, e, view.rate(i, e or slave)) for i in ingresses for e in egresses),
            key=lambda choice: choice[2],
        )
        segments.append(Segment(domain, best[0], best[1]))
        rate = best[2] if rate is None else min(rate, best[2])
    return tuple(segments), rate or 0


def plan_route(
    own: str,
    borders: Mapping[str, str],
    views: Mapping[str, DomainView],
    slave: str,
    egress: str | None = None,
) -> DomainRoute | str:
    """The best domain path toward `slave` (through own border `egress` when given), or the
    reason there is none."""
    if egress is not None:
        if egress not in borders:
            return f"node {egress} is not a border of domain {own}"
        neighbours = [borders[egress]]
    else:
        neighbours = sorted(set(borders.values()))
    routes: list[DomainRoute] = []
    reasons: list[str] = []
    for path in candidate_paths(own, neighbours, views, slave):
        planned = segments_of(path, views, slave)
        if isinstance(planned, str):
            reasons.append(planned)
            continue
        routes.append(DomainRoute(path, *planned))
    if not routes:
        why = f"; {'; '.join(reasons)}" if reasons else ""
        via = f" through {', '.join(neighbours)}" if neighbours else ""
        return f"no domain{via} reaches SAE {slave}{why}"
    return min(routes, key=lambda r: (len(r.domains), -r.rate_bps, r.domains))
