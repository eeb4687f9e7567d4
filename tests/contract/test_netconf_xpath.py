"""XPath filters (RFC 6241 §8.9) on a real agent, driven by ncclient and netconf-console2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient.operations import RPCError

from agents.netconf.errors import BASE_NS
from agents.netconf.rpcs import NOTIFICATION_NS
from agents.netconf.xpath import XPATH_CAPABILITY
from tests.harness.netconf import (
    LINK_ID,
    NODE_ID,
    NS,
    TYPES_NS,
    connect,
    running_agent,
)
from tests.harness.netconf import (
    netconf_console as _console,
)

OTHER_LINK = "33333333-3333-4333-8333-333333333333"


def _links_config() -> str:
    links = "".join(
        f"<qkd_link><qkdl_id>{link}</qkdl_id><qkdl_type>t:VIRT</qkdl_type>"
        f"<virt_bandwidth>{bandwidth}</virt_bandwidth></qkd_link>"
        for link, bandwidth in ((LINK_ID, "1000"), (OTHER_LINK, "2000"))
    )
    return (
        f'<config xmlns="{BASE_NS}" xmlns:t="{TYPES_NS}">'
        f'<qkd_node xmlns="{NS}"><qkd_links>{links}</qkd_links></qkd_node></config>'
    )


def _texts(element: Any, path: str) -> list[str]:
    return [str(v) for v in element.xpath(path, namespaces={"q": NS})]


def _children(element: Any) -> list[str]:
    return [etree.QName(child).localname for child in element if isinstance(child.tag, str)]


def test_ncclient_xpath_filters_on_get_and_get_config(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        assert XPATH_CAPABILITY in set(session.server_capabilities)
        session.edit_config(target="running", config=_links_config())

        got = session.get(filter=("xpath", "/qkd_node/qkd_links")).data_ele
        (node,) = got
        assert _children(node) == ["qkd_links"]
        assert _texts(got, "//q:qkd_link/q:qkdl_id/text()") == [LINK_ID, OTHER_LINK]
        assert _texts(got, "//q:qkd_link/q:qkdl_performance/q:skr/text()") == ["1000", "1000"]

        one = session.get(
            filter=(
                "xpath",
                (
                    {"n": NS},
                    f"/n:qkd_node/n:qkd_links/n:qkd_link[n:qkdl_id='{OTHER_LINK}']/n:virt_bandwidth",
                ),
            )
        ).data_ele
        assert _texts(one, "//q:qkd_link/q:qkdl_id/text()") == [OTHER_LINK]
        assert _texts(one, "//q:qkd_link/*[not(self::q:qkdl_id)]/text()") == ["2000"]

        config = session.get_config("running", filter=("xpath", "//qkdn_id | //qkdl_performance"))
        assert _texts(config.data_ele, "q:qkd_node/q:qkdn_id/text()") == [NODE_ID]
        assert _texts(config.data_ele, "//q:qkdl_performance") == []  # state: not in running

        empty = session.get(filter=("xpath", "/qkd_node/qkd_links/qkd_link[qkdl_id='x']"))
        assert len(empty.data_ele) == 0


def test_bad_xpath_is_invalid_value_and_the_session_goes_on(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        with pytest.raises(RPCError) as caught:
            session.get(filter=("xpath", "/qkd_node/[["))
        assert caught.value.tag == "invalid-value"
        assert "invalid XPath" in str(caught.value.message)

        with pytest.raises(RPCError) as caught:
            session.get(filter=("xpath", "/x:qkd_node"))
        assert caught.value.tag == "invalid-value"
        assert "not declared" in str(caught.value.message)

        # A bad XPath filter of a subscription is refused when subscribing.
        subscription = etree.Element(f"{{{NOTIFICATION_NS}}}create-subscription")
        etree.SubElement(
            subscription, f"{{{NOTIFICATION_NS}}}filter", type="xpath", select="/qkd_node/[["
        )
        with pytest.raises(RPCError) as caught:
            session.dispatch(subscription)
        assert caught.value.tag == "invalid-value"

        after = session.get(filter=("xpath", "/qkd_node/qkdn_id")).data_ele
        assert _texts(after, "//q:qkdn_id/text()") == [NODE_ID]


def test_netconf_console_get_with_xpath(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        with connect(agent) as session:
            session.edit_config(target="running", config=_links_config())

        result = _console(agent, "--get", "-x", "/qkd_node/qkd_links")
        assert result.returncode == 0, result.stdout + result.stderr
        data = etree.fromstring(result.stdout.encode())
        (node,) = data
        assert _children(node) == ["qkd_links"]
        assert _texts(data, "//q:qkd_link/q:qkdl_id/text()") == [LINK_ID, OTHER_LINK]

        result = _console(agent, "--get-config", "-x", f"//qkd_link[qkdl_id='{LINK_ID}']")
        assert result.returncode == 0, result.stdout + result.stderr
        data = etree.fromstring(result.stdout.encode())
        assert _texts(data, "//q:qkd_link/q:virt_bandwidth/text()") == ["1000"]

        result = _console(agent, "--get", "-x", "/qkd_node/[[")
        assert "invalid-value" in result.stdout + result.stderr
