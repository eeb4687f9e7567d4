"""Confirmed commit (RFC 6241 §8.4) on a real agent, driven by ncclient and netconf-console2."""

from __future__ import annotations

from pathlib import Path

import pytest
from ncclient.operations import RPCError

from agents.datastore import DatastoreName
from agents.netconf.errors import BASE_NS
from common.audit import AuditLog, read_log
from tests.harness.netconf import (
    NS,
    USERNAME,
    AgentThread,
    connect,
    running_agent,
    wait_until,
)
from tests.harness.netconf import (
    netconf_console_output as _console,
)


def _edit(location: str) -> str:
    return (
        f'<config xmlns="{BASE_NS}"><qkd_node xmlns="{NS}">'
        f"<qkdn_location_id>{location}</qkdn_location_id></qkd_node></config>"
    )


def _location(agent: AgentThread) -> str | None:
    assert agent.datastore is not None
    running = agent.datastore.config(DatastoreName.RUNNING)
    return running.findtext(f"{{{NS}}}qkd_node/{{{NS}}}qkdn_location_id")


def test_an_unconfirmed_commit_rolls_back_when_its_timeout_expires(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        session.edit_config(target="candidate", config=_edit("trial"))
        session.commit(confirmed=True, timeout="1")
        assert _location(agent) == "trial"
        # The agent's event loop runs the timer: wait for it with a deadline, no fixed sleep.
        wait_until(lambda: _location(agent) == "lab", "the confirmed commit to roll back")
        assert agent.backend.applied[-1]["etsi-qkd-sdn-node:qkd_node"]["qkdn_location_id"] == (
            "lab"
        )
        # The session goes on, and a plain commit now has nothing to confirm.
        with pytest.raises(RPCError) as caught:
            session.cancel_commit()
        assert caught.value.tag == "operation-failed"


def test_persistent_confirmed_commit_confirmed_from_another_session(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        with connect(agent) as first:
            first.edit_config(target="candidate", config=_edit("kept"))
            first.commit(confirmed=True, timeout="600", persist="change-42")
        assert _location(agent) == "kept"  # outlived its session
        with connect(agent) as second:
            with pytest.raises(RPCError) as caught:
                second.commit(persist_id="not-it")
            assert caught.value.tag == "invalid-value"
            second.commit(persist_id="change-42")
        assert _location(agent) == "kept"

        with connect(agent) as third:
            third.edit_config(target="candidate", config=_edit("cancelled"))
            third.commit(confirmed=True, persist="change-43")
            assert _location(agent) == "cancelled"
            third.cancel_commit(persist_id="change-43")
            assert _location(agent) == "kept"


def test_netconf_console_confirmed_commit(tmp_path: Path) -> None:
    edit = tmp_path / "edit.xml"
    edit.write_text(
        f'<qkd_node xmlns="{NS}"><qkdn_location_id>console</qkdn_location_id></qkd_node>'
    )
    with running_agent(tmp_path) as agent:
        common = ("--db", "candidate", "--edit-config", str(edit), "--timeout", "600")
        # Confirmed but never confirmed: the console's session ends, the change goes.
        _console(agent, *common, "--commit", "confirmed")
        wait_until(lambda: _location(agent) == "lab", "the rollback at session end")
        # Confirmed, then confirmed within the same session: the change stays.
        _console(agent, *common, "--commit", "confirmed", "--commit")
        assert _location(agent) == "console"


def test_a_restart_before_the_confirmation_restores_the_old_configuration(
    tmp_path: Path,
) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        session.edit_config(target="candidate", config=_edit("unconfirmed"))
        session.commit(confirmed=True, persist="survives-the-session")
        assert _location(agent) == "unconfirmed"
    # Same state directory, new agent: as after a reboot (RFC 6241 §8.4.1).
    with running_agent(tmp_path) as restarted, connect(restarted) as session:
        assert _location(restarted) == "lab"
        with pytest.raises(RPCError) as caught:
            session.commit(persist_id="survives-the-session")  # nothing pending any more
        assert caught.value.tag == "invalid-value"


def _rollbacks(log: Path) -> list[tuple[str, str, str, str]]:
    if not log.exists():
        return []
    return [
        (entry.who, entry.action, entry.outcome, entry.detail)
        for entry in read_log(log)
        if entry.action == "confirmed-commit-rollback"
    ]


def test_a_timed_out_or_cancelled_confirmed_commit_is_audited_under_its_maker(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.jsonl"
    audit = AuditLog("agent:test", log)
    with running_agent(tmp_path, audit=audit) as agent, connect(agent) as session:
        session.edit_config(target="candidate", config=_edit("trial"))
        session.commit(confirmed=True, timeout="1")
        wait_until(lambda: bool(_rollbacks(log)), "the timed-out commit in the audit log")
        assert _rollbacks(log) == [
            (USERNAME, "confirmed-commit-rollback", "ok", "rolled back: confirm timeout")
        ]
        assert _location(agent) == "lab"
        session.edit_config(target="candidate", config=_edit("again"))
        session.commit(confirmed=True, timeout="600")
        session.cancel_commit()
        assert _rollbacks(log)[1:] == [
            (
                USERNAME,
                "confirmed-commit-rollback",
                "ok",
                f"rolled back: cancel-commit by {USERNAME}",
            )
        ]
    actions = [(entry.action, entry.outcome) for entry in read_log(log)]
    assert actions == [
        ("edit-config", "ok"),
        ("confirmed-commit", "ok"),
        ("confirmed-commit-rollback", "ok"),
        ("edit-config", "ok"),
        ("confirmed-commit", "ok"),
        ("confirmed-commit-rollback", "ok"),
        ("cancel-commit", "ok"),
    ]


def test_a_rollback_at_restart_is_audited_under_the_commits_maker(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    with (
        running_agent(tmp_path, audit=AuditLog("agent:test", log)) as agent,
        connect(agent) as session,
    ):
        session.edit_config(target="candidate", config=_edit("unconfirmed"))
        session.commit(confirmed=True, persist="outlives-the-agent")
    assert _rollbacks(log) == []
    # Same state directory, new agent: running comes back, and the audit log says so once.
    with running_agent(tmp_path, audit=AuditLog("agent:test", log)) as restarted:
        assert _location(restarted) == "lab"
    expected = (
        USERNAME,
        "confirmed-commit-rollback",
        "ok",
        "rolled back: agent restarted before the confirmation",
    )
    assert _rollbacks(log) == [expected]
    with running_agent(tmp_path, audit=AuditLog("agent:test", log)) as again:
        assert _location(again) == "lab"
    assert _rollbacks(log) == [expected]  # nothing undone at the next start: nothing audited
    assert not list(tmp_path.rglob("*.rollback.*"))  # the saved configuration and its maker
