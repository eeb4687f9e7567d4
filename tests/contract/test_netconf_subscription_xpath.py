"""XPath-filtered subscriptions (RFC 5277 with RFC 6241 §8.9 XPath) on a real agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from ncclient.operations import RPCError

from tests.harness.netconf import (
    LINK_ID,
    NS,
    AgentThread,
    connect,
    netconf_console,
    running_agent,
)

OTHER_LINK = "33333333-3333-4333-8333-333333333333"


def _link_down(link: str, reason: str) -> str:
    return (
        f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>{link}</qkdl_id>'
        f"<reason>{reason}</reason></qkd_link></sdqkdn_link_down>"
    )


def test_only_matching_notifications_are_delivered(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as filtered, connect(agent) as everything:
        filtered.create_subscription(
            filter=("xpath", f"/sdqkdn_link_down/qkd_link[qkdl_id='{LINK_ID}']")
        )
        everything.create_subscription()
        agent.publish(_link_down(OTHER_LINK, "not for the filtered subscriber"))
        agent.publish(_link_down(LINK_ID, "fiber cut"))
        # Delivery keeps publishing order: the first one the filtered session gets is the
        # second event, so the first was filtered out.
        got = filtered.take_notification(block=True, timeout=10)
        assert got is not None
        assert LINK_ID in got.notification_xml and "fiber cut" in got.notification_xml
        assert filtered.take_notification(block=False) is None
        first = everything.take_notification(block=True, timeout=10)
        second = everything.take_notification(block=True, timeout=10)
        assert first is not None and OTHER_LINK in first.notification_xml
        assert second is not None and LINK_ID in second.notification_xml


def test_a_bad_subscription_filter_is_refused_and_nothing_is_subscribed(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        with pytest.raises(RPCError) as caught:
            session.create_subscription(filter=("xpath", "/sdqkdn_link_down[["))
        assert caught.value.tag == "invalid-value"
        # Had the refused one subscribed, this would be in-use.
        session.create_subscription(filter=("xpath", "/sdqkdn_link_down"))
        agent.publish(_link_down(LINK_ID, "fiber cut"))
        got = session.take_notification(block=True, timeout=10)
        assert got is not None and "fiber cut" in got.notification_xml


def test_netconf_console_subscribes_with_an_xpath_filter(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        assert "<ok" in _console(agent, "/sdqkdn_link_down")
        assert "invalid-value" in _console(agent, "/sdqkdn_link_down[[")


def _console(agent: AgentThread, select: str) -> str:
    result = netconf_console(agent, "--create-subscription", "-x", select)
    return result.stdout + result.stderr
