"""Datastore with several modules: an edit checks only the modules it names, and decides as a
whole check would; the backend is handed only the nodes it reads."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libyang
import pytest
from lxml import etree

from agents.datastore import Datastore, DatastoreError, DatastoreName, ErrorKind
from agents.datastore.store import TestOption as EditTest
from agents.datastore.tree import BASE_NS
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
NACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
NODE_ID = "11111111-1111-4111-8111-111111111111"
LINK_A = "22222222-2222-4222-8222-222222222222"
ROOT = "etsi-qkd-sdn-node:qkd_node"
NACM_ROOT = "ietf-netconf-acm:nacm"
NACM = (
    f'<nacm xmlns="{NACM_NS}"><write-default>deny</write-default>'
    "<groups><group><name>controller</name><user-name>qkdsdn</user-name></group></groups>"
    "</nacm>"
)
INITIAL = (
    f'<data xmlns="{BASE_NS}"><qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id></qkd_node>'
    f"{NACM}</data>"
)


class Backend:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []

    def veto(self, new_running: dict[str, Any]) -> str | None:
        self.seen.append(new_running)
        return None

    def apply(self, new_running: dict[str, Any]) -> None:
        self.applied.append(new_running)

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(running)
        return {}


def _config(*bodies: str) -> etree._Element:
    return etree.fromstring(
        f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}" xmlns:t="{TYPES_NS}">'
        f"{''.join(bodies)}</config>"
    )


def _node(body: str) -> str:
    return f'<qkd_node xmlns="{NS}">{body}</qkd_node>'


def _nacm(body: str, operation: str = "") -> str:
    attribute = f' nc:operation="{operation}"' if operation else ""
    return f'<nacm xmlns="{NACM_NS}"{attribute}>{body}</nacm>'


def _link(bandwidth: str) -> str:
    return (
        f"<qkd_links><qkd_link><qkdl_id>{LINK_A}</qkdl_id><qkdl_type>t:VIRT</qkdl_type>"
        f"<virt_bandwidth>{bandwidth}</virt_bandwidth></qkd_link></qkd_links>"
    )


# Valid and invalid edits of one module, of the other, of both, removing and adding a module.
EDITS: list[etree._Element] = [
    _config(_node(_link("100"))),
    _config(_node(_link("-5"))),  # invalid node edit
    _config(_nacm("<write-default>maybe</write-default>")),  # invalid /nacm edit
    _config(_nacm("<read-default>deny</read-default>")),
    _config(_node(f'<qkdn_id nc:operation="delete">{NODE_ID}</qkdn_id>')),  # mandatory
    _config(_node(_link("200")), _nacm("<exec-default>deny</exec-default>")),
    _config(_node(_link("300")), _nacm("<exec-default>sometimes</exec-default>")),
    _config(_nacm("", operation="delete")),  # a module goes: everything is checked
    _config(_node(_link("400"))),
    _config(_nacm("<enable-nacm>true</enable-nacm>")),  # and comes back
    _config(_nacm("<groups><group><name>a b</name></group></groups>")),  # bad group name
    _config(_node(_link("400"))),  # changes nothing
    _config(),
]


def _outcomes(store: Datastore, target: DatastoreName) -> Iterator[tuple[object, ...]]:
    for config in EDITS:
        try:
            store.edit(target, copy.deepcopy(config), test_option=EditTest.TEST_THEN_SET)
            if target is DatastoreName.CANDIDATE:
                store.commit()
            outcome: tuple[object, ...] = ("ok",)
        except DatastoreError as error:
            outcome = tuple((item.kind, item.message, item.path) for item in error.errors)
        yield (
            outcome,
            store.revision,
            etree.tostring(store.config(DatastoreName.RUNNING), method="c14n"),
            store.running_json(),
        )


@pytest.mark.parametrize("target", [DatastoreName.RUNNING, DatastoreName.CANDIDATE])
def test_edits_checked_module_by_module_decide_as_the_whole_check_does(
    tmp_path: Path, target: DatastoreName, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = Datastore(Schema.default(), Backend(), tmp_path / "fast.xml", INITIAL)
    fast_outcomes = list(_outcomes(fast, target))
    whole = Datastore(Schema.default(), Backend(), tmp_path / "whole.xml", INITIAL)
    monkeypatch.setattr(
        Datastore, "_check_edited", lambda self, work, base, config: self._check(work)
    )
    assert fast_outcomes == list(_outcomes(whole, target))
    assert (tmp_path / "fast.xml").read_text() == (tmp_path / "whole.xml").read_text()
    kinds = [
        item[0]
        for outcome in fast_outcomes
        if isinstance(outcome[0], tuple) and outcome[0] != ("ok",)
        for item in outcome[0]
        if isinstance(item, tuple)
    ]
    assert ErrorKind.INVALID_VALUE in kinds and ErrorKind.DATA_MISSING in kinds


def test_an_invalid_node_edit_is_refused_beside_valid_rules_and_changes_nothing(
    tmp_path: Path,
) -> None:
    store = Datastore(Schema.default(), Backend(), None, INITIAL)
    before = store.running_json()
    with pytest.raises(DatastoreError) as caught:
        store.edit(DatastoreName.RUNNING, _config(_node(_link("-5"))))
    assert caught.value.errors[0].kind is ErrorKind.INVALID_VALUE
    assert store.running_json() == before and store.revision == 0


def test_an_invalid_nacm_edit_is_refused_beside_a_valid_node_and_changes_nothing(
    tmp_path: Path,
) -> None:
    store = Datastore(Schema.default(), Backend(), None, INITIAL)
    store.edit(DatastoreName.RUNNING, _config(_node(_link("100"))))
    before = store.running_json()
    with pytest.raises(DatastoreError) as caught:
        store.edit(DatastoreName.RUNNING, _config(_nacm("<write-default>maybe</write-default>")))
    assert caught.value.errors[0].kind is ErrorKind.INVALID_VALUE
    assert "maybe" in caught.value.errors[0].message
    assert store.running_json() == before and store.revision == 1


def test_the_backend_is_handed_only_the_nodes_it_reads() -> None:
    backend = Backend()
    store = Datastore(Schema.default(), backend, None, INITIAL, backend_reads=frozenset({ROOT}))
    store.edit(DatastoreName.RUNNING, _config(_node(_link("100"))))
    store.operational()
    assert backend.seen and all(set(doc) == {ROOT} for doc in backend.seen)
    assert set(backend.applied[-1]) == {ROOT}
    assert set(store.running_json()) == {ROOT, NACM_ROOT}
    assert store.running_json()[ROOT] == backend.applied[-1][ROOT]


def test_a_nacm_edit_keeps_the_decoded_node_and_rereads_the_rules() -> None:
    store = Datastore(Schema.default(), Backend(), None, INITIAL)
    node_before = store.running_view()[ROOT]
    store.edit(DatastoreName.RUNNING, _config(_nacm("<read-default>deny</read-default>")))
    after = store.running_view()
    assert after[ROOT] is node_before  # unchanged text: the same decoded value
    assert after[NACM_ROOT]["read-default"] == "deny"


# A module's constraints must not read another top-level node: that is what lets an edit
# check only the modules it names. A YANG change that breaks it fails here.
_ABSOLUTE = re.compile(r"(?:^|[\s(\[,=<>!|+*])/")


def _config_nodes(schema: Schema) -> Iterator[tuple[str, libyang.SNode]]:
    for module in schema.context:
        if not module.implemented():
            continue
        for top in module.children():
            if top.nodetype() not in (
                libyang.SNode.CONTAINER,
                libyang.SNode.LIST,
                libyang.SNode.LEAF,
                libyang.SNode.LEAFLIST,
            ):
                continue
            if top.config_false():
                continue
            nodes = top.iter_tree(full=True) if hasattr(top, "iter_tree") else iter([top])
            for node in nodes:
                yield top.schema_path(), node


def test_no_constraint_of_a_configuration_module_reads_outside_its_top_level_node() -> None:
    checked = 0
    for top_path, node in _config_nodes(Schema.default()):
        expressions = [*node.must_conditions()] if hasattr(node, "must_conditions") else []
        if hasattr(node, "when_conditions"):
            expressions += list(node.when_conditions())  # type: ignore[no-untyped-call]
        if isinstance(node, libyang.SLeaf | libyang.SLeafList):
            path = node.type().leafref_path()
            if path:
                expressions.append(path)
        depth = node.schema_path().count("/") - 1  # steps below the top-level node
        for expression in expressions:
            checked += 1
            assert not _ABSOLUTE.search(expression), (node.schema_path(), expression)
            climbed = len(re.match(r"(?:\.\./)*", expression).group(0)) // 3  # type: ignore[union-attr]
            assert climbed <= depth, (top_path, node.schema_path(), expression)
    assert checked > 0
