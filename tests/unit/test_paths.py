"""Path policies: fewest hops, key-aware, k-shortest, forced; every small atlas graph."""

from __future__ import annotations

import itertools
from dataclasses import replace

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model import KeyRequest, Path, QoS, Reservation, Reservations, TopologySnapshot
from controller.paths import FewestHops, KeyAware, RouteView, find_paths, policy_named
from controller.topology.synthetic import snapshot_from_graph


def triangle(direct_rate: int = 10_000) -> tuple[TopologySnapshot, dict[str, str]]:
    graph = nx.Graph()
    graph.add_edge("n1", "n2", eskr=10_000)
    graph.add_edge("n2", "n3", eskr=10_000)
    graph.add_edge("n1", "n3", eskr=direct_rate)
    return snapshot_from_graph(graph)


def assert_valid(snapshot: TopologySnapshot, path: Path, src: str, dst: str) -> None:
    assert path.nodes[0] == src and path.nodes[-1] == dst
    assert len(set(path.nodes)) == len(path.nodes), "a path never revisits a node"
    for (a, b), link_id in zip(itertools.pairwise(path.nodes), path.links, strict=True):
        link = snapshot.links[link_id]
        assert {link.a, link.b} == {a, b}


def test_fewest_hops_takes_the_direct_link() -> None:
    snap, ids = triangle()
    request = KeyRequest(ids["n1"], ids["n3"])
    [path] = find_paths(snap, request, FewestHops())
    assert path.nodes == (ids["n1"], ids["n3"])


def test_fewest_hops_avoids_a_hop_without_free_rate() -> None:
    snap, ids = triangle()
    direct = snap.links_between(ids["n1"], ids["n3"])[0]
    taken = Reservations({"x": Reservation("x", (direct.qkdl_id,), 9_500)})
    request = KeyRequest(ids["n1"], ids["n3"], qos=QoS(min_bandwidth=1_000))
    [path] = find_paths(snap, request, FewestHops(), reservations=taken)
    assert path.nodes == (ids["n1"], ids["n2"], ids["n3"])


def test_key_aware_prefers_the_idle_detour_over_a_congested_direct_link() -> None:
    snap, ids = triangle(direct_rate=2_000)
    request = KeyRequest(ids["n1"], ids["n3"], qos=QoS(min_bandwidth=500, max_bandwidth=1_000))
    [fewest] = find_paths(snap, request, FewestHops())
    [aware] = find_paths(snap, request, KeyAware())
    assert fewest.hops == 1
    assert aware.nodes == (ids["n1"], ids["n2"], ids["n3"])


def test_key_aware_counts_low_pools() -> None:
    snap, ids = triangle()
    policy = KeyAware()
    request = KeyRequest(ids["n1"], ids["n3"], qos=QoS(max_bandwidth=1_000))
    view = RouteView(snap)
    link = snap.links_between(ids["n1"], ids["n3"])[0]
    full = policy.hop_cost(view, request, {"links": (link,)})
    low = policy.hop_cost(view, request, {"links": (replace(link, pool_level_bits=0),)})
    assert full is not None and low is not None
    assert low == pytest.approx(2 * full)
    starved = KeyRequest(ids["n1"], ids["n3"], qos=QoS(min_bandwidth=20_000))
    assert policy.hop_cost(view, starved, {"links": (link,)}) is None


def test_k_shortest_lists_alternatives_best_first() -> None:
    snap, ids = triangle()
    request = KeyRequest(ids["n1"], ids["n3"])
    paths = find_paths(snap, request, FewestHops(), k=3)
    assert [p.hops for p in paths] == [1, 2]
    for path in paths:
        assert_valid(snap, path, ids["n1"], ids["n3"])


def test_forced_path_is_honoured_and_checked() -> None:
    snap, ids = triangle()
    nodes = (ids["n1"], ids["n2"], ids["n3"])
    request = KeyRequest(ids["n1"], ids["n3"], forced_path=nodes)
    [path] = find_paths(snap, request, FewestHops())
    assert path.nodes == nodes
    # a forced hop that does not exist gives no path
    graph = nx.path_graph(["a", "b", "c"])
    line, lids = snapshot_from_graph(graph)
    impossible = KeyRequest(lids["a"], lids["c"], forced_path=(lids["a"], lids["c"]))
    assert find_paths(line, impossible, FewestHops()) == []


def test_unknown_policy_and_bad_k_are_refused() -> None:
    snap, ids = triangle()
    with pytest.raises(ValueError, match="unknown path policy"):
        policy_named("cheapest")
    with pytest.raises(ValueError, match="k must be"):
        find_paths(snap, KeyRequest(ids["n1"], ids["n2"]), FewestHops(), k=0)


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="two different nodes"):
        KeyRequest("a", "a")
    with pytest.raises(ValueError, match="forced path"):
        KeyRequest("a", "b", forced_path=("b", "a"))
    with pytest.raises(ValueError, match="below min_bandwidth"):
        QoS(min_bandwidth=10, max_bandwidth=5)
    with pytest.raises(ValueError, match="uint32"):
        QoS(priority=-1)


@pytest.mark.parametrize("policy", [FewestHops(), KeyAware()], ids=lambda p: p.name)
def test_every_small_atlas_graph_gives_valid_paths_exactly_when_connected(
    policy: FewestHops | KeyAware,
) -> None:
    for graph in nx.graph_atlas_g()[1:]:
        snap, ids = snapshot_from_graph(graph, rate=lambda a, b, d: 1_000 + 10 * (a + b))
        for u, v in itertools.combinations(graph.nodes, 2):
            request = KeyRequest(ids[u], ids[v], qos=QoS(min_bandwidth=100))
            paths = find_paths(snap, request, policy)
            assert bool(paths) == nx.has_path(graph, u, v)
            for path in paths:
                assert_valid(snap, path, ids[u], ids[v])
            if paths and policy.name == "fewest-hops":
                assert paths[0].hops == nx.shortest_path_length(graph, u, v)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=3, max_value=9),
    p=st.floats(min_value=0.2, max_value=0.9),
    seed=st.integers(min_value=0, max_value=10_000),
    k=st.integers(min_value=1, max_value=4),
)
def test_k_shortest_paths_are_distinct_valid_and_ordered(
    n: int, p: float, seed: int, k: int
) -> None:
    graph = nx.gnp_random_graph(n, p, seed=seed)
    snap, ids = snapshot_from_graph(graph)
    if not nx.has_path(graph, 0, n - 1):
        assert find_paths(snap, KeyRequest(ids[0], ids[n - 1]), FewestHops(), k=k) == []
        return
    paths = find_paths(snap, KeyRequest(ids[0], ids[n - 1]), FewestHops(), k=k)
    assert 1 <= len(paths) <= k
    assert len({p.nodes for p in paths}) == len(paths)
    assert [p.hops for p in paths] == sorted(p.hops for p in paths)
    expected = len(list(itertools.islice(nx.shortest_simple_paths(graph, 0, n - 1), k)))
    assert len(paths) == expected
    for path in paths:
        assert_valid(snap, path, ids[0], ids[n - 1])


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=4, max_value=12),
    p=st.floats(min_value=0.3, max_value=0.9),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_key_aware_search_finds_the_cheapest_path(n: int, p: float, seed: int) -> None:
    graph = nx.gnp_random_graph(n, p, seed=seed)
    snap, ids = snapshot_from_graph(
        graph, rate=lambda a, b, d: 500 + 997 * (a * 7 + b * 13) % 9_000
    )
    request = KeyRequest(ids[0], ids[n - 1], qos=QoS(min_bandwidth=400, max_bandwidth=3_000))
    policy = KeyAware()
    view = RouteView(snap)
    cost = policy.cost_function(view, request)
    try:
        best = nx.dijkstra_path_length(snap.routing, ids[0], ids[n - 1], weight=cost)
    except nx.NetworkXNoPath:
        assert find_paths(snap, request, policy) == []
        return
    [path] = find_paths(snap, request, policy)
    total = 0.0
    for a, b in itertools.pairwise(path.nodes):
        hop = cost(a, b, snap.routing.edges[a, b])
        assert hop is not None
        total += hop
    assert total == pytest.approx(best)


def test_a_link_with_qber_above_the_threshold_carries_no_key_even_if_active() -> None:
    from dataclasses import replace as _replace

    from controller.model import QBER_THRESHOLD, TopologySnapshot
    from controller.topology.synthetic import snapshot_from_graph

    snapshot, ids = snapshot_from_graph(nx.path_graph(["a", "b", "c"]))
    link = snapshot.links_between(ids["a"], ids["b"])[0]
    links = dict(snapshot.links)
    links[link.qkdl_id] = _replace(link, qber=QBER_THRESHOLD + 0.01)
    tapped = TopologySnapshot(snapshot.devices, links)
    assert link.qkdl_id not in {u.qkdl_id for u in tapped.usable_links()}
    assert not tapped.routing.has_edge(ids["a"], ids["b"])
    links[link.qkdl_id] = _replace(link, qber=QBER_THRESHOLD - 0.01)
    assert TopologySnapshot(snapshot.devices, links).routing.has_edge(ids["a"], ids["b"])
