"""RESTCONF GET of the whole qkd_node (JSON) against NETCONF <get>, same agent, same run.

    .venv/bin/python bench/restconf.py [--links 20] [--clients 50] [--duration 4]
                                       [--gets 1000] [--json FILE]

Issue #15's targets: RESTCONF p50 <= 1.2x NETCONF's, and with 50 clients a throughput
>= 0.8x NETCONF's, both over TLS (HTTPS, SSH). Processes (started here, ended by PID):
the agent (one datastore, its NETCONF and RESTCONF faces on one event loop, a node tree
with `--links` VIRT links) in one child; the clients in another, so neither shares a GIL
with the other. Both clients are minimal: asyncssh + the project's framing for NETCONF
(bench/_light_netconf.py, the controller's filtered <get>), asyncio + ssl with a
keep-alive HTTP/1.1 connection and Basic authentication for RESTCONF.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import base64
import json
import multiprocessing
import ssl
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import asyncssh

from bench import _light_netconf as light
from common.config import TlsFiles
from lab.pki import create_lab_pki
from tests.harness.netconf import (
    NODE_ID,
    NS,
    PASSWORD,
    TYPES_NS,
    USERNAME,
    AgentThread,
    FakeBackend,
)

PATH = "/restconf/data/etsi-qkd-sdn-node:qkd_node"
P50_RATIO_TARGET = 1.2
THROUGHPUT_RATIO_TARGET = 0.8
TIMEOUT_S = 120.0


def _running(links: int) -> str:
    entries = "".join(
        f"<qkd_link><qkdl_id>{index:08x}-0000-4000-8000-000000000000</qkdl_id>"
        f"<qkdl_type>t:VIRT</qkdl_type><virt_bandwidth>{1000 + index}</virt_bandwidth>"
        "</qkd_link>"
        for index in range(links)
    )
    return (
        f'<qkd_node xmlns="{NS}" xmlns:t="{TYPES_NS}"><qkdn_id>{NODE_ID}</qkdn_id>'
        f"<qkdn_location_id>bench</qkdn_location_id><qkd_links>{entries}</qkd_links></qkd_node>"
    )


def serve(conn: Connection, directory: str, tls: TlsFiles, links: int) -> None:
    """Child entry: the agent with both faces; sends (netconf port, https url, host key)."""
    folder = Path(directory)
    agent = AgentThread(
        folder, FakeBackend(), 1024 * 1024, initial_running=_running(links), restconf_tls=tls
    )
    agent.start()
    key = asyncssh.read_private_key(agent.host_key_path)
    key.write_public_key(f"{agent.host_key_path}.pub")
    conn.send((agent.port, agent.restconf_url, str(agent.host_key_path)))
    conn.recv()  # "stop"
    agent.stop()


class HttpsClient:
    """One keep-alive HTTPS connection sending the same GET again and again."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str, ca: str) -> HttpsClient:
        host, _, port = url.removeprefix("https://").rpartition(":")
        context = ssl.create_default_context(cafile=ca)
        reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
        return cls(reader, writer)

    async def round_trip(self) -> None:
        auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        self._writer.write(
            f"GET {PATH} HTTP/1.1\r\nHost: agent\r\nAuthorization: Basic {auth}\r\n"
            "Accept: application/yang-data+json\r\n\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"RESTCONF answered {head[:40]!r}")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def _open(kind: str, target: Any, login: light.Login, ca: str) -> Any:
    if kind == "netconf":
        return await light.LightNetconfClient.open(int(target), login)
    return await HttpsClient.open(str(target), ca)


async def _latency(kind: str, target: Any, login: light.Login, ca: str, count: int) -> list[float]:
    client = await _open(kind, target, login, ca)
    samples = []
    try:
        for index in range(count + 50):
            start = time.perf_counter()
            await client.round_trip()
            if index >= 50:
                samples.append((time.perf_counter() - start) * 1000)
    finally:
        await client.close()
    return samples


async def _load(
    kind: str, target: Any, login: light.Login, ca: str, clients: int, duration_s: float
) -> tuple[int, float]:
    opened = await asyncio.gather(*(_open(kind, target, login, ca) for _ in range(clients)))
    try:
        for client in opened:
            await client.round_trip()
        begin = time.perf_counter()
        deadline = begin + duration_s

        async def run(client: Any) -> int:
            done = 0
            while time.perf_counter() < deadline:
                await client.round_trip()
                done += 1
            return done

        counts = await asyncio.gather(*(run(client) for client in opened))
        return sum(counts), time.perf_counter() - begin
    finally:
        await asyncio.gather(*(client.close() for client in opened), return_exceptions=True)


def measure(
    conn: Connection,
    netconf_port: int,
    url: str,
    login: light.Login,
    ca: str,
    gets: int,
    clients: int,
    duration_s: float,
) -> None:
    """Child entry: latency then load, NETCONF then RESTCONF; sends the figures."""
    try:
        figures: dict[str, Any] = {}
        for kind, target in (("netconf", netconf_port), ("restconf", url)):
            samples = asyncio.run(_latency(kind, target, login, ca, gets))
            calls, elapsed = asyncio.run(_load(kind, target, login, ca, clients, duration_s))
            figures[kind] = {
                "p50_ms": statistics.median(samples),
                "p99_ms": statistics.quantiles(samples, n=100)[98],
                "per_s": calls / elapsed,
                "calls": calls,
            }
        conn.send(("figures", figures))
    except Exception as error:
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


@dataclass(frozen=True)
class Result:
    links: int
    clients: int
    netconf: dict[str, float]
    restconf: dict[str, float]

    @property
    def p50_ratio(self) -> float:
        return self.restconf["p50_ms"] / self.netconf["p50_ms"]

    @property
    def throughput_ratio(self) -> float:
        return self.restconf["per_s"] / self.netconf["per_s"]


def _receive(conn: Connection, what: str) -> Any:
    if not conn.poll(TIMEOUT_S):
        raise TimeoutError(f"no {what} in {TIMEOUT_S} s")
    return conn.recv()


def run(links: int, clients: int, duration_s: float, gets: int) -> Result:
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-restconf-") as directory:
        pki = create_lab_pki(Path(directory) / "pki", ["n1"], [])
        tls = TlsFiles(pki.agents["n1"].cert, pki.agents["n1"].key, pki.ca.cert)
        agent_dir = Path(directory) / "agent"
        agent_dir.mkdir()
        ours, theirs = spawn.Pipe()
        server = spawn.Process(target=serve, args=(theirs, str(agent_dir), tls, links))
        server.start()
        try:
            port, url, host_key = _receive(ours, "agent ports")
            login = light.Login(USERNAME, PASSWORD, host_key)
            mine, child = spawn.Pipe()
            client = spawn.Process(
                target=measure,
                args=(child, port, url, login, str(tls.ca), gets, clients, duration_s),
            )
            client.start()
            kind, *payload = _receive(mine, "figures")
            client.join(TIMEOUT_S)
            if kind != "figures":
                raise RuntimeError(f"the clients failed: {payload[0]}")
            figures = payload[0]
        finally:
            ours.send("stop")
            server.join(TIMEOUT_S)
            if server.is_alive():
                server.kill()
    return Result(links, clients, figures["netconf"], figures["restconf"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.links, args.clients, args.duration, args.gets)
    for kind in ("netconf", "restconf"):
        figures = getattr(result, kind)
        print(
            f"{kind:9} p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms  "
            f"{args.clients} clients {figures['per_s']:.0f}/s"
        )
    p50_ok = result.p50_ratio <= P50_RATIO_TARGET
    rate_ok = result.throughput_ratio >= THROUGHPUT_RATIO_TARGET
    print(
        f"RESTCONF/NETCONF p50 {result.p50_ratio:.2f}x (target <= {P50_RATIO_TARGET}: "
        f"{'met' if p50_ok else 'missed'}), throughput {result.throughput_ratio:.2f}x "
        f"(target >= {THROUGHPUT_RATIO_TARGET}: {'met' if rate_ok else 'missed'})"
    )
    if args.json is not None:
        document = {
            **asdict(result),
            "p50_ratio": result.p50_ratio,
            "throughput_ratio": result.throughput_ratio,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
