"""RFC 6022 /netconf-state on a real agent, read with ncclient and netconf-console2."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from agents.netconf.monitoring import MONITORING_NS
from tests.harness.netconf import NS, USERNAME, connect, running_agent
from tests.harness.netconf import netconf_console_output as _console

M = {"m": MONITORING_NS, "q": NS}
SCHEMAS_FILTER = f'<netconf-state xmlns="{MONITORING_NS}"><schemas/></netconf-state>'


def _texts(element: etree._Element, path: str) -> list[str]:
    found = element.xpath(path, namespaces=M)
    assert isinstance(found, list)
    return [str(text) for text in found]


def test_every_listed_schema_can_be_fetched_with_get_schema(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as session:
        data = session.get(filter=("subtree", SCHEMAS_FILTER)).data_ele
        identifiers = _texts(data, "//m:schema/m:identifier/text()")
        versions = _texts(data, "//m:schema/m:version/text()")
        assert "etsi-qkd-sdn-node" in identifiers
        assert "ietf-netconf-monitoring" in identifiers
        assert not data.xpath("//q:qkd_node | //m:sessions", namespaces=M)
        for identifier, version in zip(identifiers, versions, strict=True):
            reply = session.get_schema(identifier, version=version, format="yang")
            assert f"module {identifier}" in reply.data


def test_sessions_locks_and_counters_as_a_client_sees_them(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent, connect(agent) as first, connect(agent) as second:
        first.lock("running")
        first.get_config("running")
        data = second.get(filter=("xpath", "/netconf-state")).data_ele
        first_id = first.session_id
        session_path = f"//m:session[m:session-id='{first_id}']"
        assert _texts(data, f"{session_path}/m:username/text()") == [USERNAME]
        assert _texts(data, f"{session_path}/m:source-host/text()") == ["127.0.0.1"]
        (transport,) = data.xpath(f"{session_path}/m:transport", namespaces=M)
        assert isinstance(transport, etree._Element)
        prefix, _, identity = (transport.text or "").partition(":")
        assert (transport.nsmap.get(prefix), identity) == (MONITORING_NS, "netconf-ssh")
        assert _texts(data, f"{session_path}/m:in-rpcs/text()") == ["2"]
        running_lock = "//m:datastore[m:name='running']/m:locks/m:global-lock"
        assert _texts(data, f"{running_lock}/m:locked-by-session/text()") == [first_id]
        assert len(_texts(data, "//m:sessions/m:session")) == 2
        assert _texts(data, "//m:statistics/m:in-sessions/text()") == ["2"]
        # The unfiltered <get> holds it too.
        everything = second.get().data_ele
        assert everything.find("q:qkd_node", M) is not None
        assert everything.find("m:netconf-state", M) is not None


def test_netconf_console_reads_netconf_state(tmp_path: Path) -> None:
    with running_agent(tmp_path) as agent:
        output = _console(agent, "--get", "-x", "/netconf-state/statistics")
        data = etree.fromstring(output.encode())
        assert _texts(data, "//m:statistics/m:in-sessions/text()") == ["1"]
        assert not data.xpath("//m:schemas", namespaces=M)

        output = _console(agent, "--get", "-x", "/netconf-state/schemas/schema/identifier")
        data = etree.fromstring(output.encode())
        identifiers = _texts(data, "//m:schema/m:identifier/text()")
        assert "ietf-netconf-monitoring" in identifiers

        output = _console(agent, "--get-schema", "ietf-netconf-monitoring")
        assert "container netconf-state" in output
