"""The publisher driven without sockets or sleeping: a manual clock and scheduler, sessions
on memory transports, a node whose state the test changes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

from agents.datastore import Datastore
from agents.netconf.errors import BASE_NS
from agents.netconf.framing import FramingMode, encode_message
from agents.netconf.push.model import DS_NS, SN_NS, YP_NS, Limits
from agents.netconf.push.publisher import Publisher
from agents.netconf.server import BASE_CAPABILITIES
from agents.netconf.session import Session
from agents.netconf.state import AgentState
from tests.harness.netconf import CLIENT_HELLO_1_1, MemoryTransport
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES = "etsi-qkd-node-types"
NODE_ID = "11111111-1111-4111-8111-111111111111"
LINK = "22222222-2222-4222-8222-222222222222"
START = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
M = {"n": "urn:ietf:params:xml:ns:netconf:notification:1.0", "yp": YP_NS, "sn": SN_NS, "q": NS}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Timer:
    due: datetime
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ManualScheduler:
    """Runs due callbacks when the test advances time."""

    clock: Clock
    timers: list[Timer] = field(default_factory=list)

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(self.clock.now + timedelta(seconds=delay_s), callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        end = self.clock.now + timedelta(seconds=seconds)
        while True:
            due = [t for t in self.timers if not t.cancelled and t.due <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.due)
            self.timers.remove(timer)
            self.clock.now = max(self.clock.now, timer.due)
            timer.callback()
        self.clock.now = end

    def live(self) -> int:
        return sum(1 for t in self.timers if not t.cancelled)


class Node:
    """A backend whose link status and SKR the test sets."""

    def __init__(self) -> None:
        self.status = "ACTIVE"
        self.skr = 1000

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return None

    def apply(self, new_running: dict[str, Any]) -> None:
        return None

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        link = {
            "qkdl_id": LINK,
            "qkdl_status": f"{TYPES}:{self.status}",
            "qkdl_performance": {"skr": self.skr, "eskr": 900},
        }
        return {"etsi-qkd-sdn-node:qkd_node": {"qkd_links": {"qkd_link": [copy.deepcopy(link)]}}}


@dataclass
class Bench:
    agent: AgentState
    node: Node
    scheduler: ManualScheduler
    push: Publisher


def bench(limits: Limits | None = None) -> Bench:
    schema = Schema.default()
    node = Node()
    running = (
        f'<qkd_node xmlns="{NS}" xmlns:t="urn:etsi:qkd:yang:{TYPES}"><qkdn_id>{NODE_ID}</qkdn_id>'
        f"<qkd_links><qkd_link><qkdl_id>{LINK}</qkdl_id><qkdl_type>t:PHYS</qkdl_type>"
        "</qkd_link></qkd_links></qkd_node>"
    )
    store = Datastore(schema, node, None, running)
    clock = Clock()
    agent = AgentState(
        store, (*BASE_CAPABILITIES, *schema.capabilities()), schema.module_texts(), clock=clock
    )
    scheduler = ManualScheduler(clock)
    push = Publisher(agent, scheduler, limits)
    agent.push = push
    return Bench(agent, node, scheduler, push)


class Receiver:
    """A session and what it received; `backlog` is what its transport reports unsent."""

    def __init__(self, agent: AgentState) -> None:
        self.transport = MemoryTransport()
        self.backlog = 0
        self.session = Session(
            agent, self.transport, username="alice", backlog=lambda: self.backlog
        )
        self.session.start()
        self.transport.messages()
        hello = encode_message(CLIENT_HELLO_1_1, FramingMode.END_OF_MESSAGE)
        self.session.data_received(hello)
        self.transport.decoder.set_mode(FramingMode.CHUNKED)

    def rpc(self, body: str) -> etree._Element:
        rpc = f'<rpc xmlns="{BASE_NS}" message-id="1">{body}</rpc>'
        self.session.data_received(encode_message(rpc.encode(), FramingMode.CHUNKED))
        (reply,) = self.transport.messages()
        return reply

    def establish(self, trigger: str, selection: str = "") -> int:
        reply = self.rpc(
            f'<establish-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}" xmlns:ds="{DS_NS}">'
            f"<yp:datastore>ds:operational</yp:datastore>{selection}{trigger}"
            "</establish-subscription>"
        )
        found = reply.findtext("sn:id", namespaces=M)
        assert found is not None, etree.tostring(reply)
        return int(found)

    def notifications(self) -> list[etree._Element]:
        return [message[1] for message in self.transport.messages()]


def periodic(period_cs: int) -> str:
    return f"<yp:periodic><yp:period>{period_cs}</yp:period></yp:periodic>"


def test_periodic_updates_come_at_each_period_with_the_selected_data() -> None:
    b = bench()
    alice = Receiver(b.agent)
    subscription = alice.establish(periodic(200))
    b.scheduler.advance(1.99)
    assert alice.notifications() == []
    b.scheduler.advance(0.01)
    (update,) = alice.notifications()
    assert etree.QName(update).localname == "push-update"
    assert update.findtext("yp:id", namespaces=M) == str(subscription)
    skr = update.findtext(".//q:skr", namespaces=M)
    assert skr == "1000"
    b.scheduler.advance(6.0)
    assert [etree.QName(n).localname for n in alice.notifications()] == ["push-update"] * 3


def test_on_change_syncs_first_then_sends_only_what_changed() -> None:
    b = bench()
    alice = Receiver(b.agent)
    alice.establish("<yp:on-change/>")
    b.scheduler.advance(0.0)
    (sync,) = alice.notifications()
    assert etree.QName(sync).localname == "push-update"
    b.scheduler.advance(5.0)
    assert alice.notifications() == []  # nothing changed, nothing sent
    b.node.status, b.node.skr = "OFF", 0
    b.scheduler.advance(0.25)
    (change,) = alice.notifications()
    assert etree.QName(change).localname == "push-change-update"
    targets = [t.text for t in change.iterfind(".//yp:edit/yp:target", M)]
    assert targets == [
        f"/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={LINK}/qkdl_status",
        f"/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={LINK}/qkdl_performance/skr",
    ]
    assert Schema.default().validate_notification_xml(etree.tostring(change).decode()) == []


def test_the_dampening_period_spaces_the_change_updates() -> None:
    b = bench()
    alice = Receiver(b.agent)
    alice.establish("<yp:on-change><yp:dampening-period>300</yp:dampening-period></yp:on-change>")
    b.scheduler.advance(0.0)
    alice.notifications()
    for skr in (1, 2, 3, 4, 5, 6):
        b.node.skr = skr
        b.scheduler.advance(0.5)
    assert len(alice.notifications()) == 1  # 3 s of changes, one update at the 3 s mark


def test_a_receiver_that_does_not_read_is_suspended_and_resynced_when_it_catches_up() -> None:
    b = bench(Limits(max_backlog_bytes=1000, resume_backlog_bytes=100))
    alice = Receiver(b.agent)
    alice.establish("<yp:on-change/>")
    b.scheduler.advance(0.0)
    alice.notifications()
    alice.backlog = 5000
    b.node.skr = 7
    b.scheduler.advance(0.25)
    (suspended,) = alice.notifications()
    assert etree.QName(suspended).localname == "subscription-suspended"
    assert (suspended.findtext("sn:reason", namespaces=M) or "").endswith("unsupportable-volume")
    b.node.skr = 8
    b.scheduler.advance(2.0)
    assert alice.notifications() == []  # still behind: nothing more is queued
    alice.backlog = 50
    b.scheduler.advance(0.25)
    names = [etree.QName(n).localname for n in alice.notifications()]
    assert names == ["subscription-resumed", "push-update"]
    assert b.push.suspensions == 1


def test_a_session_that_ends_leaves_no_timer_and_no_subscription() -> None:
    b = bench()
    alice = Receiver(b.agent)
    alice.establish(periodic(100))
    alice.establish("<yp:on-change/>")
    assert b.scheduler.live() == 2
    alice.session.close()
    assert b.scheduler.live() == 0
    assert len(b.push.table) == 0


def test_kill_tells_the_receiver_and_delete_by_another_session_is_refused() -> None:
    b = bench()
    alice, bob = Receiver(b.agent), Receiver(b.agent)
    subscription = alice.establish(periodic(100))
    refused = bob.rpc(
        f'<delete-subscription xmlns="{SN_NS}"><id>{subscription}</id></delete-subscription>'
    )
    assert refused.findtext(f"{{{BASE_NS}}}rpc-error/{{{BASE_NS}}}error-app-tag") == (
        "ietf-subscribed-notifications:no-such-subscription"
    )
    killed = bob.rpc(
        f'<kill-subscription xmlns="{SN_NS}"><id>{subscription}</id></kill-subscription>'
    )
    assert killed.find(f"{{{BASE_NS}}}ok") is not None  # no NACM here: anyone may
    (terminated,) = alice.notifications()
    assert etree.QName(terminated).localname == "subscription-terminated"
    assert b.scheduler.live() == 0


def test_an_rfc5277_session_may_not_also_hold_dynamic_subscriptions() -> None:
    b = bench()
    alice = Receiver(b.agent)
    alice.establish(periodic(100))
    refused = alice.rpc(
        '<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>'
    )
    assert refused.findtext(f"{{{BASE_NS}}}rpc-error/{{{BASE_NS}}}error-tag") == (
        "operation-not-supported"
    )
    bob = Receiver(b.agent)
    bob.rpc('<create-subscription xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0"/>')
    refused = bob.rpc(
        f'<establish-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}" xmlns:ds="{DS_NS}">'
        f"<yp:datastore>ds:operational</yp:datastore>{periodic(100)}</establish-subscription>"
    )
    assert refused.findtext(f"{{{BASE_NS}}}rpc-error/{{{BASE_NS}}}error-tag") == (
        "operation-not-supported"
    )


def test_modify_subscription_changes_the_period_from_then_on() -> None:
    b = bench()
    alice = Receiver(b.agent)
    subscription = alice.establish(periodic(100))
    b.scheduler.advance(1.0)
    assert len(alice.notifications()) == 1
    reply = alice.rpc(
        f'<modify-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}"><id>{subscription}</id>'
        f"{periodic(500)}</modify-subscription>"
    )
    assert reply.find(f"{{{BASE_NS}}}ok") is not None
    b.scheduler.advance(4.9)
    assert alice.notifications() == []
    b.scheduler.advance(0.1)
    assert len(alice.notifications()) == 1


def test_resync_sends_the_whole_selection_now_and_only_for_ones_own_on_change() -> None:
    b = bench()
    alice = Receiver(b.agent)
    on_change = alice.establish("<yp:on-change/>")
    every_second = alice.establish(periodic(100))
    b.scheduler.advance(0.0)
    alice.notifications()
    reply = alice.rpc(
        f'<resync-subscription xmlns="{YP_NS}"><id>{on_change}</id></resync-subscription>'
    )
    assert reply.find(f"{{{BASE_NS}}}ok") is not None
    b.scheduler.advance(0.0)
    assert [etree.QName(n).localname for n in alice.notifications()] == ["push-update"]
    refused = alice.rpc(
        f'<resync-subscription xmlns="{YP_NS}"><id>{every_second}</id></resync-subscription>'
    )
    assert refused.findtext(f"{{{BASE_NS}}}rpc-error/{{{BASE_NS}}}error-app-tag") == (
        "ietf-yang-push:no-such-subscription-resync"
    )
