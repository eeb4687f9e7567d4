"""Topology store (merging both ends, typed events), node data reader and notification parser."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agents import notifications as agent_notifications
from controller.errors import NodeDataError
from controller.model import LinkStatus, QoS
from controller.nodedata import parse_node
from controller.notifications import (
    ApplicationNew,
    AppQosUpdate,
    LinkDown,
    LinkPerf,
    LinkStatusEvent,
    Other,
    parse_notification,
)
from controller.topology.events import TopologyEventType as T
from controller.topology.store import Perf, TopologyStore
from yang.model import KeyMode
from yang.schema import Schema

N1 = "11111111-1111-4111-8111-111111111111"
N2 = "22222222-2222-4222-8222-222222222222"
N3 = "33333333-3333-4333-8333-333333333333"
L12 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
L23 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
TYPES = 'xmlns:t="urn:etsi:qkd:yang:etsi-qkd-node-types"'


def phys(link: str, local: str, remote: str, skr: int, eskr: int, status: str = "ACTIVE") -> str:
    return f"""<qkd_link><qkdl_id>{link}</qkdl_id><qkdl_status {TYPES}>t:{status}</qkdl_status>
      <qkdl_local><qkdn_id>{local}</qkdn_id><qkdi_id>1</qkdi_id></qkdl_local>
      <qkdl_remote><qkdn_id>{remote}</qkdn_id><qkdi_id>2</qkdi_id></qkdl_remote>
      <qkdl_type {TYPES}>t:PHYS</qkdl_type>
      <qkdl_performance><expected_consumption>0</expected_consumption><skr>{skr}</skr>
      <eskr>{eskr}</eskr><phys_perf><perf_type {TYPES}>t:QBER</perf_type><value>0.021</value>
      </phys_perf></qkdl_performance></qkd_link>"""


def node(node_id: str, *links: str) -> str:
    return f"""<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><data>
      <qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node"><qkdn_id>{node_id}</qkdn_id>
      <qkdn_location_id>Madrid</qkdn_location_id>
      <qkd_interfaces><qkd_interface><qkdi_id>1</qkdi_id></qkd_interface></qkd_interfaces>
      <qkd_links>{"".join(links)}</qkd_links></qkd_node></data></rpc-reply>"""


def test_node_data_reads_links_performance_and_qber() -> None:
    data = parse_node(node(N1, phys(L12, N1, N2, 9_000, 8_000)))
    assert data.qkdn_id == N1 and data.location == "Madrid" and data.interfaces == (1,)
    [half] = data.phys_links
    assert (half.local, half.remote, half.skr, half.eskr) == (N1, N2, 9_000, 8_000)
    assert half.qber == pytest.approx(0.021)
    assert half.status is LinkStatus.ACTIVE


@pytest.mark.parametrize(
    "xml, message",
    [
        ("<nope", "not XML"),
        ("<data/>", "no qkd_node"),
        ('<qkd_node xmlns="urn:etsi:qkd:yang:etsi-qkd-node"/>', "no qkdn_id"),
    ],
)
def test_bad_node_data_is_refused_clearly(xml: str, message: str) -> None:
    with pytest.raises(NodeDataError, match=message):
        parse_node(xml)


def test_a_link_seen_from_both_ends_is_one_edge() -> None:
    store = TopologyStore()
    events = store.device_seen(N1, "n1", parse_node(node(N1, phys(L12, N1, N2, 9_000, 8_000))))
    assert [e.type for e in events] == [T.DEVICE_ADDED, T.LINK_ADDED]
    events = store.device_seen(
        N2,
        "n2",
        parse_node(node(N2, phys(L12, N2, N1, 9_100, 7_000), phys(L23, N2, N3, 5_000, 5_000))),
    )
    assert [e.type for e in events] == [T.DEVICE_ADDED, T.LINK_UPDATED, T.LINK_ADDED]
    snapshot = store.snapshot()
    assert len(snapshot.links) == 2
    link = snapshot.links[L12]
    assert {link.a, link.b} == {N1, N2}
    assert (link.skr, link.eskr) == (9_000, 7_000)  # the more cautious end
    # n3 is not connected: its link is known but not usable
    assert [u.qkdl_id for u in snapshot.usable_links()] == [L12]


def test_link_down_perf_and_device_loss_give_typed_events() -> None:
    store = TopologyStore()
    store.device_seen(N1, "n1", parse_node(node(N1, phys(L12, N1, N2, 9_000, 8_000))))
    store.device_seen(N2, "n2", parse_node(node(N2, phys(L12, N2, N1, 9_000, 8_000))))
    [down] = store.link_down(L12, "fibre cut")
    assert down.type is T.LINK_DOWN and down.reason == "fibre cut"
    assert store.snapshot().links[L12].status is LinkStatus.OFF
    assert store.link_down(L12, "again") == []
    [up] = store.link_up(L12)
    assert up.type is T.LINK_UP
    [perf] = store.link_perf(L12, Perf(5_000, 4_000, 100, 0.03))
    assert perf.type is T.LINK_UPDATED and perf.link is not None and perf.link.eskr == 4_000
    assert store.link_perf("unknown", Perf(1, 1, 1, None)) == []
    [lost] = store.device_lost(N2, "session lost")
    assert lost.type is T.DEVICE_UNAVAILABLE and lost.reason == "session lost"
    assert list(store.snapshot().usable_links()) == []
    assert store.device_lost(N2, "twice") == []
    events = store.device_seen(N2, "n2", parse_node(node(N2, phys(L12, N2, N1, 9_000, 8_000))))
    assert events[0].type is T.DEVICE_AVAILABLE
    # a node that reports the link not ACTIVE takes it down; a removed link is reported
    events = store.device_seen(N2, "n2", parse_node(node(N2, phys(L12, N2, N1, 0, 0, "OFF"))))
    assert [e.type for e in events] == [T.LINK_DOWN]
    events = store.device_seen(N1, "n1", parse_node(node(N1)))
    events += store.device_seen(N2, "n2", parse_node(node(N2)))
    assert [e.type for e in events] == [T.LINK_REMOVED]  # gone once neither end reports it


def wrap(inner: str) -> str:
    return (
        '<notification xmlns="urn:ietf:params:xml:ns:netconf:notification:1.0">'
        f"<eventTime>2026-11-26T08:00:00Z</eventTime>{inner}</notification>"
    )


def test_parses_the_notifications_the_agents_raise() -> None:
    new = agent_notifications.application_new(
        agent_notifications.AppRequest(
            "app1", ("app2",), N1, N3, app_priority=3, min_bandwidth=100, max_bandwidth=200, ttl=9
        )
    )
    assert parse_notification(wrap(new)) == ApplicationNew(
        "app1", ("app2",), N1, N3, QoS(100, 200, 3, 9, 0)
    )
    down = agent_notifications.link_down(L12, "fibre cut")
    assert parse_notification(wrap(down)) == LinkDown(L12, "fibre cut")
    perf = agent_notifications.link_perf_update(
        L12, agent_notifications.Performance(10, 9_000, 8_000, 0.02)
    )
    assert parse_notification(wrap(perf)) == LinkPerf(L12, 9_000, 8_000, 10, 0.02)
    alarm = agent_notifications.link_alarm("event", L12, "ACTIVE", "distilling key again")
    assert parse_notification(wrap(alarm)) == LinkStatusEvent(
        L12, LinkStatus.ACTIVE, "distilling key again"
    )
    assert parse_notification(wrap('<foo xmlns="urn:x"/>')) == Other("foo")
    with pytest.raises(NodeDataError, match="not an RFC 5277"):
        parse_notification("<notification/>")


def test_the_key_mode_of_a_new_application_is_parsed_and_an_unknown_one_refused() -> None:
    request = agent_notifications.AppRequest("app1", ("app2",), N1, N3, key_mode="pqc-only")
    new = agent_notifications.application_new(request)
    assert Schema.default().validate_notification_xml(new) == []
    parsed = parse_notification(wrap(new))
    assert isinstance(parsed, ApplicationNew) and parsed.key_mode is KeyMode.PQC_ONLY
    plain = agent_notifications.application_new(replace(request, key_mode=""))
    assert "key_mode" not in plain  # the agent leaves the model's default implicit
    parsed = parse_notification(wrap(plain))
    assert isinstance(parsed, ApplicationNew) and parsed.key_mode is KeyMode.QKD_PREFERRED
    bad = new.replace(">pqc-only<", ">pqc-maybe<")
    with pytest.raises(NodeDataError, match="key_mode 'pqc-maybe' is not one of"):
        parse_notification(wrap(bad))


def test_parses_a_qos_update() -> None:
    xml = wrap(
        '<sdqkdn_application_qos_update xmlns="urn:etsi:qkd:yang:etsi-qkd-node">'
        f"<qkd_application><app_id>{L12}</app_id><app_qos><max_bandwidth>900</max_bandwidth>"
        "<min_bandwidth>300</min_bandwidth><jitter>1</jitter><ttl>5</ttl></app_qos>"
        "<app_priority>4</app_priority></qkd_application></sdqkdn_application_qos_update>"
    )
    assert parse_notification(xml) == AppQosUpdate(L12, QoS(300, 900, 4, 5, 1))
