"""Admission control (pure): may the network carry this key request, on which path, at what rate?

Admitted only if every hop's free rate (skr minus what is already reserved) covers the
request's `min_bandwidth`; the reservation is `max_bandwidth` capped by the tightest hop. A
higher-priority request may pre-empt lower-priority intents when the operator allows it.
Every rejection names the hop (or node) that blocks it.
"""

from __future__ import annotations

import itertools

import networkx as nx

from controller.model import (
    Decision,
    DeviceId,
    IntentId,
    KeyRequest,
    LinkStatus,
    Path,
    Reservations,
    TopologySnapshot,
)
from controller.paths import PathPolicy, RouteView, need_of, policy_for


def admit(
    snapshot: TopologySnapshot,
    reservations: Reservations,
    request: KeyRequest,
    policy: PathPolicy,
    allow_preemption: bool = False,
) -> Decision:
    """The decision for `request` (see the module's docstring)."""
    problem = _endpoint_problem(snapshot, request)
    if problem:
        return Decision.reject(problem)
    chosen = policy_for(request, policy)
    view = RouteView(snapshot, reservations)
    paths = chosen.candidates(view, request, 1)
    if paths:
        return Decision(True, paths[0], _bandwidth(view, request, paths[0]))
    if allow_preemption:
        decision = _admit_preempting(snapshot, reservations, request, chosen)
        if decision is not None:
            return decision
    return Decision.reject(explain_rejection(view, request))


def _endpoint_problem(snapshot: TopologySnapshot, request: KeyRequest) -> str:
    for role, node in (("source", request.src), ("destination", request.dst)):
        device = snapshot.devices.get(node)
        if device is None:
            return f"{role} node {node} is not in the topology"
        if not device.available:
            return f"{role} node {device.name} is unavailable"
    return ""


def _bandwidth(view: RouteView, request: KeyRequest, path: Path) -> int:
    tightest = min(view.free(view.snapshot.links[link]) for link in path.links)
    return min(request.qos.wanted, tightest)


def _admit_preempting(
    snapshot: TopologySnapshot,
    reservations: Reservations,
    request: KeyRequest,
    policy: PathPolicy,
) -> Decision | None:
    """Find a path as if every lower-priority intent were gone, then pre-empt only what the
    hops of that path need: lowest priority first, then the largest reservation."""
    priority = request.qos.priority
    lower = frozenset(r.intent_id for r in reservations.by_intent.values() if r.priority < priority)
    if not lower:
        return None
    optimistic = RouteView(snapshot, reservations, ignored=lower)
    paths = policy.candidates(optimistic, request, 1)
    if not paths:
        return None
    path = paths[0]
    need = need_of(request)
    preempted: list[IntentId] = []
    for link_id in path.links:
        link = snapshot.links[link_id]
        view = RouteView(snapshot, reservations, ignored=frozenset(preempted))
        victims = sorted(
            (r for r in reservations.on_link(link_id) if r.intent_id in lower),
            key=lambda r: (r.priority, -r.bandwidth, r.intent_id),
        )
        free = view.free(link)
        for victim in victims:
            if free >= need:
                break
            if victim.intent_id not in preempted:
                preempted.append(victim.intent_id)
                free += victim.bandwidth
    final = RouteView(snapshot, reservations, ignored=frozenset(preempted))
    if any(final.free(snapshot.links[link]) < need for link in path.links):
        return None
    return Decision(True, path, _bandwidth(final, request, path), preempted=tuple(preempted))


def _hop_name(snapshot: TopologySnapshot, a: DeviceId, b: DeviceId) -> str:
    return f"{snapshot.name_of(a)}–{snapshot.name_of(b)}"


def explain_rejection(view: RouteView, request: KeyRequest) -> str:
    """Why no path carries the request, naming the blocking hop."""
    snapshot = view.snapshot
    need = need_of(request)
    if request.forced_path is not None:
        return _explain_forced(view, request.forced_path, need)
    graph = view.routing()
    try:
        nodes = nx.bidirectional_shortest_path(graph, request.src, request.dst)
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        down = [
            f"{_hop_name(snapshot, link.a, link.b)} ({link.status.value})"
            for link in snapshot.links.values()
            if link.status is not LinkStatus.ACTIVE
        ]
        suffix = f"; links not active: {', '.join(sorted(down))}" if down else ""
        return (
            f"no usable path between {snapshot.name_of(request.src)} and "
            f"{snapshot.name_of(request.dst)}{suffix}"
        )
    path = view.path_of(nodes)
    assert path is not None  # nodes came from the routing graph
    for (a, b), link_id in zip(itertools.pairwise(path.nodes), path.links, strict=True):
        free = view.free(snapshot.links[link_id])
        if free < need:
            return (
                f"hop {_hop_name(snapshot, a, b)} (link {link_id}) has {free} bit/s free, "
                f"the request needs min_bandwidth {request.qos.min_bandwidth} bit/s "
                f"(and no other path has it on every hop)"
            )
    return (
        f"no path between {snapshot.name_of(request.src)} and {snapshot.name_of(request.dst)} "
        f"has {need} bit/s free on every hop"
    )


def _explain_forced(view: RouteView, nodes: tuple[DeviceId, ...], need: int) -> str:
    snapshot = view.snapshot
    for a, b in itertools.pairwise(nodes):
        for end in (a, b):
            if end not in snapshot.devices:
                return f"forced path: node {end} is not in the topology"
            if not snapshot.devices[end].available:
                return f"forced path: node {snapshot.name_of(end)} is unavailable"
        link = view.best_link(a, b)
        if link is None:
            return f"forced path: hop {_hop_name(snapshot, a, b)} has no active link"
        if view.free(link) < need:
            return (
                f"forced path: hop {_hop_name(snapshot, a, b)} (link {link.qkdl_id}) has "
                f"{view.free(link)} bit/s free, the request needs {need} bit/s"
            )
    return "forced path cannot carry the request"
