"""yang/model.py's consumer views and fast paths: the same values as the full parse, same checks."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from controller.nodedata import node_data, parse_node
from km.associations import node_view, parse_node_config
from yang.codegen.pymodel import VIEWS, ClassDef, Field, Generator, UnsupportedYang
from yang.model import (
    AppQos,
    HopKeyManager,
    ModelError,
    QkdApp,
    QkdInterfaces,
    QkdLink,
    QkdNode,
    View,
)
from yang.schema import Schema

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
TOP = "etsi-qkd-sdn-node:qkd_node"
NODE_1 = "9d4a4b8e-52f4-5a8e-9c1e-000000000001"
NODE_3 = "9d4a4b8e-52f4-5a8e-9c1e-000000000003"


def rich_tree(name: str) -> QkdNode:
    """A golden tree whose VIRT link also names the hops' key managers (every leaf a view may
    read is set somewhere)."""
    node = QkdNode.from_xml((GOLDEN / name).read_text(encoding="utf-8"))
    hops = (HopKeyManager(NODE_1, "10.0.0.1:50052"), HopKeyManager(NODE_3, "10.0.0.3:50052"))
    links = tuple(
        dataclasses.replace(link, hop_key_manager=hops) if link.virt_bandwidth else link
        for link in node.qkd_links.qkd_link
    )
    assert any(link.hop_key_manager for link in links)
    return dataclasses.replace(node, qkd_links=dataclasses.replace(node.qkd_links, qkd_link=links))


def as_xml(node: QkdNode) -> str:
    data = Schema.default().json_to_xml(node.to_json())
    return f'<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><data>{data}</data></rpc-reply>'


@pytest.mark.parametrize("name", ["qkd-node-config.xml", "qkd-node-state.xml"])
def test_the_key_manager_view_gives_the_key_manager_the_values_of_the_full_tree(name: str) -> None:
    node = rich_tree(name)
    text = json.dumps(node.to_json())
    assert parse_node_config(text, 7) == node_view(QkdNode.from_json_text(text), 7)
    assert parse_node_config(text).relay_addresses  # the hop key managers were read


@pytest.mark.parametrize("name", ["qkd-node-config.xml", "qkd-node-state.xml"])
def test_the_controller_view_gives_the_controller_the_values_of_the_full_tree(name: str) -> None:
    node = rich_tree(name)
    xml = as_xml(node)
    assert parse_node(xml) == node_data(QkdNode.from_xml(xml, ignore_unknown=True))
    assert parse_node(xml).virt_links[0].hop_relays


@pytest.mark.parametrize("view", [View.KEY_MANAGER, View.CONTROLLER])
def test_a_view_leaves_out_only_parts_it_names(view: View) -> None:
    node = rich_tree("qkd-node-state.xml")
    seen = QkdNode.from_json(node.to_json(), view=view)
    assert seen.qkdn_id == node.qkdn_id
    assert seen.qkdn_capabilities != node.qkdn_capabilities  # left out by both views
    [app], [full_app] = seen.qkd_applications.qkd_app, node.qkd_applications.qkd_app
    assert (app.app_id, app.client_app_id, app.admission) == (
        full_app.app_id,
        full_app.client_app_id,
        full_app.admission,
    )
    assert app.app_statistics != full_app.app_statistics or not full_app.app_statistics.statistics
    for link, full_link in zip(seen.qkd_links.qkd_link, node.qkd_links.qkd_link, strict=True):
        assert (link.qkdl_id, link.qkdl_type, link.virt_next_hop, link.hop_key_manager) == (
            full_link.qkdl_id,
            full_link.qkdl_type,
            full_link.virt_next_hop,
            full_link.hop_key_manager,
        )
    if view is View.KEY_MANAGER:
        assert seen.qkd_interfaces == QkdInterfaces() != node.qkd_interfaces
        assert app.app_qos == AppQos() != full_app.app_qos
    else:
        assert [i.qkdi_id for i in seen.qkd_interfaces.qkd_interface] == [
            i.qkdi_id for i in node.qkd_interfaces.qkd_interface
        ]
        assert app.app_qos.min_bandwidth == full_app.app_qos.min_bandwidth
    # What XML gives through the view is what JSON gives.
    assert QkdNode.from_xml(as_xml(node), view=view) == seen


def mutated(change: Any) -> dict[str, Any]:
    doc = rich_tree("qkd-node-config.xml").to_json()
    doc = copy.deepcopy(doc)
    change(doc[TOP])
    return doc


def bad_app_id(node: dict[str, Any]) -> None:
    node["qkd_applications"]["qkd_app"][0]["app_id"] = "not-a-uuid"


def unknown_member(node: dict[str, Any]) -> None:
    node["qkd_links"]["qkd_link"][1]["wormhole"] = True


def bad_next_hop(node: dict[str, Any]) -> None:
    node["qkd_links"]["qkd_link"][1]["virt_next_hop"] = [NODE_3, {"not": "a string"}]


@pytest.mark.parametrize("view", list(View))
@pytest.mark.parametrize(
    ("change", "where"),
    [
        (bad_app_id, "qkd_app[0]/app_id"),
        (unknown_member, "qkd_link[1]: unknown member 'wormhole'"),
        (bad_next_hop, "qkd_link[1]/virt_next_hop"),
    ],
)
def test_every_view_refuses_a_bad_value_in_what_it_reads_naming_the_entry(
    view: View, change: Any, where: str
) -> None:
    with pytest.raises(ModelError, match=where.replace("[", r"\[").replace("]", r"\]")):
        QkdNode.from_json(mutated(change), view=view)


def test_the_key_manager_view_does_not_read_the_subtrees_it_leaves_out() -> None:
    def bad_interface(node: dict[str, Any]) -> None:
        node["qkd_interfaces"]["qkd_interface"][0]["qkdi_model"] = 42

    doc = mutated(bad_interface)
    with pytest.raises(ModelError, match=r"qkd_interface\[0\]/qkdi_model"):
        QkdNode.from_json(doc)
    assert QkdNode.from_json(doc, view=View.KEY_MANAGER).qkd_interfaces == QkdInterfaces()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([NODE_3, 7], "expected a string, not the number 7"),
        ([NODE_3, "not-a-uuid"], "does not match the pattern"),
        ([[NODE_3]], "expected a string, not an array"),
        ("not a list", "expected an array"),
    ],
)
def test_a_string_leaf_list_refuses_any_bad_item(items: object, message: str) -> None:
    def set_path(node: dict[str, Any]) -> None:
        node["qkd_applications"]["qkd_app"][0]["qkdsdn-node:admission"]["path"] = items

    with pytest.raises(ModelError, match=message):
        QkdNode.from_json(mutated(set_path))


def virt_link(node: QkdNode) -> QkdLink:
    [link] = [link for link in node.qkd_links.qkd_link if link.virt_prev_hop]
    return link


def with_bandwidth(text: str) -> str:
    """The rich state tree's XML with `text` as the VIRT link's virt_bandwidth."""
    node = rich_tree("qkd-node-state.xml")
    xml = as_xml(node)
    old = f"<virt_bandwidth>{virt_link(node).virt_bandwidth}<"
    assert xml.count(old) == 1
    return xml.replace(old, f"<virt_bandwidth>{text}<")


@pytest.mark.parametrize(
    ("text", "read"),
    [("12", 12), (" 12\n", 12), ("0", 0), ("4294967295", 4294967295)],
)
def test_an_xml_integer_is_read_with_or_without_spaces(text: str, read: int) -> None:
    xml = with_bandwidth(text)
    for view in View:
        assert virt_link(QkdNode.from_xml(xml, view=view)).virt_bandwidth == read


@pytest.mark.parametrize("text", ["-1", "4294967296", "9" * 5000, "", "1e3", "0x10", "true"])
def test_an_xml_integer_out_of_range_or_not_a_number_is_refused_naming_the_leaf(text: str) -> None:
    xml = with_bandwidth(text)
    for view in View:
        with pytest.raises(ModelError, match=r"qkd_link\[1\]/virt_bandwidth"):
            QkdNode.from_xml(xml, view=view)


@pytest.mark.parametrize("text", ["True", "1", "", "yes"])
def test_an_xml_boolean_other_than_true_or_false_is_refused(text: str) -> None:
    xml = as_xml(rich_tree("qkd-node-state.xml"))
    xml = xml.replace("<qkdl_enable>true<", f"<qkdl_enable>{text}<", 1)
    with pytest.raises(ModelError, match=r"qkd_link\[0\]/qkdl_enable"):
        QkdNode.from_xml(xml)


def test_two_list_entries_with_the_same_enum_key_are_refused() -> None:
    xml = (GOLDEN / "qkd-node-state.xml").read_text(encoding="utf-8")
    start = xml.index("<phys_perf>")
    entry = xml[start : xml.index("</phys_perf>", start) + len("</phys_perf>")]
    with pytest.raises(ModelError, match="two entries with perf_type"):
        QkdNode.from_xml(xml.replace(entry, entry + entry, 1))


def test_an_object_the_reader_builds_is_a_frozen_value_like_one_built_by_hand() -> None:
    node = rich_tree("qkd-node-config.xml")
    read = QkdNode.from_json(node.to_json())
    link = read.qkd_links.qkd_link[1]
    by_hand = QkdLink(**{f.name: getattr(link, f.name) for f in dataclasses.fields(QkdLink)})
    assert type(link) is QkdLink and link == by_hand and hash(link) == hash(by_hand)
    with pytest.raises(dataclasses.FrozenInstanceError):
        link.qkdl_id = "x"  # type: ignore[misc]
    assert dataclasses.replace(link, virt_bandwidth=1).virt_bandwidth == 1
    assert isinstance(read.qkd_applications.qkd_app[0], QkdApp)


def test_json_text_that_is_not_json_is_refused_at_the_root() -> None:
    for text in ("{", '{"a": NaN}', b"\xff"):
        with pytest.raises(ModelError, match=r"^/: not JSON"):
            QkdNode.from_json_text(text)


def generator_with(*classes: ClassDef) -> Generator:
    generator = Generator(ctx=None)
    generator.classes = list(classes)
    return generator


def test_a_view_naming_a_part_the_model_lacks_stops_the_generation() -> None:
    leaf = Field("qkdn_version", "qkdn_version", "leaf", "qkdn_version", "{ns}qkdn_version")
    key = Field("qkdn_id", "qkdn_id", "leaf", "qkdn_id", "{ns}qkdn_id", required=True)
    root = ClassDef("QkdNode", "qkd_node", "container", "", [key, leaf])
    generator = generator_with(root)
    assert generator.resolve_view("V", ("qkdn_version",), root) == {
        "QkdNode": frozenset({"qkdn_version"})
    }
    with pytest.raises(UnsupportedYang, match="view V: qkdn_versio: the model has no"):
        generator.resolve_view("V", ("qkdn_versio",), root)
    with pytest.raises(UnsupportedYang, match="view V: qkdn_id: a key or mandatory leaf"):
        generator.resolve_view("V", ("qkdn_id",), root)
    with pytest.raises(UnsupportedYang, match="no container or list 'qkd_links'"):
        generator.resolve_view("V", ("qkd_links/qkd_link",), root)


def test_the_declared_views_are_the_views_of_the_model() -> None:
    assert [view.name for view in View] == ["FULL", *VIEWS]
