"""RFC 6022 /netconf-state built by the sans-IO sessions: counters, locks, schemas, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lxml import etree

from agents.datastore import Datastore
from agents.netconf.errors import BASE_NS
from agents.netconf.framing import FramingMode, encode_message
from agents.netconf.monitoring import MONITORING_NS, netconf_state
from agents.netconf.rpcs import _append_to_data
from agents.netconf.server import BASE_CAPABILITIES
from agents.netconf.session import Session
from agents.netconf.state import AgentState
from agents.netconf.xpath import _scope
from tests.harness.netconf import CLIENT_HELLO_1_1, MemoryTransport, NullBackend
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
NODE_ID = "11111111-1111-4111-8111-111111111111"
M = {"m": MONITORING_NS, "nc": BASE_NS, "q": NS}
START = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _agent(clock: Clock | None = None) -> AgentState:
    schema = Schema.default()
    store = Datastore(
        schema,
        NullBackend(),
        None,
        f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id></qkd_node>',
    )
    capabilities = (*BASE_CAPABILITIES, *schema.capabilities())
    return AgentState(store, capabilities, schema.module_texts(), clock=clock or Clock())


def _open(agent: AgentState, hello: bytes = CLIENT_HELLO_1_1) -> tuple[Session, MemoryTransport]:
    transport = MemoryTransport()
    session = Session(agent, transport, username="alice", source_host="127.0.0.1")
    session.start()
    transport.messages()
    session.data_received(encode_message(hello, FramingMode.END_OF_MESSAGE))
    transport.decoder.set_mode(FramingMode.CHUNKED)
    return session, transport


def _send(session: Session, transport: MemoryTransport, rpc: str) -> etree._Element:
    session.data_received(encode_message(rpc.encode(), FramingMode.CHUNKED))
    (reply,) = transport.messages()
    return reply


def _rpc(body: str, message_id: int = 1) -> str:
    return f'<rpc xmlns="{BASE_NS}" message-id="{message_id}">{body}</rpc>'


def _state(session: Session, transport: MemoryTransport, filter_xml: str = "") -> etree._Element:
    reply = _send(session, transport, _rpc(f"<get>{filter_xml}</get>", 99))
    (data,) = reply.findall("nc:data", M)
    return data


def _string(element: etree._Element, path: str) -> str:
    return str(element.xpath(f"string({path})", namespaces=M))


def _nodes(element: etree._Element, path: str) -> list[etree._Element]:
    found = element.xpath(path, namespaces=M)
    assert isinstance(found, list)
    return [node for node in found if isinstance(node, etree._Element)]


def _texts(element: etree._Element, path: str) -> list[str]:
    found = element.xpath(path, namespaces=M)
    assert isinstance(found, list)
    return [str(text) for text in found]


def _identity(leaf: etree._Element) -> tuple[str | None, str]:
    """An identityref value as (namespace, name): its prefix must be declared in scope."""
    prefix, _, name = (leaf.text or "").partition(":")
    return leaf.nsmap.get(prefix), name


def _counter(state: etree._Element, path: str) -> int:
    return int(_string(state, path))


def test_the_tree_is_valid_against_our_ietf_netconf_monitoring_module() -> None:
    clock = Clock()
    agent = _agent(clock)
    session, transport = _open(agent)
    clock.now = START + timedelta(seconds=5)
    _send(session, transport, _rpc("<lock><target><candidate/></target></lock>"))
    tree = etree.tostring(netconf_state(agent), encoding="unicode")
    context = _scope(Schema.default()).context
    parsed = context.parse_data_mem(tree, "xml", strict=True, validate_present=True)
    assert parsed is not None
    parsed.free()


def test_datastores_show_the_global_lock_holder_and_time() -> None:
    clock = Clock()
    agent = _agent(clock)
    session, transport = _open(agent)
    clock.now = START + timedelta(seconds=7)
    _send(session, transport, _rpc("<lock><target><running/></target></lock>"))
    state = netconf_state(agent)
    names = _texts(state, "m:datastores/m:datastore/m:name/text()")
    assert names == ["running", "candidate"]
    (lock,) = _nodes(state, "m:datastores/m:datastore[m:name='running']/m:locks/m:global-lock")
    assert lock.findtext("m:locked-by-session", namespaces=M) == str(session.session_id)
    assert lock.findtext("m:locked-time", namespaces=M) == "2026-11-26T10:00:07.000000Z"
    assert not _nodes(state, "m:datastores/m:datastore[m:name='candidate']/m:locks")
    _send(session, transport, _rpc("<unlock><target><running/></target></unlock>", 2))
    assert not _nodes(netconf_state(agent), "//m:locks")


def test_schemas_list_every_module_get_schema_serves() -> None:
    agent = _agent()
    session, transport = _open(agent)
    state = netconf_state(agent)
    schemas = state.findall("m:schemas/m:schema", M)
    listed = {
        (s.findtext("m:identifier", namespaces=M), s.findtext("m:version", namespaces=M))
        for s in schemas
    }
    assert listed == set(agent.module_texts)
    assert ("ietf-netconf-monitoring", "2010-10-04") in listed
    for schema in schemas:
        assert schema.findtext("m:format", namespaces=M) == "ncm:yang"
        assert schema.findtext("m:location", namespaces=M) == "NETCONF"
        assert schema.findtext("m:namespace", namespaces=M)
    # What is listed can be fetched.
    reply = _send(
        session,
        transport,
        _rpc(
            f'<get-schema xmlns="{MONITORING_NS}"><identifier>ietf-netconf-monitoring</identifier>'
            "<version>2010-10-04</version><format>yang</format></get-schema>"
        ),
    )
    assert "container netconf-state" in (reply.findtext("m:data", namespaces=M) or "")


def test_session_and_server_counters() -> None:
    clock = Clock()
    agent = _agent(clock)
    first, first_transport = _open(agent)
    clock.now = START + timedelta(seconds=1)
    second, second_transport = _open(agent)
    _send(first, first_transport, _rpc("<get-config><source><running/></source></get-config>"))
    _send(first, first_transport, _rpc("<frobnicate/>", 2))  # correct rpc, rpc-error reply
    _send(first, first_transport, f'<rpc xmlns="{BASE_NS}"><get/></rpc>')  # no message-id
    _send(first, first_transport, "<rpc><unclosed>")  # not XML
    first.send_notification(b"<notification/>")
    first_transport.messages()

    state = _state(
        second, second_transport, f'<filter><netconf-state xmlns="{MONITORING_NS}"/></filter>'
    )
    base = f"m:netconf-state/m:sessions/m:session[m:session-id={first.session_id}]"
    assert _counter(state, f"{base}/m:in-rpcs") == 2
    assert _counter(state, f"{base}/m:in-bad-rpcs") == 2
    assert _counter(state, f"{base}/m:out-rpc-errors") == 3
    assert _counter(state, f"{base}/m:out-notifications") == 1
    (session_entry,) = _nodes(state, base)
    transport = session_entry.find("m:transport", M)
    assert transport is not None and _identity(transport) == (MONITORING_NS, "netconf-ssh")
    assert session_entry.findtext("m:username", namespaces=M) == "alice"
    assert session_entry.findtext("m:source-host", namespaces=M) == "127.0.0.1"
    assert session_entry.findtext("m:login-time", namespaces=M) == "2026-11-26T10:00:00.000000Z"
    second_login = _string(
        state,
        f"m:netconf-state/m:sessions/m:session[m:session-id={second.session_id}]/m:login-time",
    )
    assert second_login == "2026-11-26T10:00:01.000000Z"
    statistics = "m:netconf-state/m:statistics"
    # The server adds the second session's <get> (counted once its reply is built: 0 here).
    assert _counter(state, f"{statistics}/m:in-rpcs") == 2
    assert _counter(state, f"{statistics}/m:in-bad-rpcs") == 2
    assert _counter(state, f"{statistics}/m:out-rpc-errors") == 3
    assert _counter(state, f"{statistics}/m:out-notifications") == 1
    assert _counter(state, f"{statistics}/m:in-sessions") == 2
    assert _string(state, f"{statistics}/m:netconf-start-time") == ("2026-11-26T10:00:00.000000Z")
    again = _state(
        second, second_transport, f'<filter><netconf-state xmlns="{MONITORING_NS}"/></filter>'
    )
    assert _counter(again, f"{statistics}/m:in-rpcs") == 3


def test_hello_failures_and_dropped_sessions_are_counted_apart() -> None:
    agent = _agent()
    _open(agent, hello=b"<hello>not netconf</hello>")  # bad hello
    orderly, orderly_transport = _open(agent)
    _send(orderly, orderly_transport, _rpc("<close-session/>"))
    victim, _ = _open(agent)
    killer, killer_transport = _open(agent)
    _send(
        killer,
        killer_transport,
        _rpc(f"<kill-session><session-id>{victim.session_id}</session-id></kill-session>"),
    )
    lost, _ = _open(agent)
    lost.connection_lost()  # transport gone without <close-session>
    statistics = netconf_state(agent).find("m:statistics", M)
    assert statistics is not None
    assert statistics.findtext("m:in-sessions", namespaces=M) == "5"
    assert statistics.findtext("m:in-bad-hellos", namespaces=M) == "1"
    assert statistics.findtext("m:dropped-sessions", namespaces=M) == "1"
    listed = _texts(netconf_state(agent), "m:sessions/m:session/m:session-id/text()")
    assert listed == [str(killer.session_id)]


def test_unfiltered_get_holds_the_node_and_netconf_state() -> None:
    agent = _agent()
    session, transport = _open(agent)
    data = _state(session, transport)
    assert [etree.QName(child).localname for child in data] == ["qkd_node", "netconf-state"]


def test_subtree_filter_selects_only_the_schemas() -> None:
    agent = _agent()
    session, transport = _open(agent)
    data = _state(
        session,
        transport,
        f'<filter><netconf-state xmlns="{MONITORING_NS}"><schemas/></netconf-state></filter>',
    )
    (state,) = data
    assert [etree.QName(child).localname for child in state] == ["schemas"]
    assert len(state.findall("m:schemas/m:schema", M)) == len(agent.module_texts)
    # A filter for the node alone leaves netconf-state out, and the other way round.
    node_only = _state(session, transport, f'<filter><qkd_node xmlns="{NS}"/></filter>')
    assert [etree.QName(child).localname for child in node_only] == ["qkd_node"]


def test_subtree_filter_on_a_session_keeps_the_list_key() -> None:
    agent = _agent()
    session, transport = _open(agent)
    data = _state(
        session,
        transport,
        f'<filter><netconf-state xmlns="{MONITORING_NS}"><sessions><session>'
        "<username/></session></sessions></netconf-state></filter>",
    )
    (entry,) = _nodes(data, "//m:session")
    assert [etree.QName(child).localname for child in entry] == ["session-id", "username"]


def test_xpath_filter_selects_in_netconf_state_and_the_node_together() -> None:
    agent = _agent()
    session, transport = _open(agent)
    data = _state(
        session,
        transport,
        f'<filter type="xpath" xmlns:m="{MONITORING_NS}" xmlns:q="{NS}" '
        "select=\"/m:netconf-state/m:sessions/m:session[m:username='alice']/m:transport"
        ' | /q:qkd_node/q:qkdn_id"/>',
    )
    (transport_leaf,) = _nodes(data, "//m:session/m:transport")
    assert _identity(transport_leaf) == (MONITORING_NS, "netconf-ssh")
    assert _texts(data, "//q:qkdn_id/text()") == [NODE_ID]
    assert not _nodes(data, "//m:statistics")
    # Unprefixed names work as for the node tree.
    stats = _state(
        session, transport, '<filter type="xpath" select="/netconf-state/statistics/in-sessions"/>'
    )
    assert _string(stats, "//m:in-sessions") == "1"


def test_appending_to_an_empty_data_element() -> None:
    assert _append_to_data(b'<data xmlns="x"/>', b"<a/>") == b'<data xmlns="x"><a/></data>'
    assert _append_to_data(b'<data xmlns="x"><b/></data>', b"<a/>") == (
        b'<data xmlns="x"><b/><a/></data>'
    )
