"""The child processes of bench/netconf_get.py: light clients and the SSH echo baseline.

Each entry point runs in its own process (multiprocessing, 'spawn') and talks to the bench
over a `Connection`, so neither clients nor the echo server share a GIL with the bench or
with the agents:

- `serve_echo`: an asyncssh server whose `echo` subsystem answers each newline-terminated
  request with a payload of the size of a <get> reply (same ciphers and corking as the
  agents): what SSH alone costs a round trip.
- `light_latency`, `light_load`: minimal NETCONF clients (asyncssh + agents.netconf.framing)
  sending the same filtered <get> as the controller, or the echo request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Protocol

import asyncssh

from agents.netconf.framing import FrameDecoder, FramingMode, encode_message
from agents.netconf.server import ENCRYPTION_ALGS
from controller.names import QKD_NODE_FILTER

ECHO_SUBSYSTEM = "echo"
ECHO_REQUEST = b"get\n"
CONNECT_TIMEOUT_S = 30.0
_TCP_CORK: int | None = getattr(socket, "TCP_CORK", None)

CLIENT_HELLO = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>"
)
# the controller's <get>: the whole qkd_node, as NetconfSession.get(QKD_NODE_FILTER) sends it
GET_RPC = (
    '<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get>'
    f'<filter type="subtree">{QKD_NODE_FILTER}</filter></get></rpc>'
).encode()
GET_FRAMED = encode_message(GET_RPC, FramingMode.CHUNKED)


@dataclass(frozen=True)
class Login:
    """How the bench's clients log in to the agents and to the echo server (picklable)."""

    username: str
    password: str = field(repr=False)
    host_key: str  # private host key file of the agents (the echo server serves it too)

    @property
    def host_key_pub(self) -> str:
        return f"{self.host_key}.pub"


class RoundTripper(Protocol):
    async def round_trip(self) -> None: ...

    async def close(self) -> None: ...


async def _connect(port: int, login: Login) -> asyncssh.SSHClientConnection:
    pinned = asyncssh.read_public_key(login.host_key_pub)
    return await asyncio.wait_for(
        asyncssh.connect(
            "127.0.0.1",
            port,
            username=login.username,
            password=login.password,
            known_hosts=([pinned], [], []),
            client_keys=None,
            agent_path=None,
        ),
        CONNECT_TIMEOUT_S,
    )


class LightNetconfClient:
    """One NETCONF session: hello exchange, then <get> after <get>, waiting for each reply."""

    def __init__(
        self,
        connection: asyncssh.SSHClientConnection,
        writer: asyncssh.SSHWriter[bytes],
        reader: asyncssh.SSHReader[bytes],
        request: bytes = GET_FRAMED,
    ) -> None:
        self._connection = connection
        self._writer = writer
        self._reader = reader
        self._decoder = FrameDecoder()
        self._request = request

    @classmethod
    async def open(cls, port: int, login: Login, request: bytes = GET_FRAMED) -> LightNetconfClient:
        """A session that sends `request` (a framed <rpc>; default: the controller's <get>)."""
        connection = await _connect(port, login)
        writer, reader, _ = await connection.open_session(subsystem="netconf", encoding=None)
        client = cls(connection, writer, reader, request)
        await client._receive()  # the server's hello
        writer.write(encode_message(CLIENT_HELLO, FramingMode.END_OF_MESSAGE))
        client._decoder.set_mode(FramingMode.CHUNKED)
        return client

    async def _receive(self) -> bytes:
        while (message := self._decoder.next_message()) is None:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("the agent closed the session")
            self._decoder.feed(data)
        return message

    async def get(self) -> bytes:
        self._writer.write(self._request)
        reply = await self._receive()
        if b"<rpc-error" in reply:
            raise RuntimeError(f"the agent refused the <get>: {reply[:200]!r}")
        return reply

    async def round_trip(self) -> None:
        await self.get()

    async def close(self) -> None:
        self._connection.close()
        await self._connection.wait_closed()


class LightEchoClient:
    """One echo session: a request line, then the whole payload back."""

    def __init__(
        self,
        connection: asyncssh.SSHClientConnection,
        writer: asyncssh.SSHWriter[bytes],
        reader: asyncssh.SSHReader[bytes],
        payload_size: int,
    ) -> None:
        self._connection = connection
        self._writer = writer
        self._reader = reader
        self._size = payload_size

    @classmethod
    async def open(cls, port: int, login: Login, payload_size: int) -> LightEchoClient:
        connection = await _connect(port, login)
        writer, reader, _ = await connection.open_session(subsystem=ECHO_SUBSYSTEM, encoding=None)
        return cls(connection, writer, reader, payload_size)

    async def round_trip(self) -> None:
        self._writer.write(ECHO_REQUEST)
        received = 0
        while received < self._size:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("the echo server closed the session")
            received += len(data)

    async def close(self) -> None:
        self._connection.close()
        await self._connection.wait_closed()


async def _readable(conn: Connection) -> None:
    """Waits, without polling, until the bench has sent something on `conn`."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


# ---------------------------------------------------------------- light clients


async def _open(kind: str, port: int, login: Login, payload_size: int) -> RoundTripper:
    if kind == "netconf":
        return await LightNetconfClient.open(port, login)
    if kind == "echo":
        return await LightEchoClient.open(port, login, payload_size)
    raise ValueError(f"unknown client kind {kind!r}")


async def _latency(
    kind: str, port: int, login: Login, count: int, warmup: int, request: bytes = GET_FRAMED
) -> list[float]:
    client: RoundTripper = (
        await LightNetconfClient.open(port, login, request)
        if kind == "netconf"
        else await _open(kind, port, login, 0)
    )
    try:
        samples: list[float] = []
        for index in range(warmup + count):
            start = time.perf_counter()
            await client.round_trip()
            if index >= warmup:
                samples.append((time.perf_counter() - start) * 1000)
        return samples
    finally:
        await client.close()


def light_latency(
    conn: Connection,
    port: int,
    login: Login,
    count: int,
    warmup: int,
    request: bytes = GET_FRAMED,
) -> None:
    """Child entry: round trips (ms) of one light NETCONF session sending `request`; sends
    the samples."""
    try:
        samples = asyncio.run(_latency("netconf", port, login, count, warmup, request))
        conn.send(("samples", samples))
    except Exception as error:  # the bench reports it; a child has no one else to tell
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


async def _load(
    conn: Connection,
    kind: str,
    ports: Sequence[int],
    login: Login,
    payload_size: int,
    duration_s: float,
    max_calls: int,
) -> tuple[int, float]:
    clients = await asyncio.gather(*(_open(kind, port, login, payload_size) for port in ports))
    try:
        for client in clients:  # one warm-up round trip each, outside the clock
            await client.round_trip()
        conn.send(("connected", len(clients)))
        await _readable(conn)  # "go": the bench has read the servers' CPU counters
        conn.recv()
        per_client = max(1, max_calls // len(clients))
        begin = time.perf_counter()
        deadline = begin + duration_s

        async def run(client: RoundTripper) -> int:
            done = 0
            while done < per_client and time.perf_counter() < deadline:
                await client.round_trip()
                done += 1
            return done

        counts = await asyncio.gather(*(run(client) for client in clients))
        return sum(counts), time.perf_counter() - begin
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def light_load(
    conn: Connection,
    kind: str,
    ports: Sequence[int],
    login: Login,
    payload_size: int,
    duration_s: float,
    max_calls: int,
) -> None:
    """Child entry: one light session per port, all connected before the clock starts
    ("connected" -> wait for "go" -> run); sends ("done", calls, elapsed seconds).

    Bounded twice: `duration_s` and `max_calls` in total."""
    try:
        calls, elapsed = asyncio.run(
            _load(conn, kind, ports, login, payload_size, duration_s, max_calls)
        )
        conn.send(("done", calls, elapsed))
    except Exception as error:
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


# ---------------------------------------------------------------- echo server


class _EchoSession(asyncssh.SSHServerSession[bytes]):
    """Answers each request line with the payload, corked into one TCP segment as the agents
    do (asyncssh sends an IGNORE packet ahead of each data packet)."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload
        self._channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._socket: socket.socket | None = None
        self._pending = b""

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._channel = chan
        self._socket = chan.get_extra_info("socket")

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == ECHO_SUBSYSTEM

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._pending += data
        while b"\n" in self._pending and self._channel is not None:
            _, _, self._pending = self._pending.partition(b"\n")
            self._cork(1)
            self._channel.write(self._payload)
            self._cork(0)

    def _cork(self, value: int) -> None:
        if self._socket is not None and _TCP_CORK is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, _TCP_CORK, value)
            except OSError:  # closing: write uncorked from now on
                self._socket = None


class _EchoServer(asyncssh.SSHServer):
    def __init__(self, login: Login, payload: bytes) -> None:
        self._login = login
        self._payload = payload

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._login.username and password == self._login.password

    def session_requested(self) -> _EchoSession:
        return _EchoSession(self._payload)


async def _serve_echo(conn: Connection, login: Login, payload_size: int) -> None:
    payload = b"x" * payload_size
    acceptor = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=lambda: _EchoServer(login, payload),
        server_host_keys=[login.host_key],
        encryption_algs=list(ENCRYPTION_ALGS),
        encoding=None,
        allow_scp=False,
    )
    try:
        conn.send(("listening", acceptor.get_port()))
        await _readable(conn)  # anything, or the bench's end of the pipe closing, means stop
    finally:
        acceptor.close()
        await acceptor.wait_closed()


def serve_echo(conn: Connection, login: Login, payload_size: int) -> None:
    """Child entry: serve the echo subsystem on a free port (sent as ("listening", port))
    until the bench writes to or closes `conn`."""
    try:
        asyncio.run(_serve_echo(conn, login, payload_size))
    except Exception as error:
        with contextlib.suppress(OSError):  # the bench may be gone already
            conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()
