"""A domain's abstract view (pure): borders, SAEs, a loop-free path vector, border rates; the
domain path chosen on the views; nothing internal in a view."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from controller.interdomain.route import Segment, plan_route
from controller.interdomain.view import (
    Border,
    BorderRate,
    DomainView,
    ViewError,
    compute_view,
    reach_of,
)
from controller.model import Reservation, Reservations
from controller.topology.synthetic import snapshot_from_graph


def view_of_b(reservations: Reservations | None = None) -> DomainView:
    graph = nx.Graph()
    graph.add_edge("b_a", "bm", skr=5000)
    graph.add_edge("bm", "b_c", skr=3000)
    graph.add_edge("b_a", "bx", skr=1000)
    graph.add_edge("bx", "b_c", skr=1000)
    snapshot, _ = snapshot_from_graph(graph, rate=lambda a, b, d: int(d["skr"]))
    peers = {
        "A": DomainView("A", (Border("a_b", "B"),), ("app-a",)),
        "C": DomainView(
            "C", (Border("c_b", "B"), Border("c_d", "D")), ("app-c",), {"app-d": ("D",)}
        ),
    }
    return compute_view(
        "B",
        {"b_a": "A", "b_c": "C"},
        {"app-b1": "bm"},
        snapshot,
        reservations or Reservations(),
        peers,
        42.0,
    )


def test_the_view_shows_borders_saes_reach_and_the_widest_rate_between_borders() -> None:
    view = view_of_b()
    assert view.domain == "B" and view.updated == 42.0
    assert view.borders == (Border("b_a", "A"), Border("b_c", "C"))
    assert view.saes == ("app-b1",)
    assert view.reach == {"app-a": ("A",), "app-c": ("C",), "app-d": ("C", "D")}
    # widest path b_a–bm–b_c has 3000 free; the other only 1000
    assert view.rate("b_a", "b_c") == 3000
    assert view.rate("b_a", "app-b1") == 5000 and view.rate("b_c", "app-b1") == 3000


def test_reserved_rate_is_not_available_in_the_view() -> None:
    graph = nx.Graph()
    graph.add_edge("b_a", "b_c", skr=4000)
    snapshot, _ = snapshot_from_graph(graph, rate=lambda a, b, d: int(d["skr"]))
    [link] = snapshot.links
    held = Reservations({"x": Reservation("x", (link,), 2500)})
    view = compute_view("B", {"b_a": "A", "b_c": "C"}, {}, snapshot, held, {}, 0.0)
    assert view.rate("b_a", "b_c") == 1500


def test_the_view_names_no_internal_node_nor_any_id() -> None:
    graph = nx.Graph([("b_a", "bm"), ("bm", "b_c")])
    snapshot, ids = snapshot_from_graph(graph)
    view = compute_view(
        "B", {"b_a": "A", "b_c": "C"}, {"app-b1": "bm"}, snapshot, Reservations(), {}, 0.0
    )
    text = json.dumps(view.to_json())
    for secret in [*ids.values(), *snapshot.links, "bm"]:
        assert secret not in text


def test_reach_is_loop_free_and_prefers_the_fewest_domains() -> None:
    views = {
        "B": DomainView(
            "B", saes=("b1",), reach={"x": ("C", "D"), "back": ("A",), "self": ("A", "Q")}
        ),
        "E": DomainView("E", reach={"x": ("D",), "loop": ("E",)}),
        "Z": DomainView("Z", saes=("z1",)),  # not a neighbour: ignored
    }
    reach = reach_of("A", {"a_b": "B", "a_e": "E"}, frozenset({"mine"}), views)
    assert reach == {"b1": ("B",), "x": ("E", "D")}
    # own SAEs are never learned from others
    views["B"] = DomainView("B", saes=("mine",))
    assert "mine" not in reach_of("A", {"a_b": "B"}, frozenset({"mine"}), views)


def test_a_view_from_json_round_trips_and_a_bad_one_names_its_field() -> None:
    view = view_of_b()
    assert DomainView.from_json(json.loads(json.dumps(view.to_json()))) == view
    with pytest.raises(ViewError, match=r"border_rates\[0\]\.available_bps"):
        DomainView.from_json(
            {"domain": "B", "border_rates": [{"from": "x", "to": "y", "available_bps": -1}]}
        )
    with pytest.raises(ViewError, match="domain"):
        DomainView.from_json({"borders": []})
    with pytest.raises(ViewError, match="reach"):
        DomainView.from_json({"domain": "B", "reach": ["C"]})


def test_the_domain_path_has_the_fewest_domains_then_the_most_rate() -> None:
    views = {
        "B": DomainView(
            "B",
            (Border("b_a", "A"), Border("b_c", "C")),
            reach={"app-c": ("C",)},
            border_rates=(BorderRate("b_a", "b_c", 500),),
        ),
        "C": DomainView(
            "C",
            (Border("c_b", "B"), Border("c_e", "E")),
            ("app-c",),
            border_rates=(BorderRate("c_b", "app-c", 900), BorderRate("c_e", "app-c", 1500)),
        ),
        "E": DomainView(
            "E",
            (Border("e_a", "A"), Border("e_c", "C")),
            reach={"app-c": ("C",)},
            border_rates=(BorderRate("e_a", "e_c", 2000),),
        ),
    }
    borders = {"a_b": "B", "a_e": "E"}
    route = plan_route("A", borders, views, "app-c")
    assert not isinstance(route, str)
    assert route.domains == ("A", "E", "C")  # as short as via B, 1500 bit/s against 500
    assert route.segments == (Segment("E", "e_a", "e_c"), Segment("C", "c_e", None))
    forced = plan_route("A", borders, views, "app-c", egress="a_b")
    assert not isinstance(forced, str)
    assert forced.domains == ("A", "B", "C")
    assert forced.segments == (Segment("B", "b_a", "b_c"), Segment("C", "c_b", None))
    assert forced.rate_bps == 500
    assert "no domain through B reaches SAE app-z" in str(
        plan_route("A", borders, views, "app-z", egress="a_b")
    )
    del views["C"]
    assert "no view of domain C" in str(plan_route("A", borders, views, "app-c", egress="a_b"))
