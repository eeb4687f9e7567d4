"""Data-driven steering (pure): link health with hysteresis, steered path costs, and which
associations move off a troubled link or come back, by priority, without flapping."""

from __future__ import annotations

from dataclasses import replace

import networkx as nx
import pytest

from controller.admission import admit
from controller.model import (
    Intent,
    IntentState,
    KeyRequest,
    LinkStatus,
    Path,
    QoS,
    Reservations,
    TopologySnapshot,
)
from controller.steering import (
    ActionKind,
    Memory,
    SteeringSettings,
    assess,
    penalties,
    plan_actions,
    priority_of,
    steered_policy,
)
from controller.topology.synthetic import snapshot_from_graph

# Draining at once (drain_after_s=0): the tests below are about what follows from it.
SETTINGS = SteeringSettings(hold_s=10.0, drain_ratio=0.9, drain_clear_ratio=0.7, drain_after_s=0.0)


def triangle() -> tuple[TopologySnapshot, dict[str, str]]:
    graph = nx.Graph()
    for a, b in (("n1", "n2"), ("n2", "n3"), ("n1", "n3")):
        graph.add_edge(a, b, eskr=100_000)
    return snapshot_from_graph(graph)


def link_id(snap: TopologySnapshot, ids: dict[str, str], a: str, b: str) -> str:
    return snap.links_between(ids[a], ids[b])[0].qkdl_id


def with_link(snap: TopologySnapshot, lid: str, **changes: object) -> TopologySnapshot:
    links = dict(snap.links)
    links[lid] = replace(links[lid], **changes)  # type: ignore[arg-type]
    return TopologySnapshot(snap.devices, links)


def direct_intent(
    snap: TopologySnapshot, ids: dict[str, str], name: str, priority: int = 0, bandwidth: int = 1000
) -> Intent:
    lid = link_id(snap, ids, "n1", "n3")
    request = KeyRequest(
        ids["n1"], ids["n3"], name, (f"{name}-peer",), QoS(100, bandwidth, priority)
    )
    return Intent(
        f"intent-{name}",
        request,
        IntentState.INSTALLED,
        Path((ids["n1"], ids["n3"]), (lid,)),
        bandwidth,
    )


def test_a_link_whose_skr_falls_tenfold_is_degraded_and_recovers_only_above_the_upper_mark() -> (
    None
):
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    health = assess({}, snap, Reservations(), 0.0, SETTINGS)
    assert not health[lid].degraded and health[lid].reference_skr == 100_000
    health = assess(
        health, with_link(snap, lid, skr=10_000, eskr=10_000), Reservations(), 1.0, SETTINGS
    )
    assert health[lid].degraded and "10%" in health[lid].reason()
    # Back to 60 %: above the drop mark (50 %) but below the recovery mark (80 %): still degraded.
    health = assess(
        health, with_link(snap, lid, skr=60_000, eskr=60_000), Reservations(), 2.0, SETTINGS
    )
    assert health[lid].degraded
    health = assess(
        health, with_link(snap, lid, skr=85_000, eskr=85_000), Reservations(), 3.0, SETTINGS
    )
    assert not health[lid].degraded


def test_a_link_drawn_to_its_rate_is_draining_until_demand_falls_below_the_clear_mark() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    health = assess({}, with_link(snap, lid, eskr=5_000), Reservations(), 0.0, SETTINGS)
    assert health[lid].draining and health[lid].demand == 95_000
    health = assess(health, with_link(snap, lid, eskr=20_000), Reservations(), 1.0, SETTINGS)
    assert health[lid].draining, "80 % is above the clear mark (70 %): no flapping"
    health = assess(health, with_link(snap, lid, eskr=40_000), Reservations(), 2.0, SETTINGS)
    assert not health[lid].draining


def test_an_overloaded_link_expected_consumption_above_skr_is_draining() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    health = assess(
        {}, with_link(snap, lid, expected_consumption=150_000), Reservations(), 0.0, SETTINGS
    )
    assert health[lid].draining and health[lid].pressure == pytest.approx(1.5)


def test_links_not_active_are_left_to_the_controllers_reroute() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    health = assess({}, with_link(snap, lid, status=LinkStatus.OFF), Reservations(), 0.0, SETTINGS)
    assert lid not in health and len(health) == 2


def test_every_association_leaves_a_degraded_link_the_highest_priority_first() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    low, high = direct_intent(snap, ids, "bulk", 1), direct_intent(snap, ids, "vip", 9)
    health = assess({}, snap, Reservations(), 0.0, SETTINGS)
    health = assess(
        health, with_link(snap, lid, skr=10_000, eskr=10_000), Reservations(), 1.0, SETTINGS
    )
    actions = plan_actions(health, [low, high], Memory(), 1.0, SETTINGS)
    assert [(a.kind, a.intent_id) for a in actions] == [
        (ActionKind.MOVE, high.intent_id),
        (ActionKind.MOVE, low.intent_id),
    ]
    assert all(a.link_id == lid for a in actions)


def test_on_a_draining_link_the_lower_priorities_give_way_and_the_highest_stays() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    intents = [
        direct_intent(snap, ids, "vip", 9),
        direct_intent(snap, ids, "bulk", 1),
        direct_intent(snap, ids, "mid", 5),
    ]
    health = assess({}, with_link(snap, lid, eskr=0), Reservations(), 0.0, SETTINGS)
    actions = plan_actions(health, intents, Memory(), 0.0, SETTINGS)
    assert [a.intent_id for a in actions] == ["intent-bulk", "intent-mid"]
    assert all(a.kind is ActionKind.MOVE for a in actions)


def test_operator_priorities_by_sae_raise_a_requests_own_priority() -> None:
    snap, ids = triangle()
    settings = SteeringSettings(priorities={"vip": 7})
    assert priority_of(direct_intent(snap, ids, "vip", 2), settings) == 7
    assert priority_of(direct_intent(snap, ids, "bulk", 3), settings) == 3


def test_an_association_moved_is_held_and_not_moved_again_within_the_hold_time() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    intent = direct_intent(snap, ids, "bulk", 1)
    health = assess({}, snap, Reservations(), 0.0, SETTINGS)
    health = assess(
        health, with_link(snap, lid, skr=10_000, eskr=10_000), Reservations(), 1.0, SETTINGS
    )
    [move] = plan_actions(health, [intent], Memory(), 1.0, SETTINGS)
    memory = Memory().after(move, moved=False, now=1.0)  # no better path: it stayed
    assert plan_actions(health, [intent], memory, 5.0, SETTINGS) == []
    assert [a.intent_id for a in plan_actions(health, [intent], memory, 11.5, SETTINGS)] == [
        intent.intent_id
    ]


def test_an_association_returns_when_its_link_recovers_but_not_onto_a_link_it_would_drain() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    intent = direct_intent(snap, ids, "bulk", 1)
    draining = assess({}, with_link(snap, lid, eskr=0), Reservations(), 0.0, SETTINGS)
    [move] = plan_actions(
        draining, [intent, direct_intent(snap, ids, "vip", 9)], Memory(), 0.0, SETTINGS
    )
    memory = Memory().after(move, moved=True, now=0.0)
    assert memory.left[intent.intent_id] == (lid, 100_000)
    moved = replace(intent, path=Path((ids["n1"], ids["n2"], ids["n3"]), ("x", "y")))
    # Without it the link draws 50 %: clear, but taking its 100 % share back would drain it.
    half = assess(draining, with_link(snap, lid, eskr=50_000), Reservations(), 20.0, SETTINGS)
    assert not half[lid].draining
    assert plan_actions(half, [moved], memory, 20.0, SETTINGS) == []
    # The other consumer is gone too and the demand it left behind has gone with it: back.
    quiet = assess(half, with_link(snap, lid, eskr=100_000), Reservations(), 30.0, SETTINGS)
    memory = Memory(memory.moved_at, {intent.intent_id: (lid, 40_000)})
    [back] = plan_actions(quiet, [moved], memory, 30.0, SETTINGS)
    assert back.kind is ActionKind.RETURN and back.link_id == lid
    assert intent.intent_id not in Memory().after(back, moved=True, now=30.0).left


def test_among_equals_on_a_draining_link_the_measured_heaviest_consumer_moves() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    big = direct_intent(snap, ids, "big-reservation", 3, bandwidth=4000)
    heavy = direct_intent(snap, ids, "heavy-user", 3, bandwidth=1000)
    health = assess({}, with_link(snap, lid, eskr=0), Reservations(), 0.0, SETTINGS)
    # Unmeasured: the reservations decide (the bigger one moves).
    [guess] = plan_actions(health, [big, heavy], Memory(), 0.0, SETTINGS)
    assert guess.intent_id == big.intent_id
    # Measured: the one that really draws most moves.
    measured = {big.intent_id: 200.0, heavy.intent_id: 30_000.0}
    [move] = plan_actions(health, [big, heavy], Memory(), 0.0, SETTINGS, measured)
    assert move.intent_id == heavy.intent_id


def test_a_return_is_judged_on_the_measured_consumption_not_the_demand_it_left() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    intent = direct_intent(snap, ids, "bulk", 1)
    moved = replace(intent, path=Path((ids["n1"], ids["n2"], ids["n3"]), ("x", "y")))
    quiet = assess({}, with_link(snap, lid, eskr=60_000), Reservations(), 30.0, SETTINGS)
    # The guess (demand when it left 100 %, now 40 %: a 60 % share) keeps it away...
    memory = Memory({intent.intent_id: 0.0}, {intent.intent_id: (lid, 100_000)})
    assert plan_actions(quiet, [moved], memory, 30.0, SETTINGS) == []
    # ...but it was measured drawing 5 kbit/s: 45 % with it, below the clear mark: back.
    [back] = plan_actions(quiet, [moved], memory, 30.0, SETTINGS, {intent.intent_id: 5_000.0})
    assert back.kind is ActionKind.RETURN
    # Measured heavy: stays away.
    assert plan_actions(quiet, [moved], memory, 30.0, SETTINGS, {intent.intent_id: 40_000.0}) == []


def test_the_steered_policy_routes_around_a_troubled_link_when_a_detour_exists() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    request = KeyRequest(ids["n1"], ids["n3"], qos=QoS(1000, 2000))
    healthy = assess({}, snap, Reservations(), 0.0, SETTINGS)
    decision = admit(snap, Reservations(), request, steered_policy(healthy, SETTINGS))
    assert decision.path is not None and decision.path.nodes == (ids["n1"], ids["n3"])
    troubled = assess({}, with_link(snap, lid, eskr=0), Reservations(), 0.0, SETTINGS)
    decision = admit(snap, Reservations(), request, steered_policy(troubled, SETTINGS))
    assert decision.path is not None and decision.path.nodes == (ids["n1"], ids["n2"], ids["n3"])


def test_by_default_a_link_drawn_at_half_its_rate_for_5_s_drains_one_relay_direction() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    half = with_link(snap, lid, eskr=50_000)
    health = assess({}, half, Reservations(), 0.0, SteeringSettings())
    assert not health[lid].draining, "not yet: it must last drain_after_s"
    health = assess(health, half, Reservations(), 4.0, SteeringSettings())
    assert not health[lid].draining
    health = assess(health, half, Reservations(), 5.0, SteeringSettings())
    assert health[lid].draining
    health = assess(
        health, with_link(snap, lid, eskr=80_000), Reservations(), 6.0, SteeringSettings()
    )
    assert not health[lid].draining


def test_a_burst_of_pool_filling_shorter_than_drain_after_s_never_drains_a_link() -> None:
    snap, ids = triangle()
    lid = link_id(snap, ids, "n1", "n3")
    settings = SteeringSettings()
    health = assess({}, with_link(snap, lid, eskr=5_000), Reservations(), 0.0, settings)
    health = assess(health, with_link(snap, lid, eskr=5_000), Reservations(), 3.0, settings)
    health = assess(health, with_link(snap, lid, eskr=90_000), Reservations(), 4.0, settings)
    assert not health[lid].draining and health[lid].over_since is None
    health = assess(health, with_link(snap, lid, eskr=5_000), Reservations(), 6.0, settings)
    assert not health[lid].draining, "a new burst starts its own count"
    assert penalties(health, settings) == {}


def test_bad_steering_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="drop_ratio"):
        SteeringSettings(drop_ratio=0.9, recover_ratio=0.8)
    with pytest.raises(ValueError, match="drain_clear_ratio"):
        SteeringSettings(drain_ratio=0.5, drain_clear_ratio=0.6)
    with pytest.raises(ValueError, match="hold_s"):
        SteeringSettings(hold_s=-1)
