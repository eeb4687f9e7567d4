"""NACM's counters of refusals (RFC 8341 §3.3.4) in operational, counted by both faces."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from lxml import etree
from ncclient.operations import RPCError

from agents.access.nacm import standard, to_json
from agents.access.users import Accounts, User, hash_password
from agents.datastore.tree import BASE_NS
from common.config import TlsFiles
from lab.pki import create_lab_pki
from tests.harness.netconf import INITIAL_RUNNING, NS, connect, running_agent, wait_until
from yang.schema import Schema

NACM_NS = "urn:ietf:params:xml:ns:yang:ietf-netconf-acm"
NODE = "/restconf/data/etsi-qkd-sdn-node:qkd_node"
USERS = {
    "mon": ("monitor", "pw-monitor"),
    "ops": ("link-operator", "pw-operator"),
    "root": ("admin", "pw-admin"),
}
COUNTERS = ("denied-operations", "denied-data-writes", "denied-notifications")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    pki = create_lab_pki(tmp_path_factory.mktemp("pki"), ["n1"], [])
    return TlsFiles(pki.agents["n1"].cert, pki.agents["n1"].key, pki.ca.cert)


def _accounts() -> Accounts:
    return Accounts(
        User(name, group, hash_password(password, n=2**10))
        for name, (group, password) in USERS.items()
    )


def _running(accounts: Accounts) -> str:
    rules = Schema.default().json_to_xml(to_json(standard(accounts.group_members())))
    return f'<data xmlns="{BASE_NS}">{INITIAL_RUNNING}{rules}</data>'


def _counters(reply: etree._Element) -> dict[str, int]:
    (nacm,) = reply.iter(f"{{{NACM_NS}}}nacm")
    return {name: int(nacm.findtext(f"{{{NACM_NS}}}{name}") or "-1") for name in COUNTERS}


def _location(value: str) -> str:
    return (
        f'<config xmlns="{BASE_NS}"><qkd_node xmlns="{NS}">'
        f"<qkdn_location_id>{value}</qkdn_location_id></qkd_node></config>"
    )


# Monitors may not receive the node's events: an admin adds this rule over NETCONF.
NO_EVENTS = (
    f'<config xmlns="{BASE_NS}"><nacm xmlns="{NACM_NS}"><rule-list><name>monitor</name>'
    "<rule><name>no-events</name><module-name>etsi-qkd-sdn-node</module-name>"
    "<notification-name>*</notification-name><access-operations>read</access-operations>"
    "<action>deny</action></rule></rule-list></nacm></config>"
)
LINK_DOWN = (
    f'<sdqkdn_link_down xmlns="{NS}"><qkd_link><qkdl_id>'
    "44444444-4444-4444-8444-444444444444</qkdl_id></qkd_link></sdqkdn_link_down>"
)


def test_refusals_of_both_faces_are_counted_under_nacm_and_read_over_netconf(
    tmp_path: Path, tls: TlsFiles
) -> None:
    accounts = _accounts()
    with (
        running_agent(
            tmp_path, accounts=accounts, initial_running=_running(accounts), restconf_tls=tls
        ) as agent,
        connect(agent, username="root", password="pw-admin") as root,
        connect(agent, username="mon", password="pw-monitor") as mon,
        connect(agent, username="ops", password="pw-operator") as ops,
    ):
        nacm_filter = ("subtree", f'<nacm xmlns="{NACM_NS}"/>')
        assert _counters(root.get(filter=nacm_filter).data_ele) == dict.fromkeys(COUNTERS, 0)
        with pytest.raises(RPCError, match="may not run"):  # monitors run no edit-config
            mon.edit_config(target="running", config=_location("x"))
        with pytest.raises(RPCError, match="may not update"):  # operators change links only
            ops.edit_config(target="running", config=_location("x"))
        trust = ssl.create_default_context(cafile=str(tls.ca))
        with httpx.Client(verify=trust, auth=("mon", "pw-monitor"), timeout=10) as rest:
            body = {"etsi-qkd-sdn-node:qkdn_location_id": "y"}
            refused = rest.put(f"{agent.restconf_url}{NODE}/qkdn_location_id", json=body)
            assert refused.status_code == 403
        root.edit_config(target="running", config=NO_EVENTS)
        mon.create_subscription()
        root.create_subscription()
        agent.publish(LINK_DOWN)
        assert root.take_notification(block=True, timeout=10) is not None
        assert agent.server is not None and agent.server.access is not None
        access = agent.server.access
        wait_until(lambda: access.denied_notifications == 1, "the refused event counted")
        assert mon.take_notification(block=False) is None
        # Read in one <get> (the whole tree) and with a filter: the same counts.
        expected = {"denied-operations": 1, "denied-data-writes": 2, "denied-notifications": 1}
        assert _counters(root.get().data_ele) == expected
        assert _counters(root.get(filter=nacm_filter).data_ele) == expected
        by_xpath = root.get(filter=("xpath", "/nacm/denied-data-writes")).data_ele
        assert [e.text for e in by_xpath.iter(f"{{{NACM_NS}}}denied-data-writes")] == ["2"]
        # RESTCONF shows them too, as state (content=nonconfig).
        with httpx.Client(verify=trust, auth=("root", "pw-admin"), timeout=10) as rest:
            state = rest.get(
                f"{agent.restconf_url}/restconf/data", params={"content": "nonconfig"}
            ).json()
            rules = rest.get(f"{agent.restconf_url}/restconf/data/ietf-netconf-acm:nacm").json()
        assert state["ietf-restconf:data"]["ietf-netconf-acm:nacm"] == expected
        assert expected.items() <= rules["ietf-netconf-acm:nacm"].items()  # beside the rules
        # A monitor does not see /nacm at all (default-deny-all), counters included.
        assert not list(mon.get().data_ele.iter(f"{{{NACM_NS}}}nacm"))
