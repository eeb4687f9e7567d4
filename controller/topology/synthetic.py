"""Snapshots from plain networkx graphs, for tests, benchmarks and studies (no NETCONF)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable
from typing import Any

import networkx as nx

from controller.model import Device, DeviceId, Link, TopologySnapshot

_NS = uuid.UUID("3f6d2a40-8b8e-4c1e-9c55-1f8a2b7d0e11")


def synthetic_id(kind: str, name: Hashable) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{name}"))


def snapshot_from_graph(
    graph: nx.Graph,
    rate: Callable[[Any, Any, dict[str, Any]], int] = lambda a, b, data: int(
        data.get("eskr", 10_000)
    ),
    names: Callable[[Any], str] = str,
) -> tuple[TopologySnapshot, dict[Any, DeviceId]]:
    """A snapshot with one device per node and one ACTIVE link per edge (skr = eskr = rate);
    also returns the map from graph node to device id."""
    ids = {node: synthetic_id("node", node) for node in graph.nodes}
    devices = {ids[n]: Device(ids[n], names(n)) for n in graph.nodes}
    links = {}
    for a, b, data in graph.edges(data=True):
        link_id = synthetic_id("link", f"{ids[a]}:{ids[b]}")
        eskr = rate(a, b, data)
        links[link_id] = Link(link_id, ids[a], ids[b], skr=eskr, eskr=eskr)
    return TopologySnapshot(devices, links), ids
