"""The RFC 8640 wire of dynamic subscriptions: RPC input read into values (bad input named),
and every notification and error written as the YANG modules and RFCs say."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from agents.netconf.errors import BASE_NS, NetconfError
from agents.netconf.push import messages
from agents.netconf.push.changes import Edit
from agents.netconf.push.model import (
    DATASTORE_NOT_SUBSCRIBABLE,
    DS_NS,
    ENCODING_UNSUPPORTED,
    NO_SUCH_SUBSCRIPTION,
    PERIOD_UNSUPPORTED,
    SN_NS,
    STREAM_UNAVAILABLE,
    YP_NS,
    ChangeType,
    DatastoreTarget,
    ErrorInfo,
    OnChange,
    Periodic,
    Selection,
    StreamTarget,
    SubscriptionError,
)
from agents.netconf.rpcs import error_reply
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def establish(body: str) -> etree._Element:
    return etree.fromstring(
        f'<establish-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}" xmlns:ds="{DS_NS}">'
        f"{body}</establish-subscription>"
    )


OPERATIONAL = "<yp:datastore>ds:operational</yp:datastore>"


def test_a_periodic_subscription_with_an_anchor_is_read() -> None:
    target = messages.parse_establish(
        establish(
            OPERATIONAL + "<yp:periodic><yp:period>150</yp:period>"
            "<yp:anchor-time>2026-12-03T10:00:00Z</yp:anchor-time></yp:periodic>"
        )
    )
    assert target == DatastoreTarget(Selection(), Periodic(150, NOW))


def test_an_on_change_subscription_with_an_xpath_filter_is_read() -> None:
    target = messages.parse_establish(
        establish(
            OPERATIONAL + "<yp:datastore-xpath-filter xmlns:q='urn:etsi:qkd:yang:etsi-qkd-node'>"
            "/q:qkd_node/q:qkd_links</yp:datastore-xpath-filter>"
            "<yp:on-change><yp:dampening-period>50</yp:dampening-period>"
            "<yp:sync-on-start>false</yp:sync-on-start>"
            "<yp:excluded-change>create</yp:excluded-change></yp:on-change>"
        )
    )
    assert isinstance(target, DatastoreTarget)
    assert target.trigger == OnChange(50, False, frozenset({ChangeType.CREATE}))
    assert target.selection.xpath is not None
    assert target.selection.xpath.expression == "/q:qkd_node/q:qkd_links"
    assert ("q", NS) in target.selection.xpath.nsmap


def test_a_subtree_filter_keeps_its_nodes() -> None:
    target = messages.parse_establish(
        establish(
            OPERATIONAL + f'<yp:datastore-subtree-filter><qkd_node xmlns="{NS}"><qkd_links/>'
            "</qkd_node></yp:datastore-subtree-filter><yp:periodic><yp:period>100</yp:period>"
            "</yp:periodic>"
        )
    )
    assert isinstance(target, DatastoreTarget) and target.selection.subtree is not None
    (root,) = target.selection.subtree
    assert etree.QName(root).localname == "qkd_node"


def test_a_stream_subscription_names_the_netconf_stream() -> None:
    target = messages.parse_establish(establish("<stream>NETCONF</stream>"))
    assert target == StreamTarget(Selection())
    with pytest.raises(SubscriptionError, match="no event stream 'syslog'") as refused:
        messages.parse_establish(establish("<stream>syslog</stream>"))
    assert refused.value.reason == STREAM_UNAVAILABLE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<yp:periodic><yp:period>100</yp:period></yp:periodic>", "stream or datastore"),
        (OPERATIONAL, "periodic or on-change"),
        (
            OPERATIONAL + "<yp:periodic><yp:period>1</yp:period></yp:periodic><yp:on-change/>",
            "exclude each other",
        ),
        (OPERATIONAL + "<yp:periodic><yp:period>-5</yp:period></yp:periodic>", "period '-5'"),
        (OPERATIONAL + "<yp:periodic/>", "missing parameter <period>"),
        (
            OPERATIONAL + "<yp:periodic><yp:period>100</yp:period>"
            "<yp:anchor-time>yesterday</yp:anchor-time></yp:periodic>",
            "anchor-time 'yesterday'",
        ),
        (
            OPERATIONAL + "<yp:on-change><yp:excluded-change>x</yp:excluded-change></yp:on-change>",
            "excluded-change 'x'",
        ),
        (
            OPERATIONAL + "<replay-start-time>2026-01-01T00:00:00Z</replay-start-time>",
            "<replay-start-time> is not supported",
        ),
    ],
)
def test_malformed_input_is_a_protocol_error_naming_what_is_wrong(body: str, message: str) -> None:
    with pytest.raises(NetconfError, match=message):
        messages.parse_establish(establish(body))


def test_another_datastore_or_encoding_is_refused_with_the_rfc_identity() -> None:
    running = "<yp:datastore>ds:running</yp:datastore><yp:on-change/>"
    with pytest.raises(SubscriptionError, match="ds:running") as datastore:
        messages.parse_establish(establish(running))
    assert datastore.value.reason == DATASTORE_NOT_SUBSCRIBABLE
    json = OPERATIONAL + "<yp:on-change/><encoding>encode-json</encoding>"
    with pytest.raises(SubscriptionError) as encoding:
        messages.parse_establish(establish(json))
    assert encoding.value.reason == ENCODING_UNSUPPORTED


def test_modify_changes_only_what_it_names() -> None:
    old = DatastoreTarget(Selection(), Periodic(100, NOW))
    operation = etree.fromstring(
        f'<modify-subscription xmlns="{SN_NS}" xmlns:yp="{YP_NS}"><id>4</id>'
        "<yp:periodic><yp:period>300</yp:period></yp:periodic></modify-subscription>"
    )
    assert messages.parse_id(operation) == 4
    assert messages.parse_modify(operation, old) == DatastoreTarget(Selection(), Periodic(300, NOW))


def test_every_notification_is_valid_against_the_yang_modules() -> None:
    schema = Schema.default()
    root = etree.fromstring(
        f'<qkd_node xmlns="{NS}" xmlns:t="urn:etsi:qkd:yang:etsi-qkd-node-types">'
        "<qkdn_status>t:OPERATING</qkdn_status></qkd_node>"
    )
    status = etree.fromstring(
        f'<qkdl_status xmlns="{NS}" xmlns:t="urn:etsi:qkd:yang:etsi-qkd-node-types">t:OFF</qkdl_status>'
    )
    edits = [
        Edit(
            ChangeType.REPLACE,
            "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=a/qkdl_status",
            status,
        ),
        Edit(ChangeType.DELETE, "/etsi-qkd-sdn-node:qkd_node/qkd_links/qkd_link=b"),
    ]
    for inner in (
        messages.push_update(7, [root]),
        messages.push_update(7, []),
        messages.push_change_update(7, "0", edits),
        messages.subscription_terminated(7, NO_SUCH_SUBSCRIPTION),
        messages.subscription_suspended(7, PERIOD_UNSUPPORTED),
        messages.subscription_resumed(7),
    ):
        wrapped = messages.notification(NOW, inner)
        assert schema.validate_notification_xml(wrapped.decode()) == [], wrapped


def test_a_refusal_carries_the_identity_as_app_tag_and_the_hint_in_error_info() -> None:
    error = SubscriptionError(
        PERIOD_UNSUPPORTED,
        "period 10 cs is below 100 cs",
        ErrorInfo.ESTABLISH_DATASTORE,
        (("period-hint", "100"),),
    )
    reply = etree.fromstring(error_reply(None, messages.error_of(error).errors))
    nc = {"nc": BASE_NS, "yp": YP_NS}
    assert reply.findtext("nc:rpc-error/nc:error-tag", namespaces=nc) == "invalid-value"
    assert reply.findtext("nc:rpc-error/nc:error-app-tag", namespaces=nc) == (
        "ietf-yang-push:period-unsupported"
    )
    info = reply.find(
        "nc:rpc-error/nc:error-info/yp:establish-subscription-datastore-error-info", nc
    )
    assert info is not None
    reason = info.find("yp:reason", nc)
    assert reason is not None and reason.text is not None
    prefix, _, name = reason.text.partition(":")
    assert (reason.nsmap[prefix], name) == (YP_NS, "period-unsupported")
    assert info.findtext("yp:period-hint", namespaces=nc) == "100"
