"""YANG-push (RFC 8639/8641 over NETCONF, RFC 8640) seen by an independent client: ncclient
sends establish-subscription as a raw RPC and reads the notifications, against the real
NETCONF server (harness agents, and whole agents with emulated links for the fault path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agents.access.nacm import standard, to_json
from agents.access.users import Accounts, User, hash_password
from agents.datastore.tree import BASE_NS
from agents.metrics import AgentMetrics
from agents.netconf.push.model import DS_NS, SN_NS, YP_NS
from common.config import Address
from common.metrics import MetricsServer
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.netconf import (
    INITIAL_RUNNING,
    NCCLIENT_TICK_S,
    NS,
    TYPES_NS,
    AgentThread,
    connect,
    running_agent,
)
from yang.schema import Schema

NOTIFICATION_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
M = {"n": NOTIFICATION_NS, "yp": YP_NS, "sn": SN_NS, "q": NS, "nc": BASE_NS}
NACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
LINK = "44444444-4444-4444-8444-444444444444"
MARGIN_S = 3.0  # for a busy machine; the test fails only past N × period + this
USERS = {"mon": ("monitor", "pw-monitor"), "root": ("admin", "pw-admin")}


def establish(trigger: str, selection: str = "") -> etree._Element:
    return etree.fromstring(
        f'<establish-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}" xmlns:ds="{DS_NS}" '
        f'xmlns:q="{NS}"><yp:datastore>ds:operational</yp:datastore>{selection}{trigger}'
        "</establish-subscription>"
    )


def periodic(period_cs: int) -> str:
    return f"<yp:periodic><yp:period>{period_cs}</yp:period></yp:periodic>"


def subscribe(session: manager.Manager, rpc: etree._Element) -> int:
    reply = session.dispatch(rpc)
    found = etree.fromstring(reply.xml.encode()).findtext("sn:id", namespaces=M)
    assert found is not None, reply.xml
    return int(found)


def events(session: manager.Manager, count: int, deadline_s: float) -> list[etree._Element]:
    """The next `count` notification events (the element inside <notification>), each
    checked against the YANG modules; fewer if the deadline passes first."""
    end = time.monotonic() + deadline_s
    found: list[etree._Element] = []
    while len(found) < count:
        left = end - time.monotonic()
        if left <= 0:
            break
        notification = session.take_notification(block=True, timeout=left)
        if notification is None:
            break
        xml = notification.notification_xml
        assert Schema.default().validate_notification_xml(xml) == [], xml
        found.append(etree.fromstring(xml.encode())[1])
    return found


def name(event: etree._Element) -> str:
    return etree.QName(event).localname


def paths(element: etree._Element, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every element path (local names) below `element`."""
    for child in element:
        if isinstance(child.tag, str):
            here = (*prefix, etree.QName(child).localname)
            yield here
            yield from paths(child, here)


# ---- periodic, errors, stream: the harness agent ------------------------------------------


def test_periodic_updates_arrive_at_the_period(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as m:
        subscription = subscribe(m, establish(periodic(100)))
        started = time.monotonic()
        got = events(m, 3, 3 * 1.0 + MARGIN_S)
        elapsed = time.monotonic() - started
        assert [name(e) for e in got] == ["push-update"] * 3
        assert elapsed >= 2.9  # not faster than the period either
        for update in got:
            assert update.findtext("yp:id", namespaces=M) == str(subscription)
            assert update.find("yp:datastore-contents/q:qkd_node", M) is not None


def test_a_period_below_one_second_is_refused_naming_the_bound(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as m:
        with pytest.raises(RPCError) as refused:
            m.dispatch(establish(periodic(50)))
        error = refused.value
        assert error.tag == "invalid-value"
        assert error.app_tag == "ietf-yang-push:period-unsupported"
        assert "100 cs (1 s)" in str(error.message)
        xml = etree.tostring(error.xml).decode()
        assert "<period-hint>100</period-hint>" in xml
        assert events(m, 1, 1.5) == []  # nothing was established


def test_modify_delete_and_errors_of_unknown_ids(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as m, connect(agent) as other:
        subscription = subscribe(m, establish(periodic(100)))
        modify = etree.fromstring(
            f'<modify-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}"><id>{subscription}</id>'
            f"{periodic(10)}</modify-subscription>"
        )
        with pytest.raises(RPCError) as too_fast:
            m.dispatch(modify)
        assert too_fast.value.app_tag == "ietf-yang-push:period-unsupported"
        delete = etree.fromstring(
            f'<delete-subscription xmlns="{SN_NS}"><id>{subscription}</id></delete-subscription>'
        )
        with pytest.raises(RPCError) as not_theirs:
            other.dispatch(delete)
        assert not_theirs.value.app_tag == "ietf-subscribed-notifications:no-such-subscription"
        m.dispatch(delete)
        with pytest.raises(RPCError) as gone:
            m.dispatch(delete)
        assert gone.value.tag == "invalid-value"


def test_a_stream_subscription_gets_the_events_its_filter_selects(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as m:
        rpc = etree.fromstring(
            f'<establish-subscription xmlns="{SN_NS}"><stream>NETCONF</stream>'
            "<stream-xpath-filter>/sdqkdn_link_down</stream-xpath-filter>"
            "</establish-subscription>"
        )
        subscribe(m, rpc)
        agent.publish(
            f'<sdqkdn_link_perf_update xmlns="{NS}"><qkd_link><qkdl_id>{LINK}</qkdl_id>'
            "</qkd_link></sdqkdn_link_perf_update>"
        )
        agent.publish(
            f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>{LINK}</qkdl_id>'
            "<reason>fiber cut</reason></qkd_link></sdqkdn_link_down>"
        )
        got = events(m, 2, 2.0)
        assert [name(e) for e in got] == ["sdqkdn_link_down"]


# ---- NACM -------------------------------------------------------------------------------


def _running_with_a_link_and_rules(accounts: Accounts) -> str:
    rules = Schema.default().json_to_xml(to_json(standard(accounts.group_members())))
    node = INITIAL_RUNNING.replace(
        "</qkd_node>",
        f'<qkd_links><qkd_link><qkdl_id>{LINK}</qkdl_id><qkdl_type xmlns:t="{TYPES_NS}">'
        "t:VIRT</qkdl_type><virt_bandwidth>1000</virt_bandwidth></qkd_link></qkd_links>"
        "</qkd_node>",
    )
    return f'<data xmlns="{BASE_NS}">{node}{rules}</data>'


@contextmanager
def _agent_with_users(tmp_path: Path) -> Iterator[AgentThread]:
    accounts = Accounts(
        User(user, group, hash_password(password, n=2**10))
        for user, (group, password) in USERS.items()
    )
    initial = _running_with_a_link_and_rules(accounts)
    with running_agent(tmp_path, accounts=accounts, initial_running=initial) as agent:
        yield agent


def _login(agent: AgentThread, user: str) -> manager.Manager:
    return connect(agent, username=user, password=USERS[user][1])


NO_LINKS_FOR_MONITORS = f"""
<config xmlns="{BASE_NS}"><nacm xmlns="{NACM_NS}" xmlns:q="{NS}"><rule-list><name>monitor</name>
  <rule><name>no-links</name><module-name>*</module-name><path>/q:qkd_node/q:qkd_links</path>
    <access-operations>read</access-operations><action>deny</action></rule>
</rule-list></nacm></config>"""


def test_a_user_limited_by_nacm_never_receives_what_it_may_not_read(tmp_path: Path) -> None:
    with _agent_with_users(tmp_path) as agent, _login(agent, "root") as root:
        root.edit_config(target="running", config=NO_LINKS_FOR_MONITORS)
        with _login(agent, "mon") as mon:
            subscribe(mon, establish(periodic(100)))
            subscribe(mon, establish("<yp:on-change/>"))
            first = events(mon, 2, 1.0 + MARGIN_S)
            assert sorted(name(e) for e in first) == ["push-update", "push-update"]
            for update in first:
                seen = set(paths(update))
                assert ("datastore-contents", "qkd_node", "qkdn_id") in seen
                assert not any("qkd_links" in p or "nacm" in p for p in seen)
            # A link change is nothing to the monitor; the location is.
            root.edit_config(
                target="running",
                config=f'<config xmlns="{BASE_NS}"><qkd_node xmlns="{NS}"><qkd_links><qkd_link>'
                f"<qkdl_id>{LINK}</qkdl_id><virt_bandwidth>2000</virt_bandwidth></qkd_link>"
                f"</qkd_links><qkdn_location_id>room-9</qkdn_location_id></qkd_node></config>",
            )
            changes = [e for e in events(mon, 4, 2.0 + MARGIN_S) if name(e) != "push-update"]
            assert changes, "no push-change-update after the location changed"
            targets = [t.text or "" for c in changes for t in c.iterfind(".//yp:target", M)]
            assert "/etsi-qkd-sdn-node:qkd_node/qkdn_location_id" in targets
            assert not any("qkd_links" in t for t in targets)


def test_kill_subscription_is_for_administrators_and_tells_the_receiver(tmp_path: Path) -> None:
    with (
        _agent_with_users(tmp_path) as agent,
        _login(agent, "mon") as mon,
        _login(agent, "root") as root,
    ):
        subscription = subscribe(mon, establish(periodic(6000)))
        kill = etree.fromstring(
            f'<kill-subscription xmlns="{SN_NS}"><id>{subscription}</id></kill-subscription>'
        )
        with pytest.raises(RPCError) as denied:
            mon.dispatch(kill)
        assert denied.value.tag == "access-denied"
        root.dispatch(kill)
        (terminated,) = events(mon, 1, 2.0)
        assert name(terminated) == "subscription-terminated"
        assert terminated.findtext("sn:id", namespaces=M) == str(subscription)
        assert (terminated.findtext("sn:reason", namespaces=M) or "").endswith(
            "no-such-subscription"
        )


# ---- whole agents: the fault path and the metrics ------------------------------------------


def _plan_session(plan: Any, port: int) -> manager.Manager:
    import ncclient.transport.session

    ncclient.transport.session.TICK = NCCLIENT_TICK_S
    credentials = plan.credentials
    return manager.connect(
        host="127.0.0.1",
        port=port,
        username=credentials.netconf_username,
        password=Path(credentials.password_file).read_text().strip(),
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )


PERFORMANCE_ONLY = (
    f'<yp:datastore-subtree-filter><qkd_node xmlns="{NS}"><qkd_links><qkd_link>'
    "<qkdl_performance/></qkd_link></qkd_links></qkd_node></yp:datastore-subtree-filter>"
)


def test_on_change_sees_a_cut_link_within_two_seconds_and_filters_hold(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    link = plan.links[0].qkdl_id

    async def scenario() -> None:
        async with running_agents(plan, plan_ports=False) as handles:
            port = handles["a"].netconf_port
            status_xpath = (
                "<yp:datastore-xpath-filter>/q:qkd_node/q:qkd_links/q:qkd_link/q:qkdl_status"
                "</yp:datastore-xpath-filter>"
            )
            watcher = await asyncio.to_thread(_plan_session, plan, port)
            perf = await asyncio.to_thread(_plan_session, plan, port)
            try:
                await asyncio.to_thread(
                    subscribe, watcher, establish("<yp:on-change/>", status_xpath)
                )
                await asyncio.to_thread(
                    subscribe, perf, establish("<yp:on-change/>", PERFORMANCE_ONLY)
                )
                (sync,) = await asyncio.to_thread(events, watcher, 1, 5.0)
                assert name(sync) == "push-update"
                assert "ACTIVE" in (sync.findtext(".//q:qkdl_status", namespaces=M) or "")
                (perf_sync,) = await asyncio.to_thread(events, perf, 1, 5.0)
                contents = perf_sync.find("yp:datastore-contents", M)
                assert contents is not None
                assert {p[-1] for p in paths(contents)} <= {
                    "qkd_node",
                    "qkd_links",
                    "qkd_link",
                    "qkdl_id",
                    "qkdl_performance",
                    "expected_consumption",
                    "skr",
                    "eskr",
                    "phys_perf",
                    "perf_type",
                    "value",
                }
                cut_at = time.monotonic()
                handles["a"].node.set_link(link, False)  # the fibre is cut (lab fault cut)
                (change,) = await asyncio.to_thread(events, watcher, 1, 2.0)
                assert time.monotonic() - cut_at <= 2.0
                assert name(change) == "push-change-update"
                (edit,) = change.iterfind(".//yp:edit", M)
                assert edit.findtext("yp:target", namespaces=M) == (
                    f"/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link={link}/qkdl_status"
                )
                assert (edit.findtext("yp:value/q:qkdl_status", namespaces=M) or "").endswith(
                    ":OFF"
                )
                perf_changes = await asyncio.to_thread(events, perf, 1, 2.0 + MARGIN_S)
                assert perf_changes, "the SKR drop did not reach the performance subscriber"
                targets = [t.text or "" for t in perf_changes[0].iterfind(".//yp:target", M)]
                assert targets and all("/qkdl_performance/" in t for t in targets), targets
            finally:
                await asyncio.to_thread(watcher.close_session)
                await asyncio.to_thread(perf.close_session)

    asyncio.run(scenario())


def _scraped_skr(server: MetricsServer, link: str) -> float:
    text = httpx.get(server.url, timeout=10.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "qkdsdn_link_skr_bps" and sample.labels == {
                "node": "a",
                "peer": "b",
                "qkdl_id": link,
            }:
                return float(sample.value)
    raise AssertionError("no qkdsdn_link_skr_bps for the link in /metrics")


def test_the_skr_a_subscriber_sees_is_the_skr_in_the_metrics(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    link = plan.links[0].qkdl_id

    async def scenario() -> None:
        metrics = AgentMetrics(CollectorRegistry())
        async with running_agents(plan, metrics=metrics, plan_ports=False) as handles:
            server = MetricsServer.start(metrics.registry, Address("127.0.0.1", 0))
            session = await asyncio.to_thread(_plan_session, plan, handles["a"].netconf_port)
            try:
                skr_xpath = (
                    "<yp:datastore-xpath-filter>/q:qkd_node/q:qkd_links/"
                    f"q:qkd_link[q:qkdl_id='{link}']/q:qkdl_performance/q:skr"
                    "</yp:datastore-xpath-filter>"
                )
                await asyncio.to_thread(subscribe, session, establish(periodic(100), skr_xpath))
                (update,) = await asyncio.to_thread(events, session, 1, 1.0 + MARGIN_S)
                pushed = int(update.findtext(".//q:skr", namespaces=M) or "-1")
                scraped = await asyncio.to_thread(_scraped_skr, server, link)
                assert pushed > 0
                assert abs(pushed - scraped) < 1.0, (pushed, scraped)  # 015 skr is a uint32
            finally:
                await asyncio.to_thread(session.close_session)
                server.stop()

    asyncio.run(scenario())
