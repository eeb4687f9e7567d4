"""Forced paths from the plan or the command line, resolved against the topology."""

from __future__ import annotations

import networkx as nx

from controller.api import ForcedPaths
from controller.model import KeyRequest
from controller.topology.synthetic import snapshot_from_graph


def test_a_pair_in_the_plan_pins_its_path_by_node_names() -> None:
    snapshot, ids = snapshot_from_graph(nx.cycle_graph(["qnode1", "qnode2", "qnode3"]))
    forced = ForcedPaths({"app1>app2": ("qnode1", "qnode2", "qnode3")})
    request = KeyRequest(ids["qnode1"], ids["qnode3"], "app1", ("app2",))
    assert forced.lookup(request, snapshot) == (ids["qnode1"], ids["qnode2"], ids["qnode3"])
    # SAE ids written as URIs still match the plan's names
    uri = KeyRequest(ids["qnode1"], ids["qnode3"], "sae:app1", ("urn:x:app2",))
    assert forced.lookup(uri, snapshot) == (ids["qnode1"], ids["qnode2"], ids["qnode3"])
    # other pairs, or a path that does not join the request's nodes, are left alone
    other = KeyRequest(ids["qnode1"], ids["qnode3"], "app3", ("app4",))
    assert forced.lookup(other, snapshot) is None
    reverse = KeyRequest(ids["qnode3"], ids["qnode1"], "app1", ("app2",))
    assert forced.lookup(reverse, snapshot) is None


def test_a_command_line_path_applies_to_requests_between_its_ends() -> None:
    snapshot, ids = snapshot_from_graph(nx.cycle_graph(["qnode1", "qnode2", "qnode3"]))
    forced = ForcedPaths(default=("qnode1", "qnode2", "qnode3"))
    request = KeyRequest(ids["qnode1"], ids["qnode3"], "x", ("y",))
    assert forced.lookup(request, snapshot) == (ids["qnode1"], ids["qnode2"], ids["qnode3"])
    unknown = ForcedPaths(default=("qnode1", "nowhere", "qnode3"))
    assert unknown.lookup(request, snapshot) is None
