"""NETCONF <get> latency and throughput of the agents, as a lab runs them, against SSH baselines.

    .venv/bin/python bench/netconf_get.py [--agents 50] [--sessions 50] [--duration 4]
                                          [--agent-processes 1] [--gets 1000] [--json FILE]

Issue #3's targets: a <get> round trip through ncclient p50 <= 2 ms; 50 concurrent sessions
on 50 agents >= 2,500 gets/s. Every <get> asks for the whole qkd_node (subtree filter
controller.names.QKD_NODE_FILTER), as the controller does.

Processes (all started here, ended by PID): the real agent program (`lab.cli agent run`)
for a ring of N nodes from a test plan, in a child (or spread over several with
--agent-processes); an SSH echo server (same ciphers, a reply
of the size of a <get> reply) in a second child; the light clients (asyncssh +
agents.netconf.framing) in a third. This process only runs the ncclient/paramiko clients,
so clients and servers never share a GIL.

1. Latency, one session: the controller's NetconfSession (the issue's figure); plain
   `ncclient.manager.connect` with a small TICK, as a user script would; baseline: a
   paramiko round trip to the echo server. A light client's figure for information.
2. Throughput, one session per agent: light clients (the issue's figure), with the agents'
   process CPU per <get> read from /proc; the controller's NetconfSession, a thread per
   session, for information; baseline: the same light clients against the echo server.
3. Our code alone: a `Session` fed bytes, no SSH, over a datastore whose backend does
   nothing and over a real agent's datastore.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path and its controller.py would shadow the
# `controller` package: the project root must come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import queue
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import ncclient.transport.session
import paramiko  # type: ignore[import-untyped]  # no stubs; same SSH stack as ncclient
from ncclient import manager

from agents.datastore import Datastore
from agents.netconf.framing import FramingMode, encode_message
from agents.netconf.server import BASE_CAPABILITIES
from agents.netconf.session import Session
from agents.netconf.state import AgentState
from bench import _light_netconf as light
from controller.devices.session import DeviceAddress, NetconfSession
from controller.names import QKD_NODE_FILTER
from lab.configs import write_process_configs
from lab.launcher import agent_groups
from lab.plan import LabPlan
from tests.harness.agents import make_test_plan, running_agents
from tests.harness.configs import addresses_from_plan
from tests.harness.netconf import FakeBackend
from yang.schema import Schema

NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
P50_TARGET_MS = 2.0
THROUGHPUT_TARGET = 2500.0
READY_TIMEOUT_S = 60.0
CHILD_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    count: int


@dataclass(frozen=True)
class CpuTimes:
    """CPU time of a process, all its threads: user (Python, crypto) and system (the kernel:
    loopback TCP, whose receive side the sender often pays in its own time)."""

    user_s: float
    system_s: float

    @property
    def total_s(self) -> float:
        return self.user_s + self.system_s

    def __sub__(self, earlier: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user_s - earlier.user_s, self.system_s - earlier.system_s)


def cpu_times(pid: int) -> CpuTimes:
    """From Linux's /proc/PID/stat (fields utime and stime, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    return CpuTimes(int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS)


def total_cpu_times(pids: Sequence[int]) -> CpuTimes:
    """The CPU of several processes together (the agents may be spread over some)."""
    times = [cpu_times(pid) for pid in pids]
    return CpuTimes(sum(t.user_s for t in times), sum(t.system_s for t in times))


@dataclass(frozen=True)
class Load:
    """Calls per second under load, and what the server process spent on them."""

    calls: int
    elapsed_s: float
    server_cpu: CpuTimes
    client_cpu: CpuTimes | None  # the light clients' process; None when clients ran here

    @property
    def server_cpu_s(self) -> float:
        return self.server_cpu.total_s

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed_s

    @property
    def server_cpu_us_per_call(self) -> float:
        return self.server_cpu_s / max(1, self.calls) * 1e6

    @property
    def capacity_per_core(self) -> float:
        """Calls per second one core would serve at this CPU cost (each server process is one
        thread)."""
        return self.calls / self.server_cpu_s if self.server_cpu_s > 0 else float("inf")

    def figures(self) -> dict[str, float | int | None]:
        return {
            "per_s": self.rate,
            "calls": self.calls,
            "elapsed_s": self.elapsed_s,
            "server_cpu_us_per_call": self.server_cpu_us_per_call,
            "server_capacity_per_core": self.capacity_per_core,
            "server_cpu_share": self.server_cpu_s / self.elapsed_s,
            "server_system_cpu_share": self.server_cpu.system_s / self.elapsed_s,
            "client_cpu_share": (
                None if self.client_cpu is None else self.client_cpu.total_s / self.elapsed_s
            ),
        }


# ---------------------------------------------------------------- child processes


class AgentProcess:
    """Some of the plan's agents in a child process running the real agent program."""

    def __init__(self, plan: LabPlan, nodes: Sequence[str], wrapper: Sequence[str] = ()) -> None:
        self._plan = plan
        self._nodes = nodes
        self._wrapper = wrapper  # a command the agent program runs under (valgrind ...)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._child: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._child is not None
        return self._child.pid

    def start(self) -> None:
        files = write_process_configs(self._plan)
        hosted = [arg for node in self._nodes for arg in ("--config", str(files[f"agent-{node}"]))]
        self._child = subprocess.Popen(
            [*self._wrapper, sys.executable, "-m", "lab.cli", "agent", "run", *hosted],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, QKDSDN_DURABLE="true"),  # as measured before: fsync per commit
        )
        # drains the pipe for the child's whole life, so its logging never blocks it
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        for line in self._child.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_ready(self, deadline: float) -> None:
        seen: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"the agents exited: {''.join(seen[-5:])}")
            if line.startswith("ready:"):
                return
            seen.append(line)
        raise RuntimeError("the agents were not ready in time")

    def stop(self) -> None:
        if self._child is None:
            return
        self._child.terminate()
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._child = None


class HostedAgents:
    """The plan's agents in children, grouped as `lab up` would (or over `processes`)."""

    def __init__(
        self,
        plan: LabPlan,
        processes: int | None = None,
        wrapper: Sequence[str] = (),
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        names = [node.name for node in plan.nodes]
        groups = plan.hosting_groups() if processes is None else agent_groups(names, processes)
        self._children = [AgentProcess(plan, group, wrapper) for group in groups or (tuple(names),)]
        self._ready_timeout_s = ready_timeout_s

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self._children]

    def __enter__(self) -> HostedAgents:
        try:
            for child in self._children:
                child.start()
            deadline = time.monotonic() + self._ready_timeout_s
            for child in self._children:
                child.wait_ready(deadline)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self._children:
            child.stop()


@dataclass
class Child:
    """A spawned process of ours and our end of its pipe."""

    process: multiprocessing.process.BaseProcess
    conn: Connection

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def receive(self, expected: str, timeout: float = CHILD_TIMEOUT_S) -> tuple[Any, ...]:
        """The child's next message, which must be `expected`; its error otherwise."""
        try:
            if not self.conn.poll(timeout):
                raise RuntimeError(f"no {expected!r} from the child within {timeout:.0f} s")
            message: tuple[Any, ...] = self.conn.recv()
        except EOFError:
            self.process.join(5)
            raise RuntimeError(f"the child exited ({self.process.exitcode})") from None
        if message[0] == "error":
            raise RuntimeError(f"child failed: {message[1]}")
        if message[0] != expected:
            raise RuntimeError(f"expected {expected!r} from the child, got {message[0]!r}")
        return message


@contextmanager
def spawned(target: Callable[..., None], *args: Any) -> Iterator[Child]:
    """`target(conn, *args)` in a fresh interpreter ('spawn': no inherited threads or GIL)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(theirs, *args), daemon=True)
    process.start()
    theirs.close()
    try:
        yield Child(process, ours)
    finally:
        ours.close()  # the echo server stops when its pipe closes
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


def light_load(
    kind: str,
    ports: list[int],
    login: light.Login,
    server_pids: Sequence[int],
    duration_s: float,
    max_calls: int,
    payload_size: int = 0,
) -> Load:
    """Light clients in their own process against `ports`; the server's CPU over the run."""
    args = (kind, ports, login, payload_size, duration_s, max_calls)
    with spawned(light.light_load, *args) as child:
        child.receive("connected")
        server_before, client_before = total_cpu_times(server_pids), cpu_times(child.pid)
        child.conn.send("go")
        _, calls, elapsed = child.receive("done", duration_s + CHILD_TIMEOUT_S)
        server_after, client_after = total_cpu_times(server_pids), cpu_times(child.pid)
    return Load(calls, elapsed, server_after - server_before, client_after - client_before)


# ---------------------------------------------------------------- clients in this process


def tcp_nodelay_socket(port: int) -> socket.socket:
    """TCP without Nagle's delay, as NetconfSession connects (paramiko leaves it on)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class ParamikoEcho:
    """The latency baseline: paramiko (ncclient's SSH stack) to the echo server."""

    def __init__(self, port: int, login: light.Login, payload_size: int) -> None:
        self._client = paramiko.SSHClient()
        # our own echo child on 127.0.0.1, serving the agents' host key
        self._client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self._client.connect(
            "127.0.0.1",
            port,
            login.username,
            login.password,
            sock=tcp_nodelay_socket(port),
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
        )
        transport = self._client.get_transport()
        assert transport is not None
        self._channel = transport.open_session()
        self._channel.invoke_subsystem(light.ECHO_SUBSYSTEM)
        self._size = payload_size

    def round_trip(self) -> None:
        self._channel.sendall(light.ECHO_REQUEST)
        received = 0
        while received < self._size:
            chunk = self._channel.recv(65536)
            if not chunk:
                raise ConnectionError("the echo server closed the channel")
            received += len(chunk)

    def close(self) -> None:
        self._client.close()


def plain_ncclient(address: DeviceAddress) -> Any:
    """What a user script does: manager.connect, no pinned key, no socket options."""
    return manager.connect(
        host=address.host,
        port=address.port,
        username=address.username,
        password=address.password,
        hostkey_verify=False,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
    )


def measure(call: Callable[[], object], count: int, warmup: int = 50) -> Latency:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return summarize(samples)


def summarize(samples_ms: list[float]) -> Latency:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Latency(statistics.median(ordered), p99, len(ordered))


def threaded_load(
    workers: list[Callable[[], object]],
    server_pids: Sequence[int],
    duration_s: float,
    max_calls: int,
) -> Load:
    """`workers` each in its own thread of this process, bounded by time and count."""
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
    cpu_before = total_cpu_times(server_pids)
    deadline[0] = time.perf_counter() + duration_s
    begin = time.perf_counter()
    start_gate.wait()
    for thread in threads:
        thread.join(duration_s + CHILD_TIMEOUT_S)
    elapsed = time.perf_counter() - begin
    cpu_used = total_cpu_times(server_pids) - cpu_before
    if failures:
        raise RuntimeError(f"{len(failures)} workers failed: {failures[0]!r}")
    return Load(sum(counts), elapsed, cpu_used, None)


# ---------------------------------------------------------------- our code alone


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


class _CountingTransport:
    """A session's transport that only counts the reply bytes."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        return None


def feed_session(datastore: Datastore, count: int) -> tuple[Latency, int]:
    """The same filtered <get> through our code alone: framing, parsing, dispatch, datastore,
    reply. Returns the latency and the reply size in bytes."""
    agent = AgentState(datastore, BASE_CAPABILITIES, {})
    transport = _CountingTransport()
    session = Session(agent, transport)
    session.start()
    session.data_received(encode_message(light.CLIENT_HELLO, FramingMode.END_OF_MESSAGE))
    before = transport.written
    session.data_received(light.GET_FRAMED)
    reply_size = transport.written - before
    if reply_size == 0:
        raise RuntimeError("the session sent no reply")
    latency = measure(lambda: session.data_received(light.GET_FRAMED), count)
    session.close()
    return latency, reply_size


def session_only(links: int, count: int) -> tuple[Latency, int]:
    """A datastore whose backend does nothing: the NETCONF layer's own cost."""
    datastore = Datastore(Schema.default(), FakeBackend(), None, _initial_running(0, links))
    return feed_session(datastore, count)


async def agent_session_only(count: int) -> tuple[Latency, int]:
    """The datastore of a real agent (a node of a 3-node ring, hosted here), fed bytes: what
    the agent program's <get> costs without SSH."""
    with tempfile.TemporaryDirectory() as directory:
        plan = make_test_plan(Path(directory), *ring(3))
        name = plan.nodes[0].name
        async with running_agents(plan, [name], persist=False) as handles:
            return feed_session(handles[name].datastore, count)


# ---------------------------------------------------------------- the run


def ring(count: int) -> tuple[list[str], list[tuple[str, str]]]:
    names = [f"n{i}" for i in range(count)]
    if count < 2:
        return names, []
    if count == 2:
        return names, [(names[0], names[1])]
    return names, list(itertools.pairwise([*names, names[0]]))


def login_from(plan: LabPlan, address: DeviceAddress) -> light.Login:
    if address.password is None:
        raise ValueError("the plan has no NETCONF password file")
    return light.Login(address.username, address.password, plan.credentials.host_key)


def run(args: argparse.Namespace) -> dict[str, Any]:
    sessions = min(args.sessions, args.agents)
    figures: dict[str, Any] = {
        "agents": args.agents,
        "sessions": sessions,
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as directory:
        plan = make_test_plan(Path(directory), *ring(args.agents))
        addresses = addresses_from_plan(plan)
        login = login_from(plan, addresses[0])
        with HostedAgents(plan, args.agent_processes) as agents:
            figures["agent_processes"] = len(agents.pids)
            # 1b first: its reply gives the echo payload size (the whole <rpc-reply>)
            default_tick = ncclient.transport.session.TICK
            ncclient.transport.session.TICK = args.tick  # polled by every session's reader
            try:
                plain = plain_ncclient(addresses[0])
                get_filter = ("subtree", QKD_NODE_FILTER)
                reply_size = len(plain.get(filter=get_filter).xml.encode())
                plain_latency = measure(lambda: plain.get(filter=get_filter), args.gets)
                plain.close_session()
            finally:
                ncclient.transport.session.TICK = default_tick
            figures["reply_bytes"] = reply_size

            # 1a: the figure
            controller_session = NetconfSession.open(addresses[0])
            session_latency = measure(lambda: controller_session.get(QKD_NODE_FILTER), args.gets)
            controller_session.close()

            with spawned(light.light_latency, addresses[0].port, login, args.gets, 50) as child:
                light_latency = summarize(child.receive("samples")[1])

            with spawned(light.serve_echo, login, reply_size) as echo:
                _, echo_port = echo.receive("listening")
                # 1c: the latency baseline
                paramiko_echo = ParamikoEcho(echo_port, login, reply_size)
                echo_latency = measure(paramiko_echo.round_trip, args.gets)
                paramiko_echo.close()
                # 3 baseline: the light clients against the echo server
                echo_load = light_load(
                    "echo",
                    [echo_port] * sessions,
                    login,
                    [echo.pid],
                    args.duration,
                    args.max_gets,
                    reply_size,
                )

            # 3: the figure, one light session per agent
            ports = [address.port for address in addresses[:sessions]]
            agents_load = light_load(
                "netconf", ports, login, agents.pids, args.duration, args.max_gets
            )

            # 3, for information: the controller's sessions, a thread each
            opened = [NetconfSession.open(address) for address in addresses[:sessions]]
            try:
                workers: list[Callable[[], object]] = [
                    lambda s=s: s.get(QKD_NODE_FILTER)  # type: ignore[misc]
                    for s in opened
                ]
                ncclient_load = threaded_load(workers, agents.pids, args.duration, args.max_gets)
            finally:
                for opened_session in opened:
                    opened_session.close()
    ours, ours_reply = session_only(args.links, args.gets)
    agent_ours, agent_reply = asyncio.run(agent_session_only(args.gets))

    figures["latency_1_session"] = {
        "controller_netconf_session": asdict(session_latency),
        "plain_ncclient": asdict(plain_latency) | {"tick_ms": args.tick * 1000},
        "baseline_ssh_echo_paramiko": asdict(echo_latency),
        "ratio_controller_to_echo_p50": session_latency.p50_ms / echo_latency.p50_ms,
        "light_client": asdict(light_latency),
    }
    figures["throughput"] = {
        "light_clients": agents_load.figures(),
        "controller_netconf_sessions_threads": ncclient_load.figures(),
        "baseline_ssh_echo_light_clients": echo_load.figures(),
        "ratio_light_to_echo": agents_load.rate / echo_load.rate,
    }
    figures["our_code_alone"] = {
        "fake_backend": asdict(ours) | {"reply_bytes": ours_reply, "links": args.links},
        "agent_datastore": asdict(agent_ours) | {"reply_bytes": agent_reply},
    }
    figures["load_average_after"] = os.getloadavg()
    figures["targets"] = {
        "p50_ms": P50_TARGET_MS,
        "p50_met": session_latency.p50_ms <= P50_TARGET_MS,
        "gets_per_s": THROUGHPUT_TARGET,
        "gets_per_s_met": agents_load.rate >= THROUGHPUT_TARGET,
    }
    return figures


def _latency_text(latency: dict[str, Any]) -> str:
    return f"p50 {latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms"


def _load_text(load: dict[str, Any], unit: str) -> str:
    text = (
        f"{load['per_s']:.0f} {unit}/s ({load['calls']} in {load['elapsed_s']:.1f} s); server"
        f" process {load['server_cpu_us_per_call']:.0f} us CPU per call,"
        f" {load['server_cpu_share']:.0%} of a core ({load['server_system_cpu_share']:.0%} in"
        f" the kernel) -> capacity about"
        f" {load['server_capacity_per_core']:.0f}/s per core"
    )
    if load["client_cpu_share"] is not None:
        text += f"; client process {load['client_cpu_share']:.0%} of a core"
    return text


def report(figures: dict[str, Any]) -> None:
    latency = figures["latency_1_session"]
    load = figures["throughput"]
    sessions = figures["sessions"]
    before, after = figures["load_average_before"], figures["load_average_after"]
    print(
        f"{figures['agents']} agents (lab.cli agent run, {figures['agent_processes']}"
        f" process(es)); <get> of the qkd_node:"
        f" {figures['reply_bytes']} bytes; load average before {before[0]:.2f},"
        f" after {after[0]:.2f} (2 cores shared)"
    )
    print(f"<get> latency, 1 session, {latency['controller_netconf_session']['count']} gets:")
    print(
        f"  controller NetconfSession (ncclient): {_latency_text(latency['controller_netconf_session'])}"
    )
    plain = latency["plain_ncclient"]
    print(
        f"  plain ncclient manager.connect (TICK {plain['tick_ms']:.1f} ms, Nagle on):"
        f" {_latency_text(plain)}"
    )
    print(
        f"  baseline SSH echo of the same size (paramiko): "
        f"{_latency_text(latency['baseline_ssh_echo_paramiko'])};"
        f" ratio NetconfSession/echo p50 {latency['ratio_controller_to_echo_p50']:.2f}"
    )
    print(f"  light client (asyncssh, own process): {_latency_text(latency['light_client'])}")
    print(f"throughput, {sessions} sessions on {sessions} agents:")
    print(f"  light clients (own process): {_load_text(load['light_clients'], 'gets')}")
    print(
        "  controller NetconfSessions, a thread each (this process):"
        f" {_load_text(load['controller_netconf_sessions_threads'], 'gets')}"
    )
    print(
        f"  baseline SSH echo, same light clients, {sessions} sessions on one echo server:"
        f" {_load_text(load['baseline_ssh_echo_light_clients'], 'round trips')};"
        f" ratio light NETCONF/echo {load['ratio_light_to_echo']:.2f}"
    )
    ours = figures["our_code_alone"]["fake_backend"]
    agent_ours = figures["our_code_alone"]["agent_datastore"]
    print("our code alone (a Session fed bytes, same filtered <get>, no SSH):")
    print(
        f"  datastore with a backend that does nothing ({ours['links']} links,"
        f" {ours['reply_bytes']} bytes): p50 {ours['p50_ms'] * 1000:.0f} us,"
        f" p99 {ours['p99_ms'] * 1000:.0f} us"
    )
    print(
        f"  a real agent's datastore (node of a ring, {agent_ours['reply_bytes']} bytes):"
        f" p50 {agent_ours['p50_ms'] * 1000:.0f} us, p99 {agent_ours['p99_ms'] * 1000:.0f} us"
    )
    targets = figures["targets"]
    print(
        f"targets: p50 <= {P50_TARGET_MS} ms {'met' if targets['p50_met'] else 'MISSED'};"
        f" >= {THROUGHPUT_TARGET:.0f} gets/s {'met' if targets['gets_per_s_met'] else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=50, help="at most one per agent")
    parser.add_argument(
        "--agent-processes",
        type=int,
        default=None,
        help="spread the agents over this many processes (default: as `lab up` does, one per"
        " 25 nodes up to the number of cores)",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of each load")
    parser.add_argument("--gets", type=int, default=1000, help="gets for each latency figure")
    parser.add_argument("--max-gets", type=int, default=200_000, help="bound of each load")
    parser.add_argument("--links", type=int, default=2, help="links of the node fed bytes")
    parser.add_argument("--tick", type=float, default=0.001, help="plain ncclient's TICK (s)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.sessions < 1 or args.gets < 1 or args.duration <= 0:
        parser.error("--agents, --sessions and --gets must be >= 1, --duration > 0")
    figures = run(args)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
