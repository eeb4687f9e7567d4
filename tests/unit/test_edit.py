"""The datastore's edit engine (RFC 6241 §7.2 operations) on a small tree, with a hand-written
schema shape."""

from __future__ import annotations

import pytest
from lxml import etree

from agents.datastore.edit import (
    NodeKind,
    Operation,
    SchemaPath,
    Shape,
    apply_edit,
    parse_operation,
)
from agents.datastore.errors import DatastoreError, ErrorItem, ErrorKind
from agents.datastore.tree import BASE_NS
from agents.netconf.errors import NetconfError
from agents.netconf.rpcs import parse_default_operation

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES = "urn:etsi:qkd:yang:etsi-qkd-node-types"

SHAPES: dict[tuple[str, ...], Shape] = {
    ("qkd_node",): Shape(NodeKind.CONTAINER),
    ("qkd_node", "qkdn_id"): Shape(NodeKind.LEAF),
    ("qkd_node", "qkdn_location_id"): Shape(NodeKind.LEAF),
    ("qkd_node", "qkd_links"): Shape(NodeKind.CONTAINER),
    ("qkd_node", "qkd_links", "qkd_link"): Shape(NodeKind.LIST, ("qkdl_id",)),
    ("qkd_node", "qkd_links", "qkd_link", "qkdl_id"): Shape(NodeKind.LEAF),
    ("qkd_node", "qkd_links", "qkd_link", "qkdl_type"): Shape(NodeKind.LEAF),
    ("qkd_node", "qkd_links", "qkd_link", "qkdl_enable"): Shape(NodeKind.LEAF),
    ("qkd_node", "qkd_links", "qkd_link", "virt_next_hop"): Shape(NodeKind.LEAF_LIST),
}


def shape_of(path: SchemaPath) -> Shape | None:
    if any(namespace != NS for namespace, _ in path):
        return None
    return SHAPES.get(tuple(local for _, local in path))


START = f"""<data xmlns="{BASE_NS}"><qkd_node xmlns="{NS}">
<qkdn_id>n1</qkdn_id>
<qkd_links>
  <qkd_link><qkdl_id>L1</qkdl_id><qkdl_enable>true</qkdl_enable>
    <virt_next_hop>a</virt_next_hop><virt_next_hop>b</virt_next_hop></qkd_link>
  <qkd_link><qkdl_id>L2</qkdl_id><qkdl_enable>false</qkdl_enable></qkd_link>
</qkd_links></qkd_node></data>"""


def _edit(
    config_body: str,
    default: Operation = Operation.MERGE,
    errors: list[ErrorItem] | None = None,
) -> etree._Element:
    target = etree.fromstring(START, etree.XMLParser(remove_blank_text=True))
    config = etree.fromstring(
        f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}">'
        f'<qkd_node xmlns="{NS}">{config_body}</qkd_node></config>'
    )
    apply_edit(target, config, default, shape_of, errors)
    return target


def _xp(tree: etree._Element, expression: str) -> list[str]:
    found = tree.xpath(expression, namespaces={"q": NS})
    assert isinstance(found, list)
    return [str(v) for v in found]


def _link_ids(tree: etree._Element) -> list[str]:
    return _xp(tree, "//q:qkd_link/q:qkdl_id/text()")


def test_merge_adds_a_new_list_entry_and_keeps_the_others() -> None:
    tree = _edit("<qkd_links><qkd_link><qkdl_id>L3</qkdl_id></qkd_link></qkd_links>")
    assert _link_ids(tree) == ["L1", "L2", "L3"]


def test_merge_changes_a_leaf_of_an_existing_entry() -> None:
    tree = _edit(
        "<qkd_links><qkd_link><qkdl_id>L2</qkdl_id>"
        "<qkdl_enable>true</qkdl_enable></qkd_link></qkd_links>"
    )
    assert _xp(tree, "//q:qkd_link[q:qkdl_id='L2']/q:qkdl_enable/text()") == ["true"]


def test_merge_adds_to_a_leaf_list_without_duplicates() -> None:
    tree = _edit(
        "<qkd_links><qkd_link><qkdl_id>L1</qkdl_id>"
        "<virt_next_hop>b</virt_next_hop><virt_next_hop>c</virt_next_hop>"
        "</qkd_link></qkd_links>"
    )
    assert _xp(tree, "//q:qkd_link[q:qkdl_id='L1']/q:virt_next_hop/text()") == ["a", "b", "c"]


def test_replace_of_an_entry_drops_its_other_children() -> None:
    tree = _edit(
        '<qkd_links><qkd_link nc:operation="replace"><qkdl_id>L1</qkdl_id></qkd_link></qkd_links>'
    )
    assert _xp(tree, "//q:qkd_link[q:qkdl_id='L1']/*/text()") == ["L1"]
    assert _link_ids(tree) == ["L1", "L2"]


def test_default_replace_replaces_the_whole_tree() -> None:
    tree = _edit("<qkdn_id>n9</qkdn_id>", default=Operation.REPLACE)
    assert _xp(tree, "//q:qkdn_id/text()") == ["n9"]
    assert _link_ids(tree) == []


def test_create_of_existing_entry_is_data_exists() -> None:
    with pytest.raises(DatastoreError) as caught:
        _edit(
            '<qkd_links><qkd_link nc:operation="create"><qkdl_id>L1</qkdl_id>'
            "</qkd_link></qkd_links>"
        )
    error = caught.value.errors[0]
    assert error.kind is ErrorKind.DATA_EXISTS
    assert error.path == "/qkd_node/qkd_links/qkd_link[qkdl_id='L1']"


def test_create_of_new_entry_succeeds() -> None:
    tree = _edit(
        '<qkd_links><qkd_link nc:operation="create"><qkdl_id>L7</qkdl_id>'
        "<qkdl_enable>true</qkdl_enable></qkd_link></qkd_links>"
    )
    assert _link_ids(tree) == ["L1", "L2", "L7"]


def test_delete_of_missing_entry_is_data_missing() -> None:
    with pytest.raises(DatastoreError) as caught:
        _edit(
            '<qkd_links><qkd_link nc:operation="delete"><qkdl_id>L9</qkdl_id>'
            "</qkd_link></qkd_links>"
        )
    assert caught.value.errors[0].kind is ErrorKind.DATA_MISSING


def test_delete_and_remove_take_entries_and_leaf_list_values_away() -> None:
    tree = _edit(
        '<qkd_links><qkd_link nc:operation="delete"><qkdl_id>L2</qkdl_id></qkd_link>'
        '<qkd_link><qkdl_id>L1</qkdl_id><virt_next_hop nc:operation="remove">a</virt_next_hop>'
        "</qkd_link></qkd_links>"
    )
    assert _link_ids(tree) == ["L1"]
    assert _xp(tree, "//q:virt_next_hop/text()") == ["b"]


def test_remove_of_missing_entry_is_no_error() -> None:
    tree = _edit(
        '<qkd_links><qkd_link nc:operation="remove"><qkdl_id>L9</qkdl_id></qkd_link></qkd_links>'
    )
    assert _link_ids(tree) == ["L1", "L2"]


def test_default_none_only_applies_explicit_operations() -> None:
    tree = _edit(
        "<qkdn_id>ignored</qkdn_id><qkd_links>"
        '<qkd_link><qkdl_id>L1</qkdl_id><qkdl_enable nc:operation="delete"/></qkd_link>'
        "<qkd_link><qkdl_id>L5</qkdl_id></qkd_link></qkd_links>",
        default=Operation.NONE,
    )
    assert _xp(tree, "//q:qkdn_id/text()") == ["n1"]
    assert _link_ids(tree) == ["L1", "L2"]  # L5 was only a path, not created
    assert _xp(tree, "//q:qkd_link[q:qkdl_id='L1']/q:qkdl_enable") == []


def test_default_none_with_missing_level_and_delete_is_data_missing() -> None:
    with pytest.raises(DatastoreError) as caught:
        _edit(
            '<qkd_links><qkd_link><qkdl_id>L5</qkdl_id><qkdl_enable nc:operation="delete"/>'
            "</qkd_link></qkd_links>",
            default=Operation.NONE,
        )
    assert caught.value.errors[0].kind is ErrorKind.DATA_MISSING


def test_unknown_element_is_rejected_with_its_path() -> None:
    with pytest.raises(DatastoreError) as caught:
        _edit("<qkd_links><bogus>1</bogus></qkd_links>")
    error = caught.value.errors[0]
    assert error.kind is ErrorKind.UNKNOWN_ELEMENT
    assert error.path == "/qkd_node/qkd_links/bogus"


def test_node_in_a_foreign_namespace_is_unknown_namespace() -> None:
    target = etree.fromstring(START, etree.XMLParser(remove_blank_text=True))
    config = etree.fromstring(
        f'<config xmlns="{BASE_NS}"><qkd_node xmlns="{NS}">'
        '<qkd_links xmlns="urn:elsewhere"/></qkd_node></config>'
    )
    with pytest.raises(DatastoreError) as caught:
        apply_edit(target, config, Operation.MERGE, shape_of, namespaces=frozenset({NS}))
    error = caught.value.errors[0]
    assert error.kind is ErrorKind.UNKNOWN_NAMESPACE
    assert error.namespace == "urn:elsewhere"


def test_list_entry_without_key_is_missing_element() -> None:
    with pytest.raises(DatastoreError) as caught:
        _edit("<qkd_links><qkd_link><qkdl_enable>true</qkdl_enable></qkd_link></qkd_links>")
    assert caught.value.errors[0].kind is ErrorKind.MISSING_KEY


def test_continue_on_error_collects_errors_and_applies_the_rest() -> None:
    errors: list[ErrorItem] = []
    tree = _edit(
        '<qkd_links><qkd_link nc:operation="create"><qkdl_id>L1</qkdl_id></qkd_link>'
        "<qkd_link><qkdl_id>L4</qkdl_id></qkd_link></qkd_links>",
        errors=errors,
    )
    assert [e.kind for e in errors] == [ErrorKind.DATA_EXISTS]
    assert _link_ids(tree) == ["L1", "L2", "L4"]


def test_identityref_value_keeps_its_prefix_declared_after_the_move() -> None:
    target = etree.fromstring(START, etree.XMLParser(remove_blank_text=True))
    config = etree.fromstring(
        f'<config xmlns="{BASE_NS}" xmlns:t="{TYPES}"><qkd_node xmlns="{NS}"><qkd_links>'
        "<qkd_link><qkdl_id>L1</qkdl_id><qkdl_type>t:VIRT</qkdl_type></qkd_link>"
        "</qkd_links></qkd_node></config>"
    )
    apply_edit(target, config, Operation.MERGE, shape_of)
    del config
    reparsed = etree.fromstring(etree.tostring(target))
    leaf = reparsed.find(f".//{{{NS}}}qkdl_type")
    assert leaf is not None
    assert leaf.text == "t:VIRT"
    assert leaf.nsmap["t"] == TYPES


def test_operation_values_are_checked() -> None:
    assert parse_operation("delete") is Operation.DELETE
    assert parse_default_operation("none") is Operation.NONE
    with pytest.raises(DatastoreError) as caught:
        parse_operation("none")
    assert caught.value.errors[0].kind is ErrorKind.BAD_OPERATION
    with pytest.raises(NetconfError):
        parse_default_operation("create")
