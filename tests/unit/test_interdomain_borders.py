"""Several border sites between two domains: the pure choice of a border pair, the next pair
tried when a domain refuses, a committed association re-routed when its border is lost, and
the key mode of the request asked of (and refused by) the peer's policy."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controller.interdomain.route import BorderSide, Segment, crossings, plan_routes
from controller.interdomain.view import Border, BorderRate, DomainView, ViewError
from controller.model import IntentState
from tests.harness.borders import Side, a_to_b, two_borders, views
from tests.harness.domains import Clock, LocalPeer
from yang.model import KeyMode

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def settled(sides: dict[str, Side], work: Coroutine[Any, Any, None]) -> None:
    """`work`, then every view push and re-route it caused."""
    await work
    for side in sides.values():
        await side.coord().settle()
        await side.coord().settle_pushes()


def b_view(rate1: int, rate2: int, paired: bool = True) -> DomainView:
    return DomainView(
        "B",
        (
            Border("b_a1", "A", "a_b1" if paired else None),
            Border("b_a2", "A", "a_b2" if paired else None),
        ),
        ("app-b",),
        border_rates=(BorderRate("b_a1", "app-b", rate1), BorderRate("b_a2", "app-b", rate2)),
    )


BORDERS = {"a_b1": "B", "a_b2": "B"}
PARTNERS = {"a_b1": "b_a1", "a_b2": "b_a2"}


def test_the_border_pair_with_the_most_free_rate_is_tried_first() -> None:
    routes = plan_routes("A", BORDERS, {"B": b_view(500, 900)}, "app-b", partners=PARTNERS)
    assert not isinstance(routes, str)
    assert [(r.egress, r.segments, r.rate_bps) for r in routes] == [
        ("a_b2", (Segment("B", "b_a2", None),), 900),
        ("a_b1", (Segment("B", "b_a1", None),), 500),
    ]


def test_the_origin_s_own_rate_to_each_border_counts_in_the_choice() -> None:
    own = {"a_b1": 2000, "a_b2": 300}  # a_b2 is close to full inside A
    routes = plan_routes(
        "A", BORDERS, {"B": b_view(500, 900)}, "app-b", partners=PARTNERS, own_rate=own
    )
    assert not isinstance(routes, str)
    assert [(r.egress, r.rate_bps) for r in routes] == [("a_b1", 500), ("a_b2", 300)]


def test_borders_pair_only_at_one_site() -> None:
    """a_b1 meets b_a1, never b_a2: a pair across two sites would hand keys to nobody."""
    routes = plan_routes("A", BORDERS, {"B": b_view(1, 1)}, "app-b", partners=PARTNERS)
    assert not isinstance(routes, str)
    assert {(r.egress, r.segments[0].ingress) for r in routes} == {
        ("a_b1", "b_a1"),
        ("a_b2", "b_a2"),
    }
    # the peer's view alone (peer_node) says it, even when this domain's config does not
    routes = plan_routes("A", BORDERS, {"B": b_view(1, 1)}, "app-b")
    assert not isinstance(routes, str)
    assert len(routes) == 2
    # nobody says which border meets which: every pair is possible (one border each: one)
    left = BorderSide((("a_b1", None), ("a_b2", None)))
    right = BorderSide((("b_a1", None), ("b_a2", None)))
    assert len(crossings(left, right, frozenset())) == 4


def test_a_border_out_of_service_is_avoided_and_none_left_says_why() -> None:
    views_ = {"B": b_view(900, 500)}
    routes = plan_routes(
        "A", BORDERS, views_, "app-b", partners=PARTNERS, avoid=frozenset({"b_a1"})
    )
    assert not isinstance(routes, str)
    assert [r.egress for r in routes] == ["a_b2"]
    none = plan_routes(
        "A", BORDERS, views_, "app-b", partners=PARTNERS, avoid=frozenset({"a_b1", "a_b2"})
    )
    assert isinstance(none, str)
    assert "no border site between A and B is usable" in none


def test_a_path_through_a_transit_domain_pairs_borders_at_each_boundary() -> None:
    b = DomainView(
        "B",
        (Border("b_a", "A", "a_b"), Border("b_c1", "C", "c_b1"), Border("b_c2", "C", "c_b2")),
        reach={"app-c": ("C",)},
        border_rates=(BorderRate("b_a", "b_c1", 100), BorderRate("b_a", "b_c2", 700)),
    )
    c = DomainView(
        "C",
        (Border("c_b1", "B", "b_c1"), Border("c_b2", "B", "b_c2")),
        ("app-c",),
        border_rates=(BorderRate("c_b1", "app-c", 800), BorderRate("c_b2", "app-c", 600)),
    )
    routes = plan_routes("A", {"a_b": "B"}, {"B": b, "C": c}, "app-c")
    assert not isinstance(routes, str)
    assert [(r.segments, r.rate_bps) for r in routes] == [
        ((Segment("B", "b_a", "b_c2"), Segment("C", "c_b2", None)), 600),
        ((Segment("B", "b_a", "b_c1"), Segment("C", "c_b1", None)), 100),
    ]


# ---------------------------------------------------------------- coordinator and services


def live_everywhere(sides: dict[str, Side]) -> dict[str, list[str]]:
    return {name: side.live() for name, side in sides.items()}


def test_a_border_refusing_the_reservation_makes_the_origin_try_the_other_pair(
    tmp_path: Path,
) -> None:
    sides = two_borders(tmp_path, Clock())
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        await b.cut("b_a1", "betainner")  # A's view of B is older than the cut
        outcome = await a.coord().submit(a_to_b(a))
        assert outcome.committed, outcome.reason
        assert a.ends(outcome.id) == ("alphainner", "a_b2")
        assert b.ends(outcome.id) == ("b_a2", "betainner")
        assert live_everywhere(sides) == {"A": [outcome.id], "B": [outcome.id]}
        peer = a.coord().peers["B"]
        assert isinstance(peer, LocalPeer)
        assert peer.calls == ["reserve", "release", "reserve", "commit"]

    run(settled(sides, scenario()))


def test_when_every_border_refuses_nothing_stays_reserved_and_the_reason_names_each(
    tmp_path: Path,
) -> None:
    sides = two_borders(tmp_path, Clock())
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        await b.cut("b_a1", "betainner")
        await b.cut("b_a2", "betainner")
        outcome = await a.coord().submit(a_to_b(a))
        assert not outcome.committed
        assert "via a_b1, b_a1: domain B refused the reserve (409)" in outcome.reason
        assert "via a_b2, b_a2: domain B refused the reserve (409)" in outcome.reason
        assert live_everywhere(sides) == {"A": [], "B": []}
        [rejected] = [i for i in a.intents.intents() if i.state is IntentState.REJECTED]
        assert "no capacity between b_a2 and app-b" in rejected.reason

    run(settled(sides, scenario()))


def test_a_committed_association_whose_own_border_is_cut_off_moves_to_the_other(
    tmp_path: Path,
) -> None:
    sides = two_borders(tmp_path, Clock())
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        first = await a.coord().submit(a_to_b(a))
        assert first.committed
        assert a.ends(first.id) == ("alphainner", "a_b1")  # a tie: the first by name
        await a.cut("alphainner", "a_b1")  # a_b1 is cut off: A's segment cannot re-route
        await a.coord().settle()
        [moved] = a.coord().sessions
        assert moved != first.id
        assert a.ends(moved) == ("alphainner", "a_b2")
        assert b.ends(moved) == ("b_a2", "betainner")
        assert live_everywhere(sides) == {"A": [moved], "B": [moved]}
        assert b.intents.get(first.id).state is IntentState.WITHDRAWN
        assert a.intents.get(first.id).state is IntentState.WITHDRAWN

    run(settled(sides, scenario()))


def test_a_segment_broken_in_the_peer_domain_is_moved_by_the_origin(tmp_path: Path) -> None:
    sides = two_borders(tmp_path, Clock())
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        first = await a.coord().submit(a_to_b(a))
        assert first.committed
        await b.cut("b_a1", "betainner")  # B's segment has no path left
        assert b.service.book.get(first.id).state.value == "broken"  # type: ignore[union-attr]
        await a.coord().check_sessions()  # what its periodic round does
        [moved] = a.coord().sessions
        assert a.ends(moved) == ("alphainner", "a_b2")
        assert b.ends(moved) == ("b_a2", "betainner")
        assert live_everywhere(sides) == {"A": [moved], "B": [moved]}

    run(settled(sides, scenario()))


def test_an_association_with_no_border_left_is_released_everywhere(tmp_path: Path) -> None:
    sides = two_borders(tmp_path, Clock())
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        first = await a.coord().submit(a_to_b(a))
        assert first.committed
        await b.cut("b_a2", "betainner")  # the spare is gone first
        await views(sides)
        await a.cut("alphainner", "a_b1")
        await a.coord().settle()
        assert a.coord().sessions == {}
        assert live_everywhere(sides) == {"A": [], "B": []}
        assert b.intents.get(first.id).state is IntentState.WITHDRAWN
        [rejected] = [i for i in a.intents.intents() if i.state is IntentState.REJECTED]
        assert "no other border" in rejected.reason
        assert rejected.intent_id in a.coord().refused  # tried again as any refusal

    run(settled(sides, scenario()))


def test_peers_are_asked_for_the_key_mode_of_the_request(tmp_path: Path) -> None:
    sides = two_borders(tmp_path, Clock())
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        outcome = await a.coord().submit(a_to_b(a, mode=KeyMode.QKD_ONLY))
        assert outcome.committed
        assert b.service.book.get(outcome.id).request.key_mode == "qkd-only"  # type: ignore[union-attr]
        assert b.intents.get(outcome.id).request.key_mode is KeyMode.QKD_ONLY
        assert a.intents.get(outcome.id).request.key_mode is KeyMode.QKD_ONLY

    run(settled(sides, scenario()))


def test_a_key_mode_the_peer_does_not_allow_is_refused_with_nothing_reserved(
    tmp_path: Path,
) -> None:
    modes = {"A": ("qkd-only", "qkd-preferred"), "B": ("qkd-only",)}
    sides = two_borders(tmp_path, Clock(), key_modes=modes)
    a, b = sides["A"], sides["B"]

    async def scenario() -> None:
        await views(sides)
        outcome = await a.coord().submit(a_to_b(a, mode=KeyMode.QKD_PREFERRED))
        assert not outcome.committed
        assert (
            "domain B refused the reserve (403): key mode qkd-preferred is not allowed for "
            "domain A (allowed: qkd-only)" in outcome.reason
        )
        assert live_everywhere(sides) == {"A": [], "B": []}
        assert all(not i.path for i in b.intents.intents())
        peer = a.coord().peers["B"]
        assert isinstance(peer, LocalPeer)
        assert peer.calls == ["reserve", "release"]  # a policy refusal: no other pair tried

    run(settled(sides, scenario()))


# ---------------------------------------------------------------- configuration and view


def test_the_partner_of_each_border_is_read_and_checked(tmp_path: Path) -> None:
    from controller.config import ConfigError, load
    from tests.unit.test_interdomain_config import write_config

    peer = {"name": "B", "url": "http://x:1", "token_file": "to-b", "accept_token_file": "from-b"}
    section = {"name": "A", "borders": {"a_b": "B"}, "peers": [peer], "partners": {"a_b": "b_a"}}
    domain = load(write_config(tmp_path, section), env={}).domain
    assert domain is not None and dict(domain.partners) == {"a_b": "b_a"}
    section["partners"] = {"a1": "b_x", "a_b": "a1"}  # not a border; one of our own nodes
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, section), env={})
    assert "domain.partners.a1: not one of domain.borders" in str(caught.value)
    assert "domain.partners.a_b: bad value 'a1'" in str(caught.value)


def test_a_border_s_partner_travels_in_the_view_and_a_bad_one_is_named() -> None:
    view = b_view(1, 2)
    again = DomainView.from_json(view.to_json())
    assert again.borders == view.borders
    assert view.to_json()["borders"][0] == {"node": "b_a1", "peer_domain": "A", "peer_node": "a_b1"}
    assert "peer_node" not in b_view(1, 2, paired=False).to_json()["borders"][0]
    bad = view.to_json()
    bad["borders"][1]["peer_node"] = 7
    with pytest.raises(ViewError, match=r"borders\[1\]\.peer_node must be a non-empty string"):
        DomainView.from_json(bad)


def test_a_peer_s_status_shows_its_sites_and_a_view_gone_stale(tmp_path: Path) -> None:
    clock = Clock()
    sides = two_borders(tmp_path, clock)
    a = sides["A"]

    async def scenario() -> None:
        await views(sides)
        [b] = a.service.peers_status()
        assert (b["name"], b["state"], b["view_age_s"], b["neighbour"]) == ("B", "up", 0.0, True)
        assert b["borders"] == ["a_b1|b_a1", "a_b2|b_a2"] and b["saes"] == ["app-b"]
        clock.now += 3 * a.service.config.view_interval_s + 0.5
        [b] = a.service.peers_status()
        assert (b["state"], b["view_age_s"]) == ("stale", 3.5)

    run(settled(sides, scenario()))


def test_a_peer_that_does_not_answer_is_not_asked_again_for_each_border(tmp_path: Path) -> None:
    sides = two_borders(tmp_path, Clock())
    a = sides["A"]

    async def scenario() -> None:
        await views(sides)
        peer = a.coord().peers["B"]
        assert isinstance(peer, LocalPeer)
        peer.hang = True
        outcome = await a.coord().submit(a_to_b(a))
        assert not outcome.committed and "domain B did not answer the reserve" in outcome.reason
        assert peer.calls == ["reserve", "release"]
        assert live_everywhere(sides)["A"] == []

    run(settled(sides, scenario()))
