"""NETCONF sessions over the datastore without sockets: a Session with an in-memory transport."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from agents.datastore import Datastore, DatastoreName
from agents.netconf.errors import BASE_NS
from agents.netconf.framing import FramingMode, encode_message
from agents.netconf.server import BASE_CAPABILITIES
from agents.netconf.session import Session, SessionState
from agents.netconf.state import AgentState
from tests.harness.netconf import CLIENT_HELLO_1_1, MemoryTransport, NullBackend
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
NODE_ID = "11111111-1111-4111-8111-111111111111"


def _agent(tmp_path: Path) -> AgentState:
    store = Datastore(
        Schema.default(),
        NullBackend(),
        None,
        f'<qkd_node xmlns="{NS}"><qkdn_id>{NODE_ID}</qkdn_id></qkd_node>',
    )
    return AgentState(store, BASE_CAPABILITIES, {})


def _open(agent: AgentState) -> tuple[Session, MemoryTransport]:
    transport = MemoryTransport()
    session = Session(agent, transport)
    session.start()
    (hello,) = transport.messages()
    assert hello.findtext(f"{{{BASE_NS}}}session-id") == str(session.session_id)
    session.data_received(encode_message(CLIENT_HELLO_1_1, FramingMode.END_OF_MESSAGE))
    transport.decoder.set_mode(FramingMode.CHUNKED)
    return session, transport


def _rpc(body: str, message_id: int) -> bytes:
    rpc = f'<rpc xmlns="{BASE_NS}" message-id="{message_id}">{body}</rpc>'
    return encode_message(rpc.encode(), FramingMode.CHUNKED)


def test_hello_then_pipelined_rpcs_in_one_read_are_answered_in_order(tmp_path: Path) -> None:
    session, transport = _open(_agent(tmp_path))
    assert session.state is SessionState.ESTABLISHED
    session.data_received(
        _rpc("<get/>", 1)
        + _rpc("<frob/>", 2)
        + _rpc("<get-config><source><running/></source></get-config>", 3)
    )
    replies = transport.messages()
    assert [r.get("message-id") for r in replies] == ["1", "2", "3"]
    assert replies[1].findtext(f".//{{{BASE_NS}}}error-tag") == "operation-not-supported"


def test_hello_and_first_rpc_in_the_same_read(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    transport = MemoryTransport()
    session = Session(agent, transport)
    session.start()
    transport.messages()
    session.data_received(
        encode_message(CLIENT_HELLO_1_1, FramingMode.END_OF_MESSAGE) + _rpc("<get/>", 9)
    )
    transport.decoder.set_mode(FramingMode.CHUNKED)
    (reply,) = transport.messages()
    assert reply.get("message-id") == "9"


def test_closing_the_candidate_lock_holder_discards_its_changes(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    holder, _ = _open(agent)
    other, other_transport = _open(agent)
    holder.data_received(_rpc("<lock><target><candidate/></target></lock>", 1))
    holder.data_received(
        _rpc(
            "<edit-config><target><candidate/></target><config>"
            f'<qkd_node xmlns="{NS}"><qkdn_location_id>x</qkdn_location_id></qkd_node>'
            "</config></edit-config>",
            2,
        )
    )
    assert agent.datastore.candidate_modified
    other.data_received(_rpc("<lock><target><candidate/></target></lock>", 1))
    (denied,) = other_transport.messages()
    assert denied.findtext(f".//{{{BASE_NS}}}session-id") == str(holder.session_id)
    holder.connection_lost()
    assert not agent.datastore.candidate_modified
    assert DatastoreName.CANDIDATE not in agent.locks
    assert holder.session_id not in agent.sessions
    other.data_received(_rpc("<lock><target><candidate/></target></lock>", 2))
    (granted,) = other_transport.messages()
    assert granted.find(f"{{{BASE_NS}}}ok") is not None


def test_broken_framing_closes_the_session_and_releases_its_locks(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    session, transport = _open(agent)
    session.data_received(_rpc("<lock><target><running/></target></lock>", 1))
    assert agent.locks == {DatastoreName.RUNNING: session.session_id}
    session.data_received(b"\n#0\n")
    assert transport.closed
    assert session.state is SessionState.CLOSED
    assert agent.locks == {}
    session.data_received(_rpc("<get/>", 2))  # ignored after close
    transport.decoder.set_mode(FramingMode.CHUNKED)
    assert [r.get("message-id") for r in transport.messages()] == ["1"]


# ---- properties: no input crashes a session or leaves running invalid ------------------------

_LINK_IDS = [f"22222222-2222-4222-8222-00000000000{i}" for i in range(3)]
_OPERATIONS = [None, None, None, "merge", "replace", "create", "delete", "remove", "explode"]


def _attribute(draw: st.DrawFn) -> str:
    operation = draw(st.sampled_from(_OPERATIONS))
    return f' nc:operation="{operation}"' if operation else ""


@st.composite
def _leaf(draw: st.DrawFn, name: str, values: list[str]) -> str:
    return f"<{name}{_attribute(draw)}>{draw(st.sampled_from(values))}</{name}>"


@st.composite
def _link(draw: st.DrawFn) -> str:
    parts = [f"<qkdl_id>{draw(st.sampled_from(_LINK_IDS))}</qkdl_id>"]
    optional = [
        _leaf("qkdl_type", ["t:VIRT", "t:PHYS", "t:NOPE"]),
        _leaf("qkdl_enable", ["true", "false", "maybe"]),
        _leaf("virt_bandwidth", ["100", "0", "-1"]),
        _leaf("virt_next_hop", [NODE_ID, "not-a-uuid"]),
        _leaf("bogus", ["1"]),
    ]
    for strategy in optional:
        if draw(st.booleans()):
            parts.append(draw(strategy))
    return f"<qkd_link{_attribute(draw)}>{''.join(parts)}</qkd_link>"


@st.composite
def _nodes(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["location", "links", "links", "id"]))
    if kind == "location":
        return draw(_leaf("qkdn_location_id", ["lab", "", "room 2"]))
    if kind == "id":
        return draw(_leaf("qkdn_id", [NODE_ID, "not-a-uuid"]))
    links = draw(st.lists(_link(), min_size=1, max_size=3))
    return f"<qkd_links{_attribute(draw)}>{''.join(links)}</qkd_links>"


@given(
    st.lists(_nodes(), min_size=1, max_size=2),
    st.sampled_from(["running", "candidate"]),
    st.sampled_from(["merge", "replace", "none"]),
    st.sampled_from(["stop-on-error", "continue-on-error", "rollback-on-error"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_edits_answer_and_running_stays_valid(
    tmp_path_factory: pytest.TempPathFactory,
    nodes: list[str],
    target: str,
    default: str,
    error_option: str,
) -> None:
    agent = _agent(tmp_path_factory.mktemp("edit"))
    session, transport = _open(agent)
    before = agent.datastore.running_json()
    config = (
        f'<config xmlns:nc="{BASE_NS}" xmlns:t="urn:etsi:qkd:yang:etsi-qkd-node-types">'
        f'<qkd_node xmlns="{NS}">{"".join(nodes)}</qkd_node></config>'
    )
    session.data_received(
        _rpc(
            f"<edit-config><target><{target}/></target>"
            f"<default-operation>{default}</default-operation>"
            f"<error-option>{error_option}</error-option>{config}</edit-config>",
            1,
        )
    )
    (reply,) = transport.messages()
    ok = reply.find(f"{{{BASE_NS}}}ok") is not None
    event("ok" if ok else str(reply.findtext(f".//{{{BASE_NS}}}error-tag")))
    assert ok or reply.find(f"{{{BASE_NS}}}rpc-error") is not None
    if not ok and error_option != "continue-on-error":
        assert agent.datastore.running_json() == before
    agent.datastore.validate(DatastoreName.RUNNING)  # running is always valid


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_after_hello_never_raise(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes
) -> None:
    agent = _agent(tmp_path_factory.mktemp("garbage"))
    session, transport = _open(agent)
    session.data_received(garbage)
    session.data_received(encode_message(garbage or b"x", FramingMode.CHUNKED))
    if session.state is SessionState.ESTABLISHED:
        for reply in transport.messages():
            assert etree.QName(reply).localname == "rpc-reply"
    agent.datastore.validate(DatastoreName.RUNNING)
