"""Bad input on the wire (raw asyncssh client): the right rpc-error or a clean close, and the
server, its other sessions and the datastore are unaffected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh
import pytest
from lxml import etree

from agents.datastore import Datastore
from agents.netconf.errors import BASE_NS
from agents.netconf.framing import FrameDecoder, FramingMode, encode_message
from agents.netconf.server import NetconfCredentials, NetconfServer
from tests.harness.netconf import (
    DEADLINE_S,
    INITIAL_RUNNING,
    NODE_ID,
    NS,
    PASSWORD,
    USERNAME,
    AgentThread,
    FakeBackend,
    connect,
    running_agent,
)
from yang.schema import Schema

CLIENT_HELLO_11 = (
    f'<hello xmlns="{BASE_NS}"><capabilities>'
    "<capability>urn:ietf:params:netconf:base:1.0</capability>"
    "<capability>urn:ietf:params:netconf:base:1.1</capability>"
    "</capabilities></hello>"
)
CLIENT_HELLO_10 = (
    f'<hello xmlns="{BASE_NS}"><capabilities>'
    "<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>"
)


class RawSession:
    """A NETCONF session spoken by hand, to send what no real client would."""

    def __init__(
        self,
        writer: asyncssh.SSHWriter[bytes],
        reader: asyncssh.SSHReader[bytes],
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.decoder = FrameDecoder()
        self.mode = FramingMode.END_OF_MESSAGE

    async def receive(self) -> bytes | None:
        """The next message, or None when the server closed the session."""
        while True:
            message = self.decoder.next_message()
            if message is not None:
                return message
            data = await asyncio.wait_for(self.reader.read(65536), DEADLINE_S)
            if not data:
                return None
            self.decoder.feed(data)

    async def hello(self, client_hello: str = CLIENT_HELLO_11) -> etree._Element:
        server_hello = await self.receive()
        assert server_hello is not None
        self.writer.write(encode_message(client_hello.encode(), FramingMode.END_OF_MESSAGE))
        if "base:1.1" in client_hello:
            self.mode = FramingMode.CHUNKED
            self.decoder.set_mode(FramingMode.CHUNKED)
        return etree.fromstring(server_hello)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def rpc(self, body: bytes) -> etree._Element:
        self.writer.write(encode_message(body, self.mode))
        reply = await self.receive()
        assert reply is not None, "the server closed the session instead of replying"
        return etree.fromstring(reply)


@asynccontextmanager
async def raw_session(agent: AgentThread, **options: object) -> AsyncIterator[RawSession]:
    arguments: dict[str, object] = {
        "username": USERNAME,
        "password": PASSWORD,
        "known_hosts": None,
        "client_keys": None,
    }
    arguments.update(options)
    async with asyncssh.connect("127.0.0.1", agent.port, **arguments) as connection:
        writer, reader, _ = await connection.open_session(subsystem="netconf", encoding=None)
        yield RawSession(writer, reader)


def _error_fields(reply: etree._Element) -> dict[str, str]:
    error = reply.find(f"{{{BASE_NS}}}rpc-error")
    assert error is not None, etree.tostring(reply)
    return {etree.QName(child).localname: (child.text or "") for child in error}


def _rpc(body: str, message_id: str = "1") -> bytes:
    return f'<rpc xmlns="{BASE_NS}" message-id="{message_id}">{body}</rpc>'.encode()


GET = _rpc("<get/>", "ok")


def _assert_get_works(reply: etree._Element) -> None:
    assert reply.get("message-id") == "ok"
    assert NODE_ID.encode() in etree.tostring(reply)


@pytest.mark.parametrize(
    ("message", "tag", "error_type"),
    [
        (b"<rpc message-id='1'><get>", "malformed-message", "rpc"),
        (b"\xff\xfe not xml", "malformed-message", "rpc"),
        (_rpc("<frobnicate/>"), "operation-not-supported", "protocol"),
        (_rpc('<get xmlns="urn:wrong:namespace"/>'), "unknown-namespace", "protocol"),
        (b'<rpc xmlns="urn:wrong" message-id="1"><get/></rpc>', "unknown-namespace", "rpc"),
        (f'<rpc xmlns="{BASE_NS}"><get/></rpc>'.encode(), "missing-attribute", "rpc"),
        (_rpc("<get><bogus/></get>"), "unknown-element", "protocol"),
        (_rpc("<get-config><source><startup/></source></get-config>"), "invalid-value", "protocol"),
        (_rpc("<get-config/>"), "missing-element", "protocol"),
        (_rpc('<get><filter type="regex" select="/"/></get>'), "bad-attribute", "protocol"),
        (
            _rpc(
                "<edit-config><target><running/></target><config>"
                '<qkd_node xmlns="urn:not:a:module"/></config></edit-config>'
            ),
            "unknown-namespace",
            "application",
        ),
        (
            _rpc(
                "<edit-config><target><running/></target>"
                "<default-operation>explode</default-operation><config/></edit-config>"
            ),
            "invalid-value",
            "protocol",
        ),
    ],
)
def test_bad_rpc_gets_an_rpc_error_and_the_session_goes_on(
    tmp_path: Path, message: bytes, tag: str, error_type: str
) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as session:
            await session.hello()
            fields = _error_fields(await session.rpc(message))
            assert fields["error-tag"] == tag
            assert fields["error-type"] == error_type
            assert fields["error-severity"] == "error"
            assert fields["error-message"]
            _assert_get_works(await session.rpc(GET))

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


def test_reply_carries_every_rpc_attribute(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as session:
            await session.hello()
            reply = await session.rpc(
                f'<rpc xmlns="{BASE_NS}" xmlns:x="urn:x" message-id="7" x:tag="kept">'
                "<get/></rpc>".encode()
            )
            assert reply.get("message-id") == "7"
            assert reply.get("{urn:x}tag") == "kept"

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


@pytest.mark.parametrize(
    "garbage",
    [
        b"\n#abc\n",  # broken chunk header
        b"#12\n<rpc/>",  # header without its newline
        b"\n#99999999999999\n",  # size beyond any limit
        b"\n#2000000\n",  # chunk over the message size limit
    ],
)
def test_broken_framing_closes_only_that_session(tmp_path: Path, garbage: bytes) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as healthy, raw_session(agent) as broken:
            await healthy.hello()
            await broken.hello()
            broken.send_raw(garbage)
            assert await broken.receive() is None
            _assert_get_works(await healthy.rpc(GET))

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))
        with connect(agent) as session:
            assert session.connected


def test_message_over_the_size_limit_closes_the_session(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as session:
            await session.hello(CLIENT_HELLO_10)
            session.send_raw(b"<rpc>" + b" " * 70_000)
            assert await session.receive() is None

    with running_agent(tmp_path, max_message_size=64 * 1024) as agent:
        before = agent.persist_path.read_bytes()
        asyncio.run(scenario(agent))
        assert agent.persist_path.read_bytes() == before


def test_base_10_client_gets_end_of_message_framing(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as session:
            await session.hello(CLIENT_HELLO_10)
            session.send_raw(GET + b"]]>]]>")
            raw = await asyncio.wait_for(session.reader.readuntil(b"]]>]]>"), DEADLINE_S)
            _assert_get_works(etree.fromstring(raw[: -len(b"]]>]]>")]))

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


@pytest.mark.parametrize(
    "hello",
    [
        f'<hello xmlns="{BASE_NS}"><capabilities><capability>'
        "urn:ietf:params:netconf:base:1.1</capability></capabilities>"
        "<session-id>4</session-id></hello>",
        f'<hello xmlns="{BASE_NS}"><capabilities><capability>urn:x</capability>'
        "</capabilities></hello>",
        "<not-a-hello/>",
        "<<<",
    ],
)
def test_invalid_client_hello_closes_the_session(tmp_path: Path, hello: str) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as session:
            await session.hello(hello)
            assert await session.receive() is None

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


def test_client_without_hello_is_dropped_after_the_hello_timeout(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as silent:
            assert await silent.receive() is not None  # the server's hello
            assert await silent.receive() is None  # closed without a client hello

    with running_agent(tmp_path, hello_timeout_s=0.3) as agent:
        asyncio.run(scenario(agent))


def test_server_hello_has_session_id_and_capabilities(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as first, raw_session(agent) as second:
            ids = []
            for session in (first, second):
                hello = await session.hello()
                ids.append(int(hello.findtext(f"{{{BASE_NS}}}session-id") or "0"))
                assert hello.find(f"{{{BASE_NS}}}capabilities") is not None
            assert ids[0] != ids[1]
            assert min(ids) >= 1

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


def test_other_subsystems_and_commands_are_refused(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with asyncssh.connect(
            "127.0.0.1",
            agent.port,
            username=USERNAME,
            password=PASSWORD,
            known_hosts=None,
            client_keys=None,
        ) as connection:
            with pytest.raises(asyncssh.ChannelOpenError):
                await connection.open_session(subsystem="sftp")
            with pytest.raises(asyncssh.ChannelOpenError):
                await connection.open_session(command="id")

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


def test_unknown_public_key_is_refused(tmp_path: Path) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")

    async def scenario(agent: AgentThread) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            async with raw_session(agent, password=None, client_keys=[stranger]):
                pass

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


def test_get_filter_in_the_wrong_namespace_returns_empty_data(tmp_path: Path) -> None:
    async def scenario(agent: AgentThread) -> None:
        async with raw_session(agent) as session:
            await session.hello()
            reply = await session.rpc(
                _rpc(f'<get><filter><qkd_node xmlns="{NS}x"/></filter></get>')
            )
            data = reply.find(f"{{{BASE_NS}}}data")
            assert data is not None
            assert len(data) == 0

    with running_agent(tmp_path) as agent:
        asyncio.run(scenario(agent))


def test_a_hundred_agents_share_one_process_and_loop(tmp_path: Path) -> None:
    host_key_path = tmp_path / "host_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(host_key_path)
    credentials = NetconfCredentials(USERNAME, PASSWORD, (), host_key_path)

    async def scenario() -> None:
        schema = Schema.default()
        servers = []
        try:
            for _ in range(100):
                store = Datastore(schema, FakeBackend(), None, INITIAL_RUNNING)
                server = NetconfServer(store, credentials, "127.0.0.1")
                await server.start()
                servers.append(server)
            assert len({server.port for server in servers}) == 100
            for server in (servers[0], servers[49], servers[99]):
                async with asyncssh.connect(
                    "127.0.0.1",
                    server.port,
                    username=USERNAME,
                    password=PASSWORD,
                    known_hosts=None,
                    client_keys=None,
                ) as connection:
                    writer, reader, _ = await connection.open_session(
                        subsystem="netconf", encoding=None
                    )
                    session = RawSession(writer, reader)
                    await session.hello()
                    _assert_get_works(await session.rpc(GET))
        finally:
            for server in servers:
                await server.stop()

    asyncio.run(scenario())
