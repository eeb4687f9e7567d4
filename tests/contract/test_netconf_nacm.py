"""NACM (RFC 8341) on a real agent: netconf-console2 and ncclient sessions as each role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lxml import etree
from ncclient.operations import RPCError
from ncclient.transport.errors import AuthenticationError

from agents.access.nacm import standard, to_json
from agents.access.users import Accounts, User, hash_password
from agents.datastore.tree import BASE_NS
from common.audit import AuditLog, read_log
from tests.harness.netconf import (
    INITIAL_RUNNING,
    NS,
    TYPES_NS,
    AgentThread,
    connect,
    netconf_console,
    running_agent,
    wait_until,
)
from yang.schema import Schema

NACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
LINK = "44444444-4444-4444-8444-444444444444"
USERS = {
    "ctl": ("controller", "pw-controller"),
    "ops": ("link-operator", "pw-operator"),
    "mon": ("monitor", "pw-monitor"),
    "root": ("admin", "pw-admin"),
}


def _accounts() -> Accounts:
    return Accounts(
        User(name, group, hash_password(password, n=2**10))
        for name, (group, password) in USERS.items()
    )


def _running_with_rules(accounts: Accounts) -> str:
    """The harness's node tree and the standard rules, as a fresh agent's running holds them."""
    rules = Schema.default().json_to_xml(to_json(standard(accounts.group_members())))
    return f'<data xmlns="{BASE_NS}">{INITIAL_RUNNING}{rules}</data>'


@contextmanager
def _agent(tmp_path: Path) -> Iterator[AgentThread]:
    accounts = _accounts()
    audit = AuditLog("agent:test", tmp_path / "audit.jsonl")
    with running_agent(
        tmp_path, accounts=accounts, audit=audit, initial_running=_running_with_rules(accounts)
    ) as agent:
        yield agent


def _console(agent: AgentThread, user: str, *arguments: str) -> str:
    """What netconf-console2 prints for `user` (replies with rpc-errors included)."""
    result = netconf_console(agent, *arguments, username=user, password=USERS[user][1])
    return result.stdout + result.stderr


def _ok(output: str) -> bool:
    return re.search(r"<ok\b", output) is not None and "rpc-error" not in output


def _edit_file(tmp_path: Path, body: str, name: str = "edit.xml") -> str:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return str(path)


def _location(value: str) -> str:
    return f'<qkd_node xmlns="{NS}"><qkdn_location_id>{value}</qkdn_location_id></qkd_node>'


def _virt_link() -> str:
    return (
        f'<qkd_node xmlns="{NS}" xmlns:t="{TYPES_NS}"><qkd_links><qkd_link>'
        f"<qkdl_id>{LINK}</qkdl_id><qkdl_type>t:VIRT</qkdl_type>"
        "<virt_bandwidth>1000</virt_bandwidth></qkd_link></qkd_links></qkd_node>"
    )


def _location_of(agent: AgentThread) -> str:
    assert agent.datastore is not None
    node = agent.datastore.running_json()["etsi-qkd-sdn-node:qkd_node"]
    return str(node.get("qkdn_location_id", ""))


def test_a_monitor_reads_the_node_but_not_the_rules_and_may_not_edit(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        got = _console(agent, "mon", "--get-config")
        assert "<qkdn_location_id>lab</qkdn_location_id>" in got
        assert "<nacm" not in got  # /nacm is default-deny-all: silently left out
        refused = _console(agent, "mon", "--edit-config", _edit_file(tmp_path, _location("x")))
        assert "access-denied" in refused
        assert _location_of(agent) == "lab"


def test_a_link_operator_adds_a_link_but_may_not_change_the_node_itself(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        added = _console(agent, "ops", "--edit-config", _edit_file(tmp_path, _virt_link()))
        assert _ok(added)
        assert LINK in _console(agent, "ops", "--get-config")
        refused = _console(agent, "ops", "--edit-config", _edit_file(tmp_path, _location("x")))
        assert "access-denied" in refused
        assert "qkdn_location_id" in refused  # the error-path names the node refused
        assert _location_of(agent) == "lab"


def test_the_controller_account_edits_the_node_but_cannot_see_or_change_the_rules(
    tmp_path: Path,
) -> None:
    with _agent(tmp_path) as agent:
        ok = _console(agent, "ctl", "--edit-config", _edit_file(tmp_path, _location("room-7")))
        assert _ok(ok) and _location_of(agent) == "room-7"
        assert "<nacm" not in _console(agent, "ctl", "--get")
        rules = f'<nacm xmlns="{NACM_NS}"><read-default>deny</read-default></nacm>'
        refused = _console(agent, "ctl", "--edit-config", _edit_file(tmp_path, rules))
        assert "access-denied" in refused
        assert agent.datastore is not None
        assert agent.datastore.running_json()["ietf-netconf-acm:nacm"]["read-default"] == "permit"


def test_an_admin_edits_the_rules_over_netconf_and_they_apply_at_once(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        assert "<name>no-edit-config</name>" in _console(agent, "root", "--get-config")
        # Let monitors set the location: drop their edit-config ban, add a data rule.
        rules = (
            f'<nacm xmlns="{NACM_NS}" xmlns:nc="{BASE_NS}" xmlns:q="{NS}">'
            "<rule-list><name>monitor</name>"
            '<rule nc:operation="delete"><name>no-edit-config</name></rule>'
            "<rule><name>location</name><module-name>*</module-name>"
            "<path>/q:qkd_node/q:qkdn_location_id</path>"
            "<access-operations>update</access-operations><action>permit</action></rule>"
            "</rule-list></nacm>"
        )
        ok = _console(agent, "root", "--edit-config", _edit_file(tmp_path, rules, "rules.xml"))
        assert _ok(ok)
        allowed = _console(agent, "mon", "--edit-config", _edit_file(tmp_path, _location("hall")))
        assert _ok(allowed) and _location_of(agent) == "hall"
        still = _console(agent, "mon", "--edit-config", _edit_file(tmp_path, _virt_link()))
        assert "access-denied" in still


def test_only_an_admin_may_kill_another_session(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        victim = connect(agent, username="mon", password=USERS["mon"][1])
        with connect(agent, username="ops", password=USERS["ops"][1]) as operator:
            with pytest.raises(RPCError) as caught:
                operator.kill_session(victim.session_id)
            assert caught.value.tag == "access-denied"
            assert caught.value.type == "protocol"
        with connect(agent, username="root", password=USERS["root"][1]) as admin:
            admin.kill_session(victim.session_id)
        wait_until(lambda: not victim.connected, "the killed session to end")


def test_a_wrong_password_or_an_unknown_user_cannot_log_in(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        with pytest.raises(AuthenticationError):
            connect(agent, username="mon", password=USERS["ops"][1])
        with pytest.raises(AuthenticationError):
            connect(agent, username="nobody", password="pw-monitor")


def test_every_change_is_audited_with_who_role_action_and_outcome(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        _console(agent, "ops", "--edit-config", _edit_file(tmp_path, _virt_link()))
        _console(agent, "ops", "--edit-config", _edit_file(tmp_path, _location("x")))
        _console(agent, "mon", "--edit-config", _edit_file(tmp_path, _location("y")))
        with connect(agent, username="ctl", password=USERS["ctl"][1]) as session:
            session.edit_config(
                target="candidate",
                config=f'<config xmlns="{BASE_NS}">{_location("z")}</config>',
            )
            session.commit()
    entries = list(read_log(tmp_path / "audit.jsonl"))
    seen = [(e.who, e.role, e.action, e.target, e.outcome) for e in entries]
    assert seen == [
        ("ops", "link-operator", "edit-config", "running", "ok"),
        ("ops", "link-operator", "edit-config", "running", "refused"),
        ("mon", "monitor", "edit-config", "running", "refused"),
        ("ctl", "controller", "edit-config", "candidate", "ok"),
        ("ctl", "controller", "commit", "running", "ok"),
    ]
    assert "access-denied" in entries[1].detail
    assert all(e.process == "agent:test" for e in entries)


def test_without_rules_in_running_the_standard_rules_of_the_accounts_apply(
    tmp_path: Path,
) -> None:
    with running_agent(tmp_path, accounts=_accounts()) as agent:
        refused = _console(agent, "mon", "--edit-config", _edit_file(tmp_path, _location("x")))
        assert "access-denied" in refused
        ok = _console(agent, "root", "--edit-config", _edit_file(tmp_path, _location("y")))
        assert _ok(ok) and _location_of(agent) == "y"


def test_a_denied_read_inside_a_subtree_filter_is_left_out(tmp_path: Path) -> None:
    with _agent(tmp_path) as agent:
        got = _console(agent, "mon", "--get", "--xpath", "/nacm")
        data = etree.fromstring(got[got.index("<data") :].split("</rpc-reply>")[0].encode())
        assert [child for child in data if isinstance(child.tag, str)] == []
        admin = _console(agent, "root", "--get", "--xpath", "/nacm")
        assert "<enable-nacm>true</enable-nacm>" in admin
