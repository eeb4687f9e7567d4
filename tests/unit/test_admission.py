"""Admission control: free rate per hop, reservations capped, pre-emption, reasons."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission import admit
from controller.model import (
    Device,
    KeyRequest,
    LinkStatus,
    QoS,
    Reservation,
    Reservations,
    TopologySnapshot,
)
from controller.paths import FewestHops, KeyAware, PathPolicy
from controller.topology.synthetic import snapshot_from_graph


def chain(rate: int = 10_000) -> tuple[TopologySnapshot, dict[str, str]]:
    return snapshot_from_graph(nx.path_graph(["a", "b", "c"]), rate=lambda x, y, d: rate)


def reserve(
    reservations: Reservations, intent: str, decision_links: tuple[str, ...], bw: int, prio: int = 0
) -> Reservations:
    return reservations.with_(Reservation(intent, decision_links, bw, prio))


def assert_within_rates(snapshot: TopologySnapshot, reservations: Reservations) -> None:
    for link in snapshot.links.values():
        assert reservations.reserved_on(link.qkdl_id) <= link.eskr


def test_admits_and_reserves_max_bandwidth_when_free() -> None:
    snap, ids = chain()
    request = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=1_000, max_bandwidth=4_000))
    decision = admit(snap, Reservations(), request, FewestHops())
    assert decision.admitted and decision.path is not None
    assert decision.path.nodes == (ids["a"], ids["b"], ids["c"])
    assert decision.bandwidth == 4_000
    assert decision.reason == ""


def test_reservation_is_capped_by_the_tightest_hop_but_at_least_min() -> None:
    snap, ids = chain()
    first = snap.links_between(ids["a"], ids["b"])[0].qkdl_id
    taken = reserve(Reservations(), "old", (first,), 7_000)
    request = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=2_000, max_bandwidth=5_000))
    decision = admit(snap, taken, request, FewestHops())
    assert decision.admitted
    assert decision.bandwidth == 3_000


def test_rejection_names_the_blocking_hop() -> None:
    snap, ids = chain()
    second = snap.links_between(ids["b"], ids["c"])[0].qkdl_id
    taken = reserve(Reservations(), "old", (second,), 9_500)
    request = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=1_000))
    decision = admit(snap, taken, request, FewestHops())
    assert not decision.admitted
    assert "hop b–c" in decision.reason and "500 bit/s free" in decision.reason
    assert second in decision.reason


def test_rejection_when_a_link_is_down_or_a_node_is_away() -> None:
    snap, ids = chain()
    link = snap.links_between(ids["b"], ids["c"])[0]
    down = TopologySnapshot(
        snap.devices, {**snap.links, link.qkdl_id: replace(link, status=LinkStatus.OFF)}
    )
    decision = admit(down, Reservations(), KeyRequest(ids["a"], ids["c"]), FewestHops())
    assert not decision.admitted
    assert "no usable path between a and c" in decision.reason and "b–c (OFF)" in decision.reason
    away = TopologySnapshot(
        {**snap.devices, ids["c"]: Device(ids["c"], "c", available=False)}, snap.links
    )
    decision = admit(away, Reservations(), KeyRequest(ids["a"], ids["c"]), FewestHops())
    assert decision.reason == "destination node c is unavailable"
    decision = admit(snap, Reservations(), KeyRequest(ids["a"], "nowhere"), FewestHops())
    assert "destination node nowhere is not in the topology" in decision.reason


def test_forced_path_rejection_names_the_hop() -> None:
    snap, ids = chain()
    request = KeyRequest(ids["a"], ids["c"], forced_path=(ids["a"], ids["c"]))
    decision = admit(snap, Reservations(), request, FewestHops())
    assert not decision.admitted
    assert decision.reason == "forced path: hop a–c has no active link"


def test_preemption_only_when_allowed_and_only_of_lower_priority() -> None:
    snap, ids = chain()
    links = tuple(link.qkdl_id for link in snap.links.values())
    taken = reserve(Reservations(), "low", links, 6_000, prio=1)
    taken = reserve(taken, "high", links, 3_000, prio=9)
    request = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=5_000, priority=5))
    assert not admit(snap, taken, request, FewestHops()).admitted
    decision = admit(snap, taken, request, FewestHops(), allow_preemption=True)
    assert decision.admitted
    assert decision.preempted == ("low",)
    assert decision.bandwidth == 5_000  # min_bandwidth only: no max asked
    # a request of lower priority than every holder cannot pre-empt
    weak = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=5_000, priority=0))
    assert not admit(snap, taken, weak, FewestHops(), allow_preemption=True).admitted


def test_preemption_picks_the_lowest_priority_first() -> None:
    snap, ids = chain()
    links = tuple(link.qkdl_id for link in snap.links.values())
    taken = reserve(Reservations(), "p3", links, 5_000, prio=3)
    taken = reserve(taken, "p1", links, 5_000, prio=1)
    request = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=4_000, priority=5))
    decision = admit(snap, taken, request, FewestHops(), allow_preemption=True)
    assert decision.preempted == ("p1",)


def run_load(
    snapshot: TopologySnapshot, ids: list[str], policy: PathPolicy, seed: int, count: int
) -> Reservations:
    rng = random.Random(seed)
    reservations = Reservations()
    for index in range(count):
        src, dst = rng.sample(ids, 2)
        low = rng.randint(0, 3_000)
        qos = QoS(
            min_bandwidth=low, max_bandwidth=low + rng.randint(0, 3_000), priority=rng.randint(0, 3)
        )
        decision = admit(
            snapshot, reservations, KeyRequest(src, dst, qos=qos), policy, allow_preemption=True
        )
        if decision.admitted:
            assert decision.path is not None
            assert decision.bandwidth >= qos.min_bandwidth
            reservations = reservations.without(*decision.preempted)
            reservations = reservations.with_(
                Reservation(f"i{index}", decision.path.links, decision.bandwidth, qos.priority)
            )
        else:
            assert decision.reason
        assert_within_rates(snapshot, reservations)
    return reservations


@pytest.mark.parametrize("policy", [FewestHops(), KeyAware()], ids=lambda p: p.name)
def test_every_small_atlas_graph_admits_validly_or_says_why(policy: PathPolicy) -> None:
    for number, graph in enumerate(nx.graph_atlas_g()[1:]):
        snap, ids = snapshot_from_graph(graph, rate=lambda a, b, d: 2_000 + 500 * ((a * b) % 7))
        reservations = Reservations()
        for u, v in itertools.combinations(graph.nodes, 2):
            request = KeyRequest(ids[u], ids[v], qos=QoS(min_bandwidth=1_000, max_bandwidth=2_000))
            decision = admit(snap, reservations, request, policy)
            if decision.admitted:
                assert decision.path is not None
                assert decision.path.nodes[0] == ids[u] and decision.path.nodes[-1] == ids[v]
                assert 1_000 <= decision.bandwidth <= 2_000
                reservations = reservations.with_(
                    Reservation(f"{number}:{u}:{v}", decision.path.links, decision.bandwidth)
                )
            else:
                assert decision.reason, "every rejection carries a reason"
                if not nx.has_path(graph, u, v):
                    assert "no usable path" in decision.reason
            assert_within_rates(snap, reservations)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(min_value=0, max_value=100_000), n=st.integers(min_value=4, max_value=12))
def test_random_load_never_overbooks_a_link(seed: int, n: int) -> None:
    graph = nx.connected_watts_strogatz_graph(n, 3, 0.3, seed=seed)
    snap, ids = snapshot_from_graph(graph, rate=lambda a, b, d: 5_000 + 1_000 * ((a + b) % 5))
    run_load(snap, list(ids.values()), FewestHops(), seed, 40)


def test_free_rate_is_skr_minus_reservations_not_the_momentary_eskr() -> None:
    """Key managers filling their pools draw the whole rate: eskr reads 0, yet the link can
    carry associations (the pooled key serves them)."""
    snap, ids = chain()
    drained = TopologySnapshot(snap.devices, {k: replace(v, eskr=0) for k, v in snap.links.items()})
    request = KeyRequest(ids["a"], ids["c"], qos=QoS(min_bandwidth=1_000, max_bandwidth=3_000))
    decision = admit(drained, Reservations(), request, FewestHops())
    assert decision.admitted and decision.bandwidth == 3_000
