"""XPath filters of RFC 5277 subscriptions: checked at subscribe, matched per notification."""

from __future__ import annotations

import pytest
from lxml import etree

from agents.netconf.errors import NetconfError
from agents.netconf.xpath import check_xpath, notification_matches
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
LINK_ID = "22222222-2222-4222-8222-222222222222"
LINK_DOWN = etree.fromstring(
    f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>{LINK_ID}</qkdl_id>'
    "<reason>fiber cut</reason></qkd_link></sdqkdn_link_down>"
)


def _matches(select: str, nsmap: dict[str | None, str] | None = None) -> bool:
    return notification_matches(Schema.default(), LINK_DOWN, select, nsmap or {})


def test_a_path_to_the_event_or_into_it_matches() -> None:
    assert _matches("/sdqkdn_link_down")
    assert _matches("/q:sdqkdn_link_down/q:qkd_link[q:reason='fiber cut']", {"q": NS})
    assert _matches(f"/sdqkdn_link_down/qkd_link[qkdl_id='{LINK_ID}']")
    assert _matches("sdqkdn_link_down")  # relative: anchored at the root as in <get>


def test_other_events_and_unmet_predicates_do_not_match() -> None:
    assert not _matches("/alarm")
    assert not _matches("/sdqkdn_link_down/qkd_link[reason='eavesdropper']")
    assert not _matches("/sdqkdn_link_perf_update | /alarm")
    assert _matches("/sdqkdn_link_perf_update | /sdqkdn_link_down")


def test_bad_expressions_are_refused_when_subscribing() -> None:
    schema = Schema.default()
    check_xpath(schema, "/sdqkdn_link_down[qkd_link/reason='x']", {})
    with pytest.raises(NetconfError) as caught:
        check_xpath(schema, "/sdqkdn_link_down/[[", {})
    assert caught.value.errors[0].tag.value == "invalid-value"
    with pytest.raises(NetconfError) as caught:
        check_xpath(schema, "/nope:sdqkdn_link_down", {})
    assert "not declared" in caught.value.errors[0].message


def test_an_event_the_schema_does_not_know_matches_nothing() -> None:
    unknown = etree.fromstring('<surprise xmlns="urn:example"/>')
    assert not notification_matches(Schema.default(), unknown, "/surprise", {})
