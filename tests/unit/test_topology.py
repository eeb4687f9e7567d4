"""Topology files: the packaged ones load, and every kind of mistake is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from agents.emulator.physics import link_rate
from lab.topology import (
    DEFAULT_TOPOLOGY,
    AppSpec,
    LinkSpec,
    NodeSpec,
    Problem,
    Topology,
    TopologyError,
    TopologySettings,
    load_topology,
    packaged_topologies,
    parse_topology,
    topology_path,
    validate_document,
)


def valid_doc() -> dict[str, Any]:
    return {
        "name": "triangle",
        "settings": {"key_size_bits": 256, "relay_mode": "aes-gcm", "e2e_buffer": 3},
        "defaults": {"preset": "field", "length_km": 20},
        "nodes": {"qnode1": {"location": "Madrid-Norte"}, "qnode2": {}, "qnode3": None},
        "links": [
            {"between": ["qnode1", "qnode2"], "length_km": 25},
            {"between": ["qnode2", "qnode3"], "skr_bps": 50000, "qber": 0.02},
        ],
        "apps": {"app1": {"node": "qnode1"}, "app2": "qnode3"},
    }


def messages(doc: object) -> list[str]:
    return [str(p) for p in validate_document(doc, "t.yaml")]


def one_problem(doc: object) -> str:
    found = messages(doc)
    assert len(found) == 1, found
    return found[0]


def test_valid_document_parses_with_defaults_applied() -> None:
    topology = parse_topology(valid_doc(), "t.yaml")
    assert topology == Topology(
        name="triangle",
        settings=TopologySettings(),
        nodes=(NodeSpec("qnode1", "Madrid-Norte"), NodeSpec("qnode2", ""), NodeSpec("qnode3", "")),
        links=(
            LinkSpec("qnode1", "qnode2", 25.0, 0.0, "field", None, None),
            LinkSpec("qnode2", "qnode3", 20.0, 0.0, "field", 50000.0, 0.02),
        ),
        apps=(AppSpec("app1", "qnode1"), AppSpec("app2", "qnode3")),
    )


def test_minimal_document_uses_builtin_defaults_and_the_file_name() -> None:
    doc = {"nodes": {"a": None, "b": None}, "links": [{"between": ["a", "b"]}]}
    topology = parse_topology(doc, "lab/mini.yaml")
    assert topology.name == "mini"
    assert topology.links == (LinkSpec("a", "b", 10.0, 0.0, "field", None, None),)
    assert topology.apps == ()
    assert topology.settings == TopologySettings()


@pytest.mark.parametrize("name", ["triangle", "metro-madrid", "chain10"])
def test_packaged_topologies_load(name: str) -> None:
    path = topology_path(name)
    assert path.parent.name == "topologies" and path.exists()
    topology = load_topology(path)
    assert topology.name == name
    for link in topology.links:
        rate = link_rate(link.preset, link.length_km, link.extra_loss_db, 0.0, link.skr_bps)
        assert not rate.aborted


def test_packaged_set_and_default() -> None:
    assert set(packaged_topologies()) >= {"triangle", "metro-madrid", "chain10"}
    assert topology_path("triangle") == DEFAULT_TOPOLOGY
    assert topology_path("some/other.yaml") == Path("some/other.yaml")


def test_triangle_is_the_reference_experiment() -> None:
    topology = load_topology(DEFAULT_TOPOLOGY)
    assert [n.name for n in topology.nodes] == ["qnode1", "qnode2", "qnode3"]
    assert {frozenset((link.a, link.b)) for link in topology.links} == {
        frozenset(p) for p in (("qnode1", "qnode2"), ("qnode2", "qnode3"), ("qnode1", "qnode3"))
    }
    assert topology.apps == (AppSpec("app1", "qnode1"), AppSpec("app2", "qnode3"))
    for link in topology.links:
        assert link.preset == "field"
        assert 100e3 <= link_rate("field", link.length_km).skr_bps <= 1e6  # hundreds of kbit/s


def test_metro_and_chain_shapes() -> None:
    metro = load_topology(topology_path("metro-madrid"))
    assert len(metro.nodes) == 9 and len(metro.apps) >= 4
    assert len({link.preset for link in metro.links}) >= 2
    assert sum(link.length_km for link in metro.links) > 130
    chain = load_topology(topology_path("chain10"))
    assert len(chain.nodes) == 11 and len(chain.links) == 10
    degrees = {n.name: sum(n.name in (k.a, k.b) for k in chain.links) for n in chain.nodes}
    assert sorted(degrees.values()) == [1, 1] + [2] * 9
    ends = {name for name, degree in degrees.items() if degree == 1}
    assert {app.node for app in chain.apps} == ends


def test_unknown_node_in_a_link() -> None:
    doc = valid_doc()
    doc["links"][1]["between"] = ["qnode2", "qnode9"]
    doc["apps"] = {"app1": "qnode1", "app2": "qnode2"}
    assert (
        one_problem(doc)
        == "t.yaml: links[1].between: unknown node 'qnode9' (did you mean 'qnode3'?)"
    )


@pytest.mark.parametrize("between", [["qnode2", "qnode1"], ["qnode1", "qnode2"]])
def test_duplicate_link_either_direction(between: list[str]) -> None:
    doc = valid_doc()
    doc["links"].append({"between": between})
    assert one_problem(doc) == "t.yaml: links[2].between: duplicate link " + (
        f"{between[0]}–{between[1]} (also links[0])"
    )


def test_self_loop() -> None:
    doc = valid_doc()
    doc["links"].append({"between": ["qnode3", "qnode3"]})
    assert "links[2].between: a link from 'qnode3' to itself" in one_problem(doc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (-1, "must be ≥ 0, not -1"),
        ("far", "must be a number, not text 'far'"),
        (True, "must be a number, not a boolean True"),
        (float("inf"), "must be a finite number"),
        (None, "must be a number, not nothing"),
    ],
)
def test_bad_length(value: object, expected: str) -> None:
    doc = valid_doc()
    doc["links"][0]["length_km"] = value
    assert f"links[0].length_km: {expected}" in one_problem(doc)


def test_unknown_preset_lists_the_known_ones() -> None:
    doc = valid_doc()
    doc["links"][0]["preset"] = "feild"
    assert one_problem(doc).endswith(
        "links[0].preset: unknown preset 'feild' (did you mean 'field'?); "
        "known: commercial, field, high-rate"
    )


@pytest.mark.parametrize(
    ("mutate", "where", "word"),
    [
        (lambda d: d.update(setings={}), "setings", "settings"),
        (lambda d: d["settings"].update(key_size=256), "settings.key_size", "key_size_bits"),
        (lambda d: d["defaults"].update(lenght_km=3), "defaults.lenght_km", "length_km"),
        (lambda d: d["nodes"]["qnode2"].update(locaton="x"), "nodes.qnode2.locaton", "location"),
        (lambda d: d["links"][0].update(betwen=1), "links[0].betwen", "between"),
        (lambda d: d["apps"]["app1"].update(nod="x"), "apps.app1.nod", "node"),
    ],
)
def test_unknown_keys_everywhere_with_a_suggestion(mutate: Any, where: str, word: str) -> None:
    doc = valid_doc()
    mutate(doc)
    assert one_problem(doc).startswith(f"t.yaml: {where}: unknown key")
    assert f"did you mean {word!r}?" in one_problem(doc)


def test_unknown_key_far_from_anything_lists_the_allowed() -> None:
    doc = valid_doc()
    doc["links"][0]["zzz"] = 1
    assert "allowed: between, length_km, extra_loss_db, preset, skr_bps, qber" in one_problem(doc)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "t.yaml: (document): a topology must be a mapping, not a list"),
        ({"nodes": ["a"]}, "t.yaml: nodes: nodes must be a mapping, not a list"),
        ({"nodes": {"a": 3}}, "t.yaml: nodes.a: node 'a' must be a mapping, not an integer"),
        ({"nodes": {"a": None}, "links": {}}, "t.yaml: links: links must be a list, not a mapping"),
        ({"nodes": {"a": None}, "apps": [1]}, "t.yaml: apps: apps must be a mapping, not a list"),
        ({"nodes": {}}, "t.yaml: nodes: empty: a topology needs at least one node"),
        ({"apps": {}}, "t.yaml: nodes: missing: a topology needs at least one node"),
        ({"nodes": {7: None}}, "t.yaml: nodes: key 7 must be text, not an integer"),
        ({"nodes": {"q-1": None}}, "t.yaml: nodes.q-1: 'q-1' is not a valid name"),
        ({"name": 5, "nodes": {"a": None}}, "t.yaml: name: must be text, not an integer 5"),
    ],
)
def test_wrong_types(doc: object, expected: str) -> None:
    assert one_problem(doc).startswith(expected)


def test_disconnected_application() -> None:
    doc = valid_doc()
    doc["nodes"]["island"] = None
    doc["apps"]["app3"] = "island"
    assert one_problem(doc) == (
        "t.yaml: apps.app3: disconnected: no other application is reachable from node "
        "'island' over links"
    )


def test_two_apps_on_one_isolated_node_are_fine() -> None:
    doc = valid_doc()
    doc["nodes"]["island"] = None
    doc["apps"].update(app3="island", app4="island")
    assert messages(doc) == []


def test_lone_application_is_disconnected() -> None:
    doc = valid_doc()
    del doc["apps"]["app2"]
    assert "apps.app1: disconnected" in one_problem(doc)


def test_application_on_an_unknown_node() -> None:
    doc = valid_doc()
    doc["apps"]["app2"] = {"node": "qnode7"}
    assert "apps.app2.node: unknown node 'qnode7'" in messages(doc)[0]


def test_duplicate_sae_id_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("nodes: {a: {}, b: {}}\nlinks: [{between: [a, b]}]\napps:\n  x: a\n  x: b\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert [str(p) for p in caught.value.problems] == [
        "dup.yaml: line 5, column 3: duplicate key 'x'"
    ]


def test_bad_sae_id() -> None:
    doc = valid_doc()
    doc["apps"]["app 2"] = "qnode2"
    assert "apps.'app 2': 'app 2' is not a valid name" in one_problem(doc)


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ({"qber": 0.6}, "links[1].qber: must be in [0, 0.5], not 0.6"),
        ({"qber": -0.01}, "links[1].qber: must be in [0, 0.5], not -0.01"),
        ({"skr_bps": -1}, "links[1].skr_bps: must be ≥ 0, not -1"),
        ({"extra_loss_db": -2}, "links[1].extra_loss_db: must be ≥ 0, not -2"),
    ],
)
def test_bad_link_values(link: dict[str, object], expected: str) -> None:
    doc = valid_doc()
    doc["links"][1].update(link)
    assert one_problem(doc) == f"t.yaml: {expected}"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"key_size_bits": 250}, "settings.key_size_bits: 250 is not a multiple of 8"),
        ({"key_size_bits": 2048}, "settings.key_size_bits: 2048 is outside [min_key_size_bits"),
        ({"key_size_bits": "256"}, "settings.key_size_bits: must be an integer, not text"),
        (
            {"relay_mode": "xor"},
            "settings.relay_mode: 'xor' is not a relay mode; use aes-gcm or otp",
        ),
        ({"e2e_buffer": 0}, "settings.e2e_buffer: must be in [1, 1000], not 0"),
        ({"link_pool_bits": 128}, "settings.link_pool_bits: 128 cannot hold one key of 256 bits"),
        ({"max_key_per_request": 0}, "settings.max_key_per_request: must be in [1, 10000], not 0"),
        (
            {"min_key_size_bits": 512, "max_key_size_bits": 256},
            "settings.min_key_size_bits: 512 is larger than max_key_size_bits 256",
        ),
        ({"min_key_size_bits": 60}, "settings.min_key_size_bits: 60 is not a multiple of 8"),
        ([1], "settings: settings must be a mapping, not a list"),
    ],
)
def test_bad_settings(settings: object, expected: str) -> None:
    doc = valid_doc()
    doc["settings"] = settings
    assert one_problem(doc).startswith(f"t.yaml: {expected}")


def test_otp_and_custom_settings_are_kept() -> None:
    doc = valid_doc()
    doc["settings"] = {"relay_mode": "otp", "key_size_bits": 128, "link_pool_bits": 4096}
    settings = parse_topology(doc, "t.yaml").settings
    assert settings == TopologySettings(relay_mode="otp", key_size_bits=128, link_pool_bits=4096)


def test_every_problem_is_reported_at_once() -> None:
    doc = valid_doc()
    doc["settings"]["relay_mode"] = "xor"
    doc["links"][0]["length_km"] = -5
    doc["links"][1]["qber"] = 2
    doc["apps"]["app1"]["node"] = "nowhere"
    doc["extra"] = True
    found = messages(doc)
    assert len(found) == 5, found
    with pytest.raises(TopologyError) as caught:
        parse_topology(doc, "t.yaml")
    assert [str(p) for p in caught.value.problems] == found
    assert str(caught.value) == "\n".join(found)


def test_validation_does_not_change_the_document() -> None:
    doc = valid_doc()
    doc["links"][0]["length_km"] = "x"
    before = copy.deepcopy(doc)
    validate_document(doc, "t.yaml")
    assert doc == before


def test_problem_text_and_value() -> None:
    problem = Problem("triangle.yaml", "links[1].between", "unknown node 'qnode9'")
    assert str(problem) == "triangle.yaml: links[1].between: unknown node 'qnode9'"
    with pytest.raises(AttributeError):
        problem.message = "x"  # type: ignore[misc]


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nnodes: {a: [}\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    (problem,) = caught.value.problems
    assert problem.file == "broken.yaml"
    assert problem.where == "line 2, column 13"
    assert problem.message.startswith("YAML:")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "(file): cannot read"),
        (b"\xff\xfe nodes", "(file): not UTF-8 text"),
        (b"[" * 5000, "(file)"),
        (b"", "(document): a topology must be a mapping, not nothing"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "f.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert expected in str(caught.value)


def test_large_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 1_000_001)
    with pytest.raises(TopologyError, match="at most 1000000"):
        load_topology(path)


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "x-metro: &metro {preset: high-rate, length_km: 5}\n"
        "nodes: {a: {}, b: {}, c: {}}\n"
        "links:\n"
        "  - {<<: *metro, between: [a, b]}\n"
        "  - {<<: *metro, between: [b, c], length_km: 7}\n"
    )
    with pytest.raises(TopologyError) as caught:
        load_topology(path)  # the anchor's holder is an unknown top-level key
    assert [p.where for p in caught.value.problems] == ["x-metro"]
    path.write_text(path.read_text().replace("x-metro: &metro", "defaults: &metro"))
    links = load_topology(path).links
    assert [(k.preset, k.length_km) for k in links] == [("high-rate", 5.0), ("high-rate", 7.0)]


def test_alias_bomb_is_answered_quickly(tmp_path: Path) -> None:
    """Nested aliases expand to 10^10 leaves if walked: messages must not render them."""
    lines = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "bombs:\n" + "\n".join(lines) + "\ndefaults: {length_km: *a9}\nnodes: {a: {}}\n"
    )
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    messages = [str(p) for p in caught.value.problems]
    assert "bomb.yaml:1: bombs: unknown key 'bombs'" in messages[0]
    assert messages[1].startswith(
        "bomb.yaml:12: defaults.length_km: must be a number, not a list [["
    )
    assert all(len(m) < 200 for m in messages)


def test_problems_from_a_file_carry_their_line(tmp_path: Path) -> None:
    path = tmp_path / "lines.yaml"
    path.write_text(
        "name: lines\n"
        "nodes:\n"
        "  a: {}\n"
        "  b: {locaton: x}\n"
        "links:\n"
        "  - between: [a, b]\n"
        "    length_km: -1\n"
        "  - {between: [b, c]}\n"
        "bogus: 1\n"
    )
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert [str(p) for p in caught.value.problems] == [
        "lines.yaml:4: nodes.b.locaton: unknown key 'locaton' (did you mean 'location'?)",
        "lines.yaml:7: links[0].length_km: must be ≥ 0, not -1",
        "lines.yaml:8: links[1].between: unknown node 'c'",
        "lines.yaml:9: bogus: unknown key 'bogus'; allowed: "
        "name, description, settings, defaults, domains, nodes, borders, links, apps",
    ]
    assert caught.value.problems[1] == Problem(
        "lines.yaml", "links[0].length_km", "must be ≥ 0, not -1", line=7
    )


def test_an_app_key_mode_reaches_the_shared_access_policy(tmp_path: Path) -> None:
    from lab.configs import policy_data
    from lab.launcher import make_plan
    from lab.topology import load_topology, topology_path

    topo_file = topology_path("triangle-outage")
    topology = load_topology(topo_file)
    assert {a.sae_id: a.key_mode for a in topology.apps}["app3"] == "qkd-only"
    plan = make_plan(topology, topo_file, tmp_path, with_pki=False)
    policy = policy_data(plan)
    assert policy is not None
    assert policy["saes"]["app5"] == {"peers": "*", "key_mode": "hybrid-either"}
    assert policy["saes"]["app2"] == {"peers": "*"}
    from km.access import AccessPolicy

    assert AccessPolicy.from_dict(policy).mode_for("app3", "app4").value == "qkd-only"
