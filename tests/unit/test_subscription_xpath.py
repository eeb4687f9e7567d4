"""XPath filters of RFC 5277 subscriptions: checked at subscribe, matched per notification."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from lxml import etree

from agents.netconf.errors import NetconfError
from agents.netconf.xpath import _matches_by_local_names, check_xpath, notification_matches
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


def test_an_event_libyang_cannot_read_is_logged_and_still_matched_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The publisher validates every event, so a failure here is the evaluator's: the
    old matcher answered "no match" silently; now it is logged and evaluated again."""
    unknown = etree.fromstring('<surprise xmlns="urn:example"><why>x</why></surprise>')
    with caplog.at_level(logging.WARNING, logger="agents.netconf.xpath"):
        assert notification_matches(Schema.default(), unknown, "/surprise[why='x']", {})
        assert not notification_matches(Schema.default(), unknown, "/surprise[why='y']", {})
    assert any("surprise" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("select", "nsmap"),
    [
        ("/sdqkdn_link_down", {}),
        ("/q:sdqkdn_link_down/q:qkd_link[q:reason='fiber cut']", {"q": NS}),
        (f"/sdqkdn_link_down/qkd_link[qkdl_id='{LINK_ID}']", {}),
        ("sdqkdn_link_down", {}),
        ("/alarm", {}),
        ("/sdqkdn_link_down/qkd_link[reason='eavesdropper']", {}),
        ("/sdqkdn_link_perf_update | /sdqkdn_link_down", {}),
    ],
)
def test_the_fallback_evaluation_agrees_with_libyang(
    select: str, nsmap: dict[str | None, str]
) -> None:
    """What answers when libyang fails on an event: the same verdict, never a silent drop."""
    assert _matches_by_local_names(LINK_DOWN, select) == _matches(select, nsmap)


def test_matching_from_many_threads_at_once_never_drops_a_matching_event() -> None:
    """Agents on several threads' event loops share one libyang scope (the lab's test
    harness runs them so): concurrent matches must all see the event."""
    select = f"/sdqkdn_link_down/qkd_link[qkdl_id='{LINK_ID}']"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: _matches(select), range(400)))
    assert results == [True] * 400
