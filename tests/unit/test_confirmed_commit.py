"""Confirmed commit (RFC 6241 §8.4) through sans-IO sessions, with a hand-driven scheduler."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

from agents.datastore import Datastore, DatastoreName
from agents.netconf.confirmed import DEFAULT_TIMEOUT_S
from agents.netconf.errors import BASE_NS
from agents.netconf.framing import FramingMode, encode_message
from agents.netconf.server import BASE_CAPABILITIES
from agents.netconf.session import Session
from agents.netconf.state import AgentState
from common.audit import AuditLog, read_log
from tests.harness.netconf import CLIENT_HELLO_1_1, FakeBackend, MemoryTransport
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
NODE_ID = "11111111-1111-4111-8111-111111111111"
E = {"nc": BASE_NS, "q": NS}


class Timer:
    def __init__(self, delay_s: float, callback: Callable[[], None]) -> None:
        self.delay_s = delay_s
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    """Keeps the timers; a test fires them when it wants time to have passed."""

    def __init__(self) -> None:
        self.timers: list[Timer] = []

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay_s, callback)
        self.timers.append(timer)
        return timer

    def live(self) -> list[Timer]:
        return [timer for timer in self.timers if not timer.cancelled]

    def fire_all(self) -> None:
        """Run every timer, cancelled ones included (a real loop may race a cancel)."""
        for timer in list(self.timers):
            timer.callback()


class Client:
    def __init__(self, agent: AgentState) -> None:
        self.transport = MemoryTransport()
        self.session = Session(agent, self.transport)
        self.session.start()
        self.transport.messages()
        self.session.data_received(encode_message(CLIENT_HELLO_1_1, FramingMode.END_OF_MESSAGE))
        self.transport.decoder.set_mode(FramingMode.CHUNKED)
        self._message_id = 0

    def rpc(self, body: str) -> etree._Element:
        self._message_id += 1
        rpc = f'<rpc xmlns="{BASE_NS}" message-id="{self._message_id}">{body}</rpc>'
        self.session.data_received(encode_message(rpc.encode(), FramingMode.CHUNKED))
        (reply,) = self.transport.messages()
        return reply

    def ok(self, body: str) -> None:
        reply = self.rpc(body)
        assert reply.find("nc:ok", E) is not None, etree.tostring(reply)

    def error(self, body: str) -> tuple[str, str]:
        """The error-tag and error-message of a refused operation."""
        reply = self.rpc(body)
        tag = reply.findtext("nc:rpc-error/nc:error-tag", namespaces=E)
        assert tag is not None, etree.tostring(reply)
        return tag, reply.findtext("nc:rpc-error/nc:error-message", namespaces=E) or ""

    def set_location(self, location: str) -> None:
        self.ok(
            "<edit-config><target><candidate/></target><config>"
            f'<qkd_node xmlns="{NS}"><qkdn_location_id>{location}</qkdn_location_id></qkd_node>'
            "</config></edit-config>"
        )


def _agent() -> tuple[AgentState, FakeScheduler, FakeBackend]:
    backend = FakeBackend()
    store = Datastore(
        Schema.default(),
        backend,
        None,
        f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id>'
        "<qkdn_location_id>before</qkdn_location_id></qkd_node>",
    )
    scheduler = FakeScheduler()
    return AgentState(store, BASE_CAPABILITIES, {}, scheduler=scheduler), scheduler, backend


def _location(agent: AgentState) -> str | None:
    running = agent.datastore.config(DatastoreName.RUNNING)
    return running.findtext("q:qkd_node/q:qkdn_location_id", namespaces=E)


def _applied_location(backend: FakeBackend) -> Any:
    return backend.applied[-1]["etsi-qkd-sdn-node:qkd_node"]["qkdn_location_id"]


def test_the_capability_is_announced() -> None:
    assert "urn:ietf:params:netconf:capability:confirmed-commit:1.1" in BASE_CAPABILITIES


def test_timeout_rolls_back_through_veto_and_apply() -> None:
    agent, scheduler, backend = _agent()
    client = Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/><confirm-timeout>30</confirm-timeout></commit>")
    assert _location(agent) == "after"
    (timer,) = scheduler.live()
    assert timer.delay_s == 30
    timer.callback()
    assert _location(agent) == "before"
    assert _applied_location(backend) == "before"
    assert not agent.confirmed.pending
    assert not agent.datastore.candidate_modified


def test_the_default_timeout_is_600_seconds() -> None:
    agent, scheduler, _ = _agent()
    Client(agent).ok("<commit><confirmed/></commit>")
    assert [timer.delay_s for timer in scheduler.live()] == [DEFAULT_TIMEOUT_S] == [600]


def test_a_confirming_commit_keeps_the_change_and_stops_the_timer() -> None:
    agent, scheduler, _ = _agent()
    client = Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/></commit>")
    client.ok("<commit/>")
    assert not scheduler.live()
    scheduler.fire_all()  # a late timer does nothing
    assert _location(agent) == "after"
    client.session.close()
    assert _location(agent) == "after"


def test_a_follow_up_confirmed_commit_resets_the_timer_and_keeps_the_first_rollback_point() -> None:
    agent, scheduler, _ = _agent()
    client = Client(agent)
    client.set_location("first")
    client.ok("<commit><confirmed/><confirm-timeout>10</confirm-timeout></commit>")
    client.set_location("second")
    client.ok("<commit><confirmed/><confirm-timeout>20</confirm-timeout></commit>")
    first, second = scheduler.timers
    assert first.cancelled and not second.cancelled
    first.callback()  # the superseded timer does nothing even if it runs
    assert _location(agent) == "second"
    second.callback()
    assert _location(agent) == "before"


def test_the_issuing_session_ending_rolls_back_a_commit_without_persist() -> None:
    agent, scheduler, _ = _agent()
    client, other = Client(agent), Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/></commit>")
    tag, message = other.error("<commit/>")
    assert tag == "in-use"
    assert f"session {client.session.session_id}" in message
    assert other.error("<cancel-commit/>")[0] == "in-use"
    client.session.connection_lost()
    assert _location(agent) == "before"
    assert not scheduler.live()


def test_a_persistent_commit_outlives_its_session_and_any_session_confirms_it() -> None:
    agent, scheduler, _ = _agent()
    client, other = Client(agent), Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/><persist>token-1</persist></commit>")
    client.session.close()
    assert _location(agent) == "after"
    assert other.error("<commit/>")[0] == "invalid-value"  # the persist-id is required
    assert other.error("<commit><persist-id>wrong</persist-id></commit>")[0] == "invalid-value"
    assert agent.confirmed.pending
    other.ok("<commit><persist-id>token-1</persist-id></commit>")
    assert not agent.confirmed.pending and not scheduler.live()
    assert _location(agent) == "after"


def test_cancel_commit_rolls_back_now() -> None:
    agent, scheduler, _ = _agent()
    client, other = Client(agent), Client(agent)
    assert client.error("<cancel-commit/>")[0] == "operation-failed"  # nothing pending
    client.set_location("after")
    client.ok("<commit><confirmed/></commit>")
    client.ok("<cancel-commit/>")
    assert _location(agent) == "before"
    assert not scheduler.live()
    # With persist, any session cancels with the persist-id.
    client.set_location("again")
    client.ok("<commit><confirmed/><persist>p</persist></commit>")
    assert other.error("<cancel-commit/>")[0] == "invalid-value"
    other.ok("<cancel-commit><persist-id>p</persist-id></cancel-commit>")
    assert _location(agent) == "before"


def test_a_vetoed_rollback_is_reported_and_keeps_the_commit_pending() -> None:
    agent, scheduler, backend = _agent()
    client = Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/></commit>")
    backend.veto_reason = "the node cannot go back"
    tag, message = client.error("<cancel-commit/>")
    assert tag == "operation-failed" and "cannot go back" in message
    assert agent.confirmed.pending and _location(agent) == "after"
    # The timeout cannot roll back either: the unconfirmed configuration stays.
    scheduler.live()[0].callback()
    assert _location(agent) == "after" and not agent.confirmed.pending


def test_a_failing_confirmed_commit_changes_nothing() -> None:
    agent, scheduler, backend = _agent()
    client = Client(agent)
    client.set_location("after")
    backend.veto_reason = "no"
    assert client.error("<commit><confirmed/></commit>")[0] == "operation-failed"
    assert not agent.confirmed.pending and not scheduler.timers
    assert _location(agent) == "before"


def test_bad_parameters_are_refused() -> None:
    agent, scheduler, _ = _agent()
    client = Client(agent)
    for timeout in ("0", "-1", "soon", "4294967296", ""):
        body = f"<commit><confirmed/><confirm-timeout>{timeout}</confirm-timeout></commit>"
        assert client.error(body)[0] == "invalid-value", timeout
    assert client.error("<commit><confirm-timeout>5</confirm-timeout></commit>")[0] == (
        "missing-element"
    )
    assert client.error("<commit><persist>x</persist></commit>")[0] == "missing-element"
    assert client.error("<commit><persist-id>x</persist-id></commit>")[0] == "invalid-value"
    assert client.error("<commit><confirmd/></commit>")[0] == "unknown-element"
    assert not scheduler.timers and not agent.confirmed.pending


def test_without_a_scheduler_the_session_end_still_rolls_back() -> None:
    backend = FakeBackend()
    store = Datastore(
        Schema.default(),
        backend,
        None,
        f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id>'
        "<qkdn_location_id>before</qkdn_location_id></qkd_node>",
    )
    agent = AgentState(store, BASE_CAPABILITIES, {})
    client = Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/></commit>")
    client.session.close()
    assert _location(agent) == "before"


def _persisted_agent(directory: Path) -> tuple[AgentState, FakeScheduler]:
    store = Datastore(
        Schema.default(),
        FakeBackend(),
        directory / "running.xml",
        f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id>'
        "<qkdn_location_id>before</qkdn_location_id></qkd_node>",
    )
    scheduler = FakeScheduler()
    return AgentState(store, BASE_CAPABILITIES, {}, scheduler=scheduler), scheduler


def test_an_agent_restarted_before_the_confirmation_starts_from_the_old_configuration(
    tmp_path: Path,
) -> None:
    agent, _ = _persisted_agent(tmp_path)
    client = Client(agent)
    client.set_location("unconfirmed")
    client.ok("<commit><confirmed/><persist>p</persist></commit>")
    assert (tmp_path / "running.rollback.xml").exists()
    assert "unconfirmed" in (tmp_path / "running.xml").read_text(encoding="utf-8")
    # The process dies here; a new agent reads the same directory.
    restarted, _ = _persisted_agent(tmp_path)
    assert _location(restarted) == "before"
    assert "before" in (tmp_path / "running.xml").read_text(encoding="utf-8")
    assert not (tmp_path / "running.rollback.xml").exists()


def test_confirmed_or_rolled_back_commits_leave_no_rollback_file(tmp_path: Path) -> None:
    agent, scheduler = _persisted_agent(tmp_path)
    client = Client(agent)
    client.set_location("kept")
    client.ok("<commit><confirmed/></commit>")
    client.ok("<commit/>")
    assert not (tmp_path / "running.rollback.xml").exists()
    client.set_location("timed-out")
    client.ok("<commit><confirmed/></commit>")
    scheduler.live()[0].callback()
    assert not (tmp_path / "running.rollback.xml").exists()
    restarted, _ = _persisted_agent(tmp_path)
    assert _location(restarted) == "kept"


def test_an_unusable_rollback_file_is_set_aside(tmp_path: Path) -> None:
    agent, _ = _persisted_agent(tmp_path)
    Client(agent).set_location("x")  # candidate only: running.xml is the initial one
    (tmp_path / "running.rollback.xml").write_text("<qkd_node>broken", encoding="utf-8")
    restarted, _ = _persisted_agent(tmp_path)
    assert _location(restarted) == "before"
    assert (tmp_path / "running.rollback.stale.xml").exists()
    assert not (tmp_path / "running.rollback.xml").exists()


def test_a_rollback_is_audited_under_the_user_who_made_the_commit_and_a_failed_one_too(
    tmp_path: Path,
) -> None:
    agent, scheduler, backend = _agent()
    agent.audit = AuditLog("agent:test", tmp_path / "audit.jsonl")
    client = Client(agent)
    client.set_location("after")
    client.ok("<commit><confirmed/></commit>")
    client.session.close()  # no persist: the session's end undoes it
    second = Client(agent)
    second.set_location("after")
    second.ok("<commit><confirmed/></commit>")
    backend.veto_reason = "the node cannot go back"
    scheduler.live()[0].callback()
    rollbacks = [
        (entry.action, entry.outcome, entry.detail)
        for entry in read_log(tmp_path / "audit.jsonl")
        if entry.action == "confirmed-commit-rollback"
    ]
    assert rollbacks[0] == ("confirmed-commit-rollback", "ok", "rolled back: session 1 ended")
    _, outcome, detail = rollbacks[1]
    assert outcome == "failed" and detail.startswith("not rolled back (confirm timeout)")
    assert "cannot go back" in detail and len(rollbacks) == 2


def test_a_restart_rollback_is_audited_under_the_maker_and_an_unusable_one_as_failed(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.jsonl"

    def restarted() -> AgentState:
        store = Datastore(
            Schema.default(),
            FakeBackend(),
            tmp_path / "running.xml",
            f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id></qkd_node>',
        )
        return AgentState(store, BASE_CAPABILITIES, {}, audit=AuditLog("agent:test", log))

    def rollbacks() -> list[tuple[str, str, str]]:
        if not log.exists():
            return []
        return [
            (e.who, e.outcome, e.detail)
            for e in read_log(log)
            if e.action == "confirmed-commit-rollback"
        ]

    agent, _ = _persisted_agent(tmp_path)
    client = Client(agent)
    client.set_location("unconfirmed")
    client.ok("<commit><confirmed/><persist>p</persist></commit>")
    maker = client.session.info.username or "-"
    assert _location(restarted()) == "before"
    assert rollbacks() == [(maker, "ok", "rolled back: agent restarted before the confirmation")]
    assert _location(restarted()) == "before" and len(rollbacks()) == 1  # said once

    client = Client(restarted())
    client.set_location("again")
    client.ok("<commit><confirmed/><persist>q</persist></commit>")
    (tmp_path / "running.rollback.xml").write_text("<qkd_node>broken", encoding="utf-8")
    assert _location(restarted()) == "again"  # nothing usable to go back to
    who, outcome, detail = rollbacks()[-1]
    assert (who, outcome) == (maker, "failed")
    assert detail == (
        "not rolled back (agent restarted before the confirmation): "
        "running.rollback.xml not usable, moved to running.rollback.stale.xml"
    )
