"""Topology files with domains: the example loads, every mistake is named, one-domain files
keep their meaning, and the single-domain baseline has the chain's hop count."""

from __future__ import annotations

import copy
from typing import Any

import networkx as nx
import pytest

from lab.topology import (
    BorderSpec,
    DomainSpec,
    load_topology,
    packaged_topologies,
    parse_topology,
    single_domain,
    topology_path,
    validate_document,
)


def domains_doc() -> dict[str, Any]:
    return {
        "name": "two",
        "domains": {"A": {"trusts": ["B"]}, "B": {"description": "transit", "trusts": ["A"]}},
        "nodes": {
            "a1": {"domain": "A"},
            "a_b": {"domain": "A", "location": "site AB"},
            "b_a": {"domain": "B", "location": "site AB"},
            "b1": {"domain": "B"},
        },
        "borders": [{"between": ["a_b", "b_a"]}],
        "links": [{"between": ["a1", "a_b"]}, {"between": ["b_a", "b1"]}],
        "apps": {"app-a": "a1", "app-b": "b1"},
    }


def messages(doc: object) -> list[str]:
    return [str(p) for p in validate_document(doc, "d.yaml")]


def test_a_file_with_domains_gives_each_node_its_domain_and_the_border_sites() -> None:
    topology = parse_topology(domains_doc(), "d.yaml")
    assert topology.domains == (
        DomainSpec("A", "", ("B",)),
        DomainSpec("B", "transit", ("A",)),
    )
    assert topology.borders == (BorderSpec("a_b", "b_a"),)
    assert [topology.domain_of(n.name) for n in topology.nodes] == ["A", "A", "B", "B"]


def test_the_three_domain_example_is_a_chain_a_b_c_with_an_app_at_each_end() -> None:
    topology = load_topology(topology_path("three-domains"))
    assert [d.name for d in topology.domains] == ["A", "B", "C"]
    assert {topology.domain_of(app.node) for app in topology.apps if app.sae_id == "app-a"} == {"A"}
    assert {topology.domain_of(app.node) for app in topology.apps if app.sae_id == "app-c"} == {"C"}
    sites = {(topology.domain_of(b.a), topology.domain_of(b.b)) for b in topology.borders}
    assert sites == {("A", "B"), ("B", "C")}
    for domain in "ABC":  # 3-4 nodes each, an app for local traffic in each
        assert 3 <= sum(n.domain == domain for n in topology.nodes) <= 4
        assert sum(topology.domain_of(a.node) == domain for a in topology.apps) >= 2


def test_every_packaged_file_without_domains_is_one_domain_as_before() -> None:
    for name in packaged_topologies():
        topology = load_topology(topology_path(name))
        if name in ("three-domains", "two-domains-two-borders"):  # several domains
            continue
        assert topology.domains == () and topology.borders == ()
        assert all(node.domain == "" for node in topology.nodes)
        assert single_domain(topology) is topology


def test_a_node_without_a_domain_is_named() -> None:
    doc = domains_doc()
    doc["nodes"]["b1"] = {}
    assert messages(doc) == [
        "d.yaml: nodes.b1: node 'b1' has no domain; this file declares domains A, B: "
        "add `domain: ...`"
    ]


def test_a_link_across_domains_is_named() -> None:
    doc = domains_doc()
    doc["links"].append({"between": ["a1", "b1"]})
    assert messages(doc) == [
        "d.yaml: links[2].between: link a1–b1 crosses domains 'A' and 'B': links stay within a "
        "domain; domains meet at `borders` (a site hosting a node of each)"
    ]


def test_a_border_within_one_domain_is_named() -> None:
    doc = domains_doc()
    doc["borders"].append({"between": ["a1", "a_b"]})
    (problem,) = messages(doc)
    assert problem.startswith("d.yaml: borders[1].between: border between 'a1' and 'a_b', both")


def test_a_node_at_two_border_sites_is_named() -> None:
    doc = domains_doc()
    doc["borders"].append({"between": ["b1", "a_b"]})
    (problem,) = messages(doc)
    assert "node 'a_b' is already at a border site" in problem


def test_a_trust_of_an_unknown_domain_is_named_with_a_hint() -> None:
    doc = domains_doc()
    doc["domains"]["A"]["trusts"] = ["BB"]
    assert messages(doc) == [
        "d.yaml: domains.A.trusts[0]: trust of an unknown domain 'BB' (did you mean 'B'?)"
    ]


def test_domain_mistakes_are_all_named_at_once() -> None:
    doc = domains_doc()
    doc["domains"]["C"] = None  # no node
    doc["domains"]["A"]["trusts"] = ["A"]  # itself
    doc["nodes"]["a1"]["domain"] = "Q"  # unknown
    found = messages(doc)
    assert "d.yaml: domains.A.trusts[0]: domain 'A' trusts itself: its own CA always is" in found
    assert "d.yaml: domains.C: domain 'C' has no node" in found
    assert "d.yaml: nodes.a1.domain: unknown domain 'Q'; known: A, B, C" in found


def test_domains_words_in_a_file_without_domains_are_named() -> None:
    doc = domains_doc()
    del doc["domains"]
    found = messages(doc)
    assert (
        "d.yaml: nodes.a1.domain: node 'a1' names domain 'A' but the file declares no `domains`"
        in found
    )
    assert "d.yaml: borders: borders join domains, but the file declares no `domains`" in found


def test_apps_joined_only_by_a_border_site_are_reachable_and_without_it_are_not() -> None:
    doc = domains_doc()
    assert messages(doc) == []
    doc["borders"] = []
    assert any("disconnected" in m and "over links and borders" in m for m in messages(doc))


def test_the_single_domain_baseline_has_the_chains_hop_count() -> None:
    topology = load_topology(topology_path("three-domains"))
    flat = single_domain(topology)
    assert flat.domains == () and flat.borders == ()
    assert not validate_document_problems(flat)

    def hops(nodes: Any, links: Any, a: str, b: str) -> int:
        graph = nx.Graph()
        graph.add_nodes_from(n.name for n in nodes)
        graph.add_edges_from((link.a, link.b) for link in links)
        return int(nx.shortest_path_length(graph, a, b))

    def node_of(top: Any, sae: str) -> str:
        return str(next(app.node for app in top.apps if app.sae_id == sae))

    segments = hops(topology.nodes, topology.links, "a1", "a_b")
    segments += hops(topology.nodes, topology.links, "b_a", "b_c")
    segments += hops(topology.nodes, topology.links, "c_b", node_of(topology, "app-c"))
    flat_hops = hops(flat.nodes, flat.links, node_of(flat, "app-a"), node_of(flat, "app-c"))
    assert flat_hops == segments == 4


def validate_document_problems(topology: Any) -> list[str]:
    """The flattened topology written back as a document validates cleanly."""
    doc = {
        "nodes": {n.name: {"location": n.location} for n in topology.nodes},
        "links": [{"between": [link.a, link.b]} for link in topology.links],
        "apps": {app.sae_id: app.node for app in topology.apps},
    }
    return messages(copy.deepcopy(doc))


@pytest.mark.parametrize("bad", [[], "A", {"between": ["a1"]}])
def test_malformed_borders_are_named(bad: Any) -> None:
    doc = domains_doc()
    doc["borders"] = bad if not isinstance(bad, dict) else [bad]
    if bad == []:
        assert any("disconnected" in m for m in messages(doc))
    else:
        assert any(m.startswith("d.yaml: borders") for m in messages(doc))
