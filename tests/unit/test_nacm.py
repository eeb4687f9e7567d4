"""NACM decisions (RFC 8341 §3.4), its RFC 7951 form, and the edit and read analyses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from agents.access.nacm import (
    Access,
    Action,
    Nacm,
    NacmError,
    Rule,
    RuleList,
    from_json,
    standard,
    to_json,
)
from agents.access.paths import PathError, Step, parse_path
from agents.access.reads import prune
from agents.access.users import (
    Accounts,
    PasswordHashError,
    User,
    check_hash,
    hash_password,
    verify_password,
)
from agents.access.writes import Change, edit_changes
from agents.datastore.tree import BASE_NS
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
NACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
NODE = "etsi-qkd-sdn-node"
MODULES = {NS: NODE, NACM_NS: "ietf-netconf-acm"}
RULES = standard(
    {"admin": ["root"], "controller": ["ctl"], "link-operator": ["ops"], "monitor": ["mon"]}
)


def _keys_of(names: tuple[str, ...]) -> tuple[str, ...]:
    info = Schema.default().node_info(list(names))
    return info.keys if info is not None else ()


def _path(*names: str) -> tuple[Step, ...]:
    return tuple(Step(NODE, name) for name in names)


def test_each_standard_group_may_run_what_it_needs_and_nothing_more() -> None:
    assert RULES.may_exec("mon", "ietf-netconf", "get")
    assert not RULES.may_exec("mon", "ietf-netconf", "edit-config")
    assert RULES.may_exec("ops", "ietf-netconf", "edit-config")
    assert not RULES.may_exec("ops", "ietf-netconf", "kill-session")  # default-deny-all
    assert RULES.may_exec("root", "ietf-netconf", "kill-session")
    assert RULES.may_exec("nobody", "ietf-netconf", "close-session")  # always permitted


def test_data_access_follows_rule_paths_then_the_defaults() -> None:
    links = _path("qkd_node", "qkd_links", "qkd_link")
    location = _path("qkd_node", "qkdn_location_id")
    assert RULES.may_access("ops", links, Access.CREATE)
    assert not RULES.may_access("ops", location, Access.UPDATE)  # write-default deny
    assert RULES.may_access("ctl", location, Access.UPDATE)
    assert RULES.may_access("mon", location, Access.READ)  # read-default permit
    nacm = (Step("ietf-netconf-acm", "nacm"),)
    assert not RULES.may_access("ctl", nacm, Access.READ)  # default-deny-all
    assert RULES.may_access("root", nacm, Access.UPDATE)


def test_a_rule_path_with_a_key_selects_only_that_entry() -> None:
    rules = Nacm(
        groups=(("g", ("u",)),),
        rule_lists=(
            RuleList(
                "l",
                ("g",),
                (
                    Rule(
                        "one-link",
                        Action.PERMIT,
                        path=parse_path(f"/{NODE}:qkd_node/qkd_links/qkd_link[qkdl_id='A']"),
                    ),
                ),
            ),
        ),
    )
    entry_a = (*_path("qkd_node", "qkd_links"), Step(NODE, "qkd_link", (("qkdl_id", "A"),)))
    entry_b = (*_path("qkd_node", "qkd_links"), Step(NODE, "qkd_link", (("qkdl_id", "B"),)))
    assert rules.may_access("u", (*entry_a, Step(NODE, "virt_bandwidth")), Access.UPDATE)
    assert not rules.may_access("u", entry_b, Access.UPDATE)


def test_disabled_nacm_permits_everything() -> None:
    off = Nacm(enabled=False)
    assert off.may_exec("x", "ietf-netconf", "kill-session")
    assert off.may_access("x", (Step("ietf-netconf-acm", "nacm"),), Access.DELETE)


def test_the_rules_survive_their_json_form_and_the_schema_accepts_it() -> None:
    doc = to_json(RULES)
    assert Schema.default().validate_config_json(doc) == []
    again = from_json(doc)
    assert again is not None
    assert again.groups == RULES.groups
    assert [r.name for r in again.rule_lists] == [r.name for r in RULES.rule_lists]
    assert again.may_exec("mon", "ietf-netconf", "edit-config") is False
    assert from_json({}) is None


def test_a_bad_rule_path_is_named() -> None:
    doc = {
        "ietf-netconf-acm:nacm": {
            "rule-list": [
                {"name": "l", "rule": [{"name": "r", "path": "qkd_node", "action": "deny"}]}
            ]
        }
    }
    with pytest.raises(NacmError, match="rule-list 'l' rule 'r'"):
        from_json(doc)
    with pytest.raises(PathError):
        parse_path("/x:a[position()=1]")
    with pytest.raises(NacmError, match="unknown group"):
        standard({"wizards": ["merlin"]})


def _config(body: str) -> etree._Element:
    return etree.fromstring(f'<config xmlns="{BASE_NS}" xmlns:nc="{BASE_NS}">{body}</config>')


TARGET = etree.fromstring(
    f'<data xmlns="{BASE_NS}"><qkd_node xmlns="{NS}"><qkdn_location_id>lab</qkdn_location_id>'
    "<qkd_links><qkd_link><qkdl_id>A</qkdl_id><virt_bandwidth>5</virt_bandwidth></qkd_link>"
    "</qkd_links></qkd_node></data>"
)


def test_an_edit_is_read_as_creates_updates_and_deletes() -> None:
    edit = _config(
        f'<qkd_node xmlns="{NS}"><qkdn_location_id>hall</qkdn_location_id><qkd_links>'
        "<qkd_link><qkdl_id>A</qkdl_id><virt_bandwidth>5</virt_bandwidth></qkd_link>"
        '<qkd_link nc:operation="delete"><qkdl_id>B</qkdl_id></qkd_link>'
        "<qkd_link><qkdl_id>C</qkdl_id></qkd_link></qkd_links></qkd_node>"
    )
    changes = edit_changes(TARGET, edit, "merge", MODULES, _keys_of)
    links = _path("qkd_node", "qkd_links")

    def entry(key: str) -> tuple[Step, ...]:
        return (*links, Step(NODE, "qkd_link", (("qkdl_id", key),)))

    assert changes == [
        Change(Access.UPDATE, _path("qkd_node", "qkdn_location_id")),
        Change(Access.DELETE, entry("B")),
        Change(Access.CREATE, entry("C")),
        Change(Access.CREATE, (*entry("C"), Step(NODE, "qkdl_id"))),
    ]


def test_reading_leaves_out_what_the_user_may_not_read_and_nothing_else() -> None:
    data = etree.fromstring(
        f'<data xmlns="{BASE_NS}"><qkd_node xmlns="{NS}"><qkdn_id>x</qkdn_id></qkd_node>'
        f'<nacm xmlns="{NACM_NS}"><enable-nacm>true</enable-nacm></nacm></data>'
    )
    assert prune(data, RULES, "mon", MODULES, _keys_of) == 1
    assert [etree.QName(c).localname for c in data] == ["qkd_node"]
    assert RULES.reads_everything("root") and not RULES.reads_everything("mon")


def test_passwords_are_kept_as_scrypt_hashes_and_checked_in_constant_form() -> None:
    stored = hash_password("correct horse", n=2**10)
    assert stored.startswith("scrypt$1024$8$1$") and "correct" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong", stored)
    check_hash(stored)
    with pytest.raises(PasswordHashError):
        check_hash("plain-text-password")
    accounts = Accounts(
        [User("a", "admin", stored), User("k", "monitor", None, ("ssh-ed25519 AAAA",))]
    )
    assert accounts.password_ok("a", "correct horse")
    assert not accounts.password_ok("k", "")  # keys only: no password works
    assert not accounts.password_ok("nobody", "correct horse")
    assert accounts.group_members() == {"admin": ("a",), "monitor": ("k",)}
    assert "correct" not in repr(accounts.users())


def test_a_whole_subtree_is_granted_only_when_no_rule_can_decide_part_of_it() -> None:
    node = parse_path(f"/{NODE}:qkd_node")
    links = parse_path(f"/{NODE}:qkd_node/qkd_links")
    for access in (Access.CREATE, Access.UPDATE, Access.DELETE):
        assert RULES.permits_subtree("root", node, access)
        assert RULES.permits_subtree("ctl", node, access)
        assert not RULES.permits_subtree("ops", node, access)  # only its links
        assert RULES.permits_subtree("ops", links, access)
        assert not RULES.permits_subtree("mon", node, access)
        assert not RULES.permits_subtree("nobody", node, access)
    nacm_root = parse_path("/ietf-netconf-acm:nacm")
    assert not RULES.permits_subtree("ctl", nacm_root, Access.UPDATE)
    assert RULES.permits_subtree("root", nacm_root, Access.UPDATE)


_MODULES = ("m1", "m2")
_TREE = tuple(
    parse_path(text)
    for text in (
        "/m1:top",
        "/m1:top/a",
        "/m1:top/a/x",
        "/m1:top/m2:aug",
        "/m1:top/m2:aug/y",
        "/m1:top/b",
        "/m2:other",
        "/ietf-netconf-acm:nacm",  # default-deny-all
        "/ietf-netconf-acm:nacm/groups",
    )
)


@st.composite
def _rule_sets(draw: st.DrawFn) -> Nacm:
    rules = []
    for number in range(draw(st.integers(0, 5))):
        path = draw(st.sampled_from((None, *_TREE)))
        rules.append(
            Rule(
                f"r{number}",
                draw(st.sampled_from(tuple(Action))),
                module_name=draw(st.sampled_from(("*", *_MODULES))),
                path=path,
                access=frozenset(draw(st.sets(st.sampled_from(tuple(Access)), min_size=1))),
            )
        )
    return Nacm(
        read_default=draw(st.sampled_from(tuple(Action))),
        write_default=draw(st.sampled_from(tuple(Action))),
        groups=(("g", ("u",)),),
        rule_lists=(RuleList("l", ("g",), tuple(rules)),),
    )


def test_a_module_denied_below_a_permitted_subtree_withholds_the_subtree() -> None:
    top, augment = _TREE[0], _TREE[3]
    rules = Nacm(
        groups=(("g", ("u",)),),
        rule_lists=(
            RuleList(
                "l",
                ("g",),
                (Rule("no-m2", Action.DENY, module_name="m2"), Rule("all", Action.PERMIT)),
            ),
        ),
    )
    assert not rules.may_access("u", augment, Access.CREATE)
    assert not rules.permits_subtree("u", top, Access.CREATE)


@settings(max_examples=600)
@given(
    _rule_sets(),
    st.sampled_from(_TREE),
    st.sampled_from((Access.CREATE, Access.DELETE, Access.READ)),
)
def test_a_granted_subtree_never_holds_a_node_the_rules_deny(
    rules: Nacm, node: tuple[Step, ...], access: Access
) -> None:
    granted = rules.permits_subtree("u", node, access)
    below = [other for other in _TREE if other[: len(node)] == node]
    if granted:
        assert all(rules.may_access("u", other, access) for other in below)
    assert rules.permits_subtree("u", node, access) is granted  # remembered, not changed


def test_a_subtree_falling_to_a_permitting_default_is_granted_but_never_the_rules() -> None:
    node, nacm_root = _TREE[0], _TREE[7]
    reads = Nacm(groups=(("g", ("u",)),), rule_lists=())
    assert reads.permits_subtree("u", node, Access.READ)  # read-default permit
    assert not reads.permits_subtree("u", nacm_root, Access.READ)  # default-deny-all
    assert not reads.permits_subtree("u", (), Access.READ)  # the root holds /nacm
    assert not reads.permits_subtree("u", node, Access.UPDATE)  # write-default deny


_DATA_NAMESPACES = {"m1": "urn:m1", "m2": "urn:m2", "ietf-netconf-acm": NACM_NS}


def _reply(tops: list[str]) -> etree._Element:
    """A <data> with the chosen top-level nodes of _TREE and all their descendants."""
    data = etree.Element(f"{{{BASE_NS}}}data")
    made: dict[tuple[Step, ...], etree._Element] = {(): data}
    for path in _TREE:
        if path[0].name not in tops:
            continue
        step = path[-1]
        made[path] = etree.SubElement(
            made[path[:-1]], f"{{{_DATA_NAMESPACES[step.module]}}}{step.name}"
        )
    return data


@settings(max_examples=400)
@given(_rule_sets(), st.lists(st.sampled_from(("top", "other", "nacm")), unique=True))
def test_a_pruned_reply_is_what_the_node_by_node_rules_leave_also_when_remembered(
    rules: Nacm, tops: list[str]
) -> None:
    modules = {namespace: module for module, namespace in _DATA_NAMESPACES.items()}

    def readable(element: etree._Element, path: tuple[Step, ...]) -> list[tuple[Step, ...]]:
        kept = []
        for child in element:
            step = Step(modules[etree.QName(child).namespace or ""], etree.QName(child).localname)
            kept += [(*path, step), *readable(child, (*path, step))]
        return kept

    expected = [
        path
        for path in readable(_reply(tops), ())
        if all(
            rules.may_access("u", path[:depth], Access.READ) for depth in range(1, len(path) + 1)
        )
    ]
    for _ in range(2):  # the second time from the remembered decisions
        reply = _reply(tops)
        prune(reply, rules, "u", modules, lambda names: ())
        assert readable(reply, ()) == expected
