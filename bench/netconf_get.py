"""NETCONF <get> latency and throughput of the agents' server, against a raw SSH baseline.

Everything runs in this one process (no subprocess): N agents (Datastore + NetconfServer
with a fake backend) on one event loop in a background thread, and a baseline SSH
subsystem on the same loop that answers every request with a payload of the size of a
<get> reply. Clients are ncclient (paramiko) for NETCONF and bare paramiko for the
baseline, so the ratio shows what NETCONF framing, XML and the datastore add to SSH. A last figure
runs our own code alone (a `Session` fed bytes, no SSH): what a <get> costs us.

    .venv/bin/python bench/netconf_get.py [--agents 50] [--gets 1000] [--duration 5]

Targets: p50 <= 2 ms for one session; >= 2500 gets/s with 50 sessions on 50 agents.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import ncclient.transport.session
import paramiko  # type: ignore[import-untyped]  # no stubs; same SSH stack as ncclient
from ncclient import manager

from agents.datastore import Datastore
from agents.netconf.framing import FrameDecoder, FramingMode, encode_message
from agents.netconf.server import BASE_CAPABILITIES, NetconfCredentials, NetconfServer
from agents.netconf.session import Session
from agents.netconf.state import AgentState
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
USERNAME = "bench"
PASSWORD = "bench-password"
ECHO_SUBSYSTEM = "echo"
P50_TARGET_MS = 2.0
THROUGHPUT_TARGET = 2500.0


def _initial_running(index: int, links: int) -> str:
    node = f"00000000-0000-4000-8000-{index:012d}"
    body = "".join(
        f"<qkd_link><qkdl_id>00000000-0000-4000-9000-{index * 100 + link:012d}</qkdl_id>"
        f'<qkdl_type xmlns:t="{TYPES_NS}">t:PHYS</qkdl_type>'
        f"<qkdl_local><qkdn_id>{node}</qkdn_id><qkdi_id>{link}</qkdi_id></qkdl_local>"
        f"<qkdl_remote><qkdn_id>00000000-0000-4000-8000-{index + 1:012d}</qkdn_id>"
        f"<qkdi_id>{link}</qkdi_id></qkdl_remote></qkd_link>"
        for link in range(links)
    )
    return (
        f'<qkd_node xmlns="{NS}"><qkdn_id>{node}</qkdn_id>'
        f"<qkdn_location_id>bench-{index}</qkdn_location_id>"
        f"<qkd_links>{body}</qkd_links></qkd_node>"
    )


class FakeBackend:
    """Accepts everything; reports a fixed key rate for every link."""

    def veto(self, new_running: dict[str, Any]) -> str | None:
        return None

    def apply(self, new_running: dict[str, Any]) -> None:
        return None

    def operational(self, running: dict[str, Any]) -> dict[str, Any]:
        node = running.get("etsi-qkd-sdn-node:qkd_node", {})
        links = node.get("qkd_links", {}).get("qkd_link", [])
        return {
            "etsi-qkd-sdn-node:qkd_node": {
                "qkdn_status": "etsi-qkd-node-types:OPERATING",
                "qkd_links": {
                    "qkd_link": [
                        {
                            "qkdl_id": link["qkdl_id"],
                            "qkdl_performance": {"skr": 12000, "eskr": 11000},
                        }
                        for link in links
                    ]
                },
            }
        }


class _EchoSession(asyncssh.SSHServerSession[bytes]):
    """Baseline: answers each newline-terminated request with `payload_size` bytes."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload
        self._channel: asyncssh.SSHServerChannel[bytes] | None = None
        self._pending = b""

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._channel = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == ECHO_SUBSYSTEM

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._pending += data
        while b"\n" in self._pending and self._channel is not None:
            _, _, self._pending = self._pending.partition(b"\n")
            self._channel.write(self._payload)


class _EchoServer(asyncssh.SSHServer):
    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USERNAME and password == PASSWORD

    def session_requested(self) -> _EchoSession:
        return _EchoSession(self._payload)


class Lab:
    """N agents and the echo baseline on one event loop in a daemon thread."""

    def __init__(self, directory: Path, agents: int, links: int) -> None:
        self._directory = directory
        self._agents = agents
        self._links = links
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.servers: list[NetconfServer] = []
        self._echo: asyncssh.SSHAcceptor | None = None
        self.echo_port = 0

    def __enter__(self) -> Lab:
        self._thread.start()
        self._call(self._start)
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, factory: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(factory(), self._loop).result(120)

    async def _start(self) -> None:
        host_key_path = self._directory / "host_key"
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(host_key_path)
        credentials = NetconfCredentials(USERNAME, PASSWORD, (), host_key_path)
        schema = Schema.default()
        for index in range(self._agents):
            datastore = Datastore(schema, FakeBackend(), None, _initial_running(index, self._links))
            server = NetconfServer(datastore, credentials)
            await server.start()
            self.servers.append(server)

    async def start_echo(self, payload_size: int) -> None:
        payload = b"x" * payload_size
        self._echo = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=lambda: _EchoServer(payload),
            server_host_keys=[str(self._directory / "host_key")],
            encoding=None,
        )
        self.echo_port = self._echo.get_port()

    def server_cpu_s(self) -> float:
        """CPU time used so far by the thread that runs every agent."""

        async def cpu() -> float:
            return time.thread_time()

        return float(self._call(cpu))

    def light_load(self, sessions: int, duration_s: float, max_gets: int) -> float:
        """<get>s per second of light clients run as coroutines on the agents' own loop."""
        ports = [server.port for server in self.servers[:sessions]]
        return float(self._call(lambda: _light_load(ports, duration_s, max_gets)))

    def light_latency(self, count: int) -> Latency:
        """<get> round trips of one light client on the agents' loop (no thread hops)."""
        port = self.servers[0].port
        return _summary(self._call(lambda: _light_latency(port, count)))

    def echo(self, payload_size: int) -> int:
        self._call(lambda: self.start_echo(payload_size))
        return self.echo_port

    async def _stop(self) -> None:
        for server in self.servers:
            await server.stop()
        if self._echo is not None:
            self._echo.close()
            await self._echo.wait_closed()


def _socket(port: int) -> socket.socket:
    """A connected TCP socket without Nagle's delay (paramiko leaves Nagle on)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


_CLIENT_HELLO = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>"
)
_GET = encode_message(
    b'<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="1"><get/></rpc>',
    FramingMode.CHUNKED,
)


class _LightClient:
    """A minimal NETCONF client (asyncssh + our codec) run as a coroutine."""

    def __init__(self, connection: asyncssh.SSHClientConnection) -> None:
        self._connection = connection
        self._decoder = FrameDecoder()
        self._writer: asyncssh.SSHWriter[bytes] | None = None
        self._reader: asyncssh.SSHReader[bytes] | None = None

    @classmethod
    async def open(cls, port: int) -> _LightClient:
        connection = await asyncssh.connect(
            "127.0.0.1",
            port,
            username=USERNAME,
            password=PASSWORD,
            known_hosts=None,
            client_keys=None,
        )
        client = cls(connection)
        client._writer, client._reader, _ = await connection.open_session(
            subsystem="netconf", encoding=None
        )
        await client._receive()
        client._writer.write(encode_message(_CLIENT_HELLO, FramingMode.END_OF_MESSAGE))
        client._decoder.set_mode(FramingMode.CHUNKED)
        return client

    async def _receive(self) -> bytes:
        assert self._reader is not None
        while (message := self._decoder.next_message()) is None:
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("server closed the session")
            self._decoder.feed(data)
        return message

    async def get(self) -> None:
        assert self._writer is not None
        self._writer.write(_GET)
        await self._receive()

    async def close(self) -> None:
        self._connection.close()
        await self._connection.wait_closed()


async def _light_load(ports: list[int], duration_s: float, max_gets: int) -> float:
    """<get>s per second of light clients, connected before the clock starts."""
    clients = await asyncio.gather(*(_LightClient.open(port) for port in ports))
    per_client = max(1, max_gets // len(ports))
    begin = time.perf_counter()
    deadline = begin + duration_s

    async def run(client: _LightClient) -> int:
        done = 0
        while done < per_client and time.perf_counter() < deadline:
            await client.get()
            done += 1
        return done

    counts = await asyncio.gather(*(run(client) for client in clients))
    elapsed = time.perf_counter() - begin
    await asyncio.gather(*(client.close() for client in clients))
    return sum(counts) / elapsed


async def _light_latency(port: int, count: int, warmup: int = 50) -> list[float]:
    client = await _LightClient.open(port)
    samples: list[float] = []
    for index in range(warmup + count):
        start = time.perf_counter()
        await client.get()
        if index >= warmup:
            samples.append((time.perf_counter() - start) * 1000)
    await client.close()
    return samples


def _connect(port: int) -> Any:
    return manager.connect(
        host="127.0.0.1",
        port=port,
        sock=_socket(port),
        username=USERNAME,
        password=PASSWORD,
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )


class _EchoClient:
    def __init__(self, port: int, payload_size: int) -> None:
        self._client = paramiko.SSHClient()
        self._client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self._client.connect(
            "127.0.0.1",
            port,
            USERNAME,
            PASSWORD,
            sock=_socket(port),
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
        )
        transport = self._client.get_transport()
        assert transport is not None
        self._channel = transport.open_session()
        self._channel.invoke_subsystem(ECHO_SUBSYSTEM)
        self._size = payload_size

    def round_trip(self) -> None:
        self._channel.sendall(b"get\n")
        received = 0
        while received < self._size:
            chunk = self._channel.recv(65536)
            if not chunk:
                raise ConnectionError("echo server closed the channel")
            received += len(chunk)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    count: int


class _CountingTransport:
    """A session's transport that only counts the reply bytes."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        return None


def _session_only(links: int, count: int) -> Latency:
    """<get>s through our code alone: framing, parsing, dispatch, datastore, reply."""
    datastore = Datastore(Schema.default(), FakeBackend(), None, _initial_running(0, links))
    agent = AgentState(datastore, BASE_CAPABILITIES, {})
    transport = _CountingTransport()
    session = Session(agent, transport)
    session.start()
    session.data_received(encode_message(_CLIENT_HELLO, FramingMode.END_OF_MESSAGE))
    before = transport.written
    latency = _latency(lambda: session.data_received(_GET), count)
    if transport.written == before:
        raise RuntimeError("the session sent no replies")
    session.close()
    return latency


def _latency(call: Callable[[], object], count: int, warmup: int = 50) -> Latency:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return _summary(samples)


def _summary(samples: list[float]) -> Latency:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Latency(statistics.median(ordered), p99, len(ordered))


def _throughput(
    workers: list[Callable[[], object]], duration_s: float, max_calls: int
) -> tuple[float, int]:
    """Calls per second of `workers` run in parallel threads, bounded by time and count."""
    counts = [0] * len(workers)
    failures: list[BaseException] = []
    start_gate = threading.Barrier(len(workers) + 1)
    per_worker = max(1, max_calls // len(workers))
    deadline = [0.0]

    def run(index: int) -> None:
        start_gate.wait()
        try:
            while counts[index] < per_worker and time.perf_counter() < deadline[0]:
                workers[index]()
                counts[index] += 1
        except BaseException as error:  # reported after the run
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + duration_s
    begin = time.perf_counter()
    start_gate.wait()
    for thread in threads:
        thread.join(duration_s + 60)
    elapsed = time.perf_counter() - begin
    if failures:
        raise RuntimeError(f"{len(failures)} workers failed: {failures[0]!r}")
    total = sum(counts)
    return total / elapsed, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--links", type=int, default=4, help="links per node (payload size)")
    parser.add_argument("--gets", type=int, default=1000, help="gets for the latency figure")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load")
    parser.add_argument("--max-gets", type=int, default=200_000)
    parser.add_argument("--tick", type=float, default=0.0002, help="ncclient TICK, latency")
    parser.add_argument("--load-tick", type=float, default=0.005, help="ncclient TICK, load")
    args = parser.parse_args(argv)
    sessions = min(args.sessions, args.agents)

    with (
        tempfile.TemporaryDirectory() as directory,
        Lab(Path(directory), args.agents, args.links) as lab,
    ):
        # ncclient sends only when its reader thread wakes: TICK bounds latency and, with
        # many sessions, the polling cost.
        ncclient.transport.session.TICK = args.tick
        single = _connect(lab.servers[0].port)
        payload_size = len(single.get().xml.encode())
        echo_port = lab.echo(payload_size)
        echo_single = _EchoClient(echo_port, payload_size)
        netconf = _latency(single.get, args.gets)
        baseline = _latency(echo_single.round_trip, args.gets)
        single.close_session()
        echo_single.close()
        light = lab.light_latency(args.gets)

        ncclient.transport.session.TICK = args.load_tick
        clients = [_connect(server.port) for server in lab.servers[:sessions]]
        cpu_before = lab.server_cpu_s()
        rate, total = _throughput([c.get for c in clients], args.duration, args.max_gets)
        server_cpu_per_get = (lab.server_cpu_s() - cpu_before) / max(1, total)
        for client in clients:
            client.close_session()
        echoes = [_EchoClient(echo_port, payload_size) for _ in range(sessions)]
        echo_rate, echo_total = _throughput(
            [e.round_trip for e in echoes], args.duration, args.max_gets
        )
        for echo in echoes:
            echo.close()
        light_rate = lab.light_load(sessions, args.duration, args.max_gets)
    ours = _session_only(args.links, args.gets)

    print(f"agents in this process: {args.agents}; <get> reply: {payload_size} bytes")
    print(
        f"<get> latency, 1 session ({netconf.count} gets, TICK {args.tick * 1000:.1f} ms): "
        f"p50 {netconf.p50_ms:.2f} ms, p99 {netconf.p99_ms:.2f} ms"
    )
    print(
        f"baseline SSH echo of {payload_size} bytes (paramiko): "
        f"p50 {baseline.p50_ms:.2f} ms, p99 {baseline.p99_ms:.2f} ms; "
        f"ratio NETCONF/echo p50 {netconf.p50_ms / baseline.p50_ms:.2f}"
    )
    print(
        f"light client (asyncssh + this codec on the agents' loop, no thread hops): "
        f"p50 {light.p50_ms:.2f} ms, p99 {light.p99_ms:.2f} ms"
    )
    print(
        f"throughput, {sessions} sessions on {sessions} agents (TICK {args.load_tick * 1000:.1f}"
        f" ms): {rate:.0f} gets/s ({total} gets)"
    )
    print(
        f"agents' server thread: {server_cpu_per_get * 1e6:.0f} us CPU per <get> (SSH included)"
        f" -> capacity about {1 / server_cpu_per_get:.0f} gets/s per core; the rest of the"
        " CPU went to the ncclient/paramiko clients in this process"
    )
    print(
        f"baseline SSH echo, {sessions} sessions: {echo_rate:.0f} round trips/s "
        f"({echo_total}); ratio NETCONF/echo {rate / echo_rate:.2f}"
    )
    print(
        f"light clients (asyncssh + this codec, {sessions} sessions as coroutines on the"
        f" agents' loop, so client and server share one thread): {light_rate:.0f} gets/s"
    )
    print(
        f"our code alone (Session fed bytes: framing, XML, dispatch, datastore; no SSH): "
        f"p50 {ours.p50_ms * 1000:.0f} us, p99 {ours.p99_ms * 1000:.0f} us per <get>"
    )
    p50_ok = netconf.p50_ms <= P50_TARGET_MS
    rate_ok = rate >= THROUGHPUT_TARGET
    print(
        f"targets: p50 <= {P50_TARGET_MS} ms {'met' if p50_ok else 'MISSED'}; "
        f">= {THROUGHPUT_TARGET:.0f} gets/s {'met' if rate_ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
