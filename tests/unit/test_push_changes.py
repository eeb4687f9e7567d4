"""On-change detection: two snapshots of selected data → the YANG Patch edits, only what
changed, each edit naming its node the RESTCONF way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from agents.netconf.push.changes import Edit, changes, without
from agents.netconf.push.model import ChangeType

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
SDN = "urn:qkdsdn:yang:qkdsdn-node"
MODULES = {NS: "etsi-qkd-sdn-node", SDN: "qkdsdn-node"}
KEYS = {"qkd_link": ("qkdl_id",), "qkd_app": ("app_id",)}


def keys_of(element: etree._Element) -> tuple[str, ...]:
    return KEYS.get(etree.QName(element).localname, ())


def node(links: dict[str, tuple[str, int]], extra: str = "") -> list[etree._Element]:
    """A qkd_node with links id → (status, skr)."""
    body = "".join(
        f"<qkd_link><qkdl_id>{link}</qkdl_id><qkdl_status>{status}</qkdl_status>"
        f"<qkdl_performance><skr>{skr}</skr></qkdl_performance></qkd_link>"
        for link, (status, skr) in links.items()
    )
    xml = f'<qkd_node xmlns="{NS}"><qkdn_id>n1</qkdn_id><qkd_links>{body}</qkd_links>{extra}</qkd_node>'
    return [etree.fromstring(xml)]


def edits(old: list[etree._Element], new: list[etree._Element]) -> list[Edit]:
    return changes(old, new, keys_of, MODULES)


def summary(found: list[Edit]) -> list[tuple[str, str, str | None]]:
    return [
        (e.operation.value, e.target, None if e.value is None else etree.tostring(e.value).decode())
        for e in found
    ]


def test_the_same_snapshot_twice_has_no_changes() -> None:
    snapshot = node({"l1": ("ACTIVE", 1000)})
    assert edits(snapshot, node({"l1": ("ACTIVE", 1000)})) == []


def test_a_link_going_down_is_a_replace_of_each_changed_leaf_in_that_entry() -> None:
    before = node({"l1": ("ACTIVE", 1000), "l2": ("ACTIVE", 500)})
    after = node({"l1": ("OFF", 0), "l2": ("ACTIVE", 500)})
    assert [(op, target) for op, target, _ in summary(edits(before, after))] == [
        ("replace", "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=l1/qkdl_status"),
        ("replace", "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=l1/qkdl_performance/skr"),
    ]
    status = edits(before, after)[0].value
    assert status is not None and status.text == "OFF" and etree.QName(status).namespace == NS


def test_a_new_entry_is_created_whole_and_a_gone_one_deleted() -> None:
    before = node({"l1": ("ACTIVE", 1000)})
    after = node({"l2": ("PASSIVE", 0)})
    found = summary(edits(before, after))
    assert found[0] == ("delete", "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=l1", None)
    operation, target, value = found[1]
    assert (operation, target) == ("create", "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=l2")
    assert value is not None and "<qkdl_status>PASSIVE</qkdl_status>" in value


def test_key_values_are_percent_encoded_in_the_target() -> None:
    before = node({"a b/c": ("ACTIVE", 1)})
    after = node({"a b/c": ("OFF", 1)})
    (edit,) = edits(before, after)
    assert edit.target == "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=a%20b%2Fc/qkdl_status"


def test_a_node_of_another_module_is_named_with_its_module() -> None:
    before = node({}, f'<key_manager xmlns="{SDN}"><relay_address>a</relay_address></key_manager>')
    after = node({}, f'<key_manager xmlns="{SDN}"><relay_address>b</relay_address></key_manager>')
    (edit,) = edits(before, after)
    assert edit.target == "/etsi-qkd-sdn-node:qkd_node/qkdsdn-node:key_manager/relay_address"


def test_leaf_list_entries_are_matched_by_value() -> None:
    def hops(*values: str) -> list[etree._Element]:
        inner = "".join(f"<virt_next_hop>{v}</virt_next_hop>" for v in values)
        return node({}, f"<hops>{inner}</hops>")

    found = summary(edits(hops("x", "y"), hops("y", "z")))
    assert [(op, target) for op, target, _ in found] == [
        ("delete", "/etsi-qkd-sdn-node:qkd_node/hops/virt_next_hop=x"),
        ("create", "/etsi-qkd-sdn-node:qkd_node/hops/virt_next_hop=z"),
    ]


def test_excluded_change_kinds_are_left_out() -> None:
    before = node({"l1": ("ACTIVE", 1000)})
    after = node({"l1": ("OFF", 1000), "l2": ("ACTIVE", 5)})
    found = edits(before, after)
    kinds = {edit.operation for edit in found}
    assert kinds == {ChangeType.REPLACE, ChangeType.CREATE}
    assert {e.operation for e in without(found, frozenset({ChangeType.CREATE}))} == {
        ChangeType.REPLACE
    }


@given(
    st.dictionaries(st.sampled_from(["l1", "l2", "l3", "l4"]), st.integers(0, 3)),
    st.dictionaries(st.sampled_from(["l1", "l2", "l3", "l4"]), st.integers(0, 3)),
)
def test_every_difference_is_reported_once_and_nothing_else(
    old: dict[str, int], new: dict[str, int]
) -> None:
    before = node({link: ("ACTIVE", skr) for link, skr in old.items()})
    after = node({link: ("ACTIVE", skr) for link, skr in new.items()})
    found = {(e.operation, e.target.split("/")[3]) for e in edits(before, after)}
    expected = {(ChangeType.DELETE, f"qkd_link={k}") for k in old.keys() - new.keys()}
    expected |= {(ChangeType.CREATE, f"qkd_link={k}") for k in new.keys() - old.keys()}
    expected |= {
        (ChangeType.REPLACE, f"qkd_link={k}") for k in old.keys() & new.keys() if old[k] != new[k]
    }
    assert found == expected
    assert len(edits(before, after)) == len(expected)
