"""ETSI 014 throughput and latency of the key manager against a trivial endpoint, in one run.

Baseline: a trivial FastAPI endpoint on the same stack (uvicorn + our mutual-TLS protocol)
that returns random keys and stores nothing. Subject: the real `qkdsdn km run` process
(SQLite store, access control, ETSI 014 validation), twice: metrics off (no `listen.metrics`)
and metrics on (served, and scraped once a second as Prometheus would). Each runs in its own
process; the same load generator (a lean asyncio HTTP/1.1 client: keep-alive, mutual TLS, 32 concurrent
connections, bounded by count and time) drives both.

    .venv/bin/python bench/etsi014.py [--seconds 1.5] [--rounds 5] [--clients 32] [--json out.json]

Figures: single-key enc_keys req/s (KM / trivial, target >= 0.8), p99 latency under that
load and for one client alone (target <= 15 ms), batched delivery in Mbit/s
(128 keys of 1024 bits per request, target >= 110).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.config import Address  # noqa: E402
from km.etsi014.server import MutualTlsServer, TlsFiles, client_tls_context  # noqa: E402
from lab.configs import write_process_configs  # noqa: E402
from lab.pki import create_lab_pki  # noqa: E402
from lab.plan import LabPlan  # noqa: E402
from tests.harness.agents import make_test_plan  # noqa: E402
from tests.harness.etsi014 import read_ready_line  # noqa: E402

MAX_REQUESTS = 200_000  # a bound on every load loop besides its duration
START_TIMEOUT_S = 30.0
TRIVIAL_RUN = (sys.executable, __file__, "serve-trivial")
KM_RUN = (sys.executable, "-m", "lab.cli", "km", "run", "--log-level", "WARNING")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    bits: int

    @property
    def mbit_per_s(self) -> float:
        return self.bits / self.seconds / 1e6


def trivial_app() -> FastAPI:
    """The reference: random keys, nothing stored, nothing checked, through FastAPI's own
    parameter parsing (the KM's simple-form enc_keys skips that parsing and draws a request's
    keys at once, so it can run faster than this endpoint: a reference, not a ceiling)."""
    app = FastAPI()

    @app.get("/api/v1/keys/{slave}/enc_keys")
    async def enc_keys(slave: str, number: int = 1, size: int = 256) -> Response:
        keys = ",".join(
            f'{{"key_ID":"{uuid.uuid4()}","key":"'
            f'{base64.b64encode(secrets.token_bytes(size // 8)).decode()}"}}'
            for _ in range(number)
        )
        return Response(f'{{"keys":[{keys}]}}', media_type="application/json")

    return app


async def serve_trivial(state: Path, port: int) -> None:
    km = state / "pki"
    server = MutualTlsServer(
        trivial_app(),
        TlsFiles(km / "km-n1.pem", km / "km-n1.key", km / "ca.pem"),
        Address("127.0.0.1", port),
    )
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready trivial etsi014={server.url}", flush=True)
    await stop.wait()
    await server.stop()


class Server:
    """A server process that prints a `ready ... etsi014=URL` line."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        line = read_ready_line(self.proc, START_TIMEOUT_S)
        if line is not None:
            return next(p for p in line.split() if p.startswith("etsi014="))[8:]
        self.stop()
        raise RuntimeError(f"server {self.proc.args!r} did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


class Connection:
    """A minimal HTTP/1.1 keep-alive client over mutual TLS: cheap enough on CPU that the
    servers, not the load generator, set the figures (httpx spends ~1 ms of CPU a request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @staticmethod
    async def open(url: str, context: ssl.SSLContext) -> Connection:
        host, port = url.removeprefix("https://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), ssl=context)
        return Connection(reader, writer)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(
    url: str, state: Path, clients: int, seconds: float, number: int, size: int
) -> LoadResult:
    """`clients` concurrent keep-alive connections calling enc_keys until time or count ends."""
    pki = state / "pki"
    context = client_tls_context(TlsFiles(pki / "sae-a.pem", pki / "sae-a.key", pki / "ca.pem"))
    path = f"/api/v1/keys/b/enc_keys?number={number}&size={size}"
    # handshakes and a first request are not part of the figure; check the answer's shape once
    connections = await asyncio.gather(*(Connection.open(url, context) for _ in range(clients)))
    for connection in connections:
        status, body = await connection.get(path)
        keys = json.loads(body)["keys"] if status == 200 else []
        if len(keys) != number or len(base64.b64decode(keys[0]["key"])) * 8 != size:
            raise RuntimeError(f"{url}: unexpected answer {status} {body[:200]!r}")
    return await timed_gets(connections, path, seconds, number * size, url)


async def timed_gets(
    connections: list[Connection], path: str, seconds: float, bits_each: int, what: str
) -> LoadResult:
    """GETs `path` on every connection at once until `seconds` or MAX_REQUESTS end; closes
    them. Any answer but 200 stops the run naming `what`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    per_client = MAX_REQUESTS // len(connections)

    async def worker(connection: Connection) -> None:
        for _ in range(per_client):
            if time.perf_counter() >= deadline:
                return
            start = time.perf_counter()
            status, body = await connection.get(path)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"{what}: HTTP {status} {body[:200]!r}")

    began = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - began
    for connection in connections:
        connection.close()
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        req_per_s=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        bits=len(latencies) * bits_each,
    )


WORKLOADS = {  # name -> (clients, None: the --clients value; keys per request; bits per key)
    "single": (None, 1, 256),
    "single_one_client": (1, 1, 256),
    "batched": (None, 128, 1024),
}


def median_result(runs: list[LoadResult]) -> LoadResult:
    """The window with the median rate (the machine is shared: windows vary)."""
    return sorted(runs, key=lambda r: r.req_per_s)[len(runs) // 2]


def km_configs(state: Path) -> tuple[Path, Path, str]:
    """The KM's file without metrics, and a second KM (own store and ports) with them; the
    second's /metrics URL."""
    config = write_process_configs(LabPlan.load(state / "plan.json"))["km-n1"]
    data = yaml.safe_load(config.read_text())
    listen = data["listen"]
    listen.pop("metrics", None)
    off = config.with_name("km-n1-metrics-off.yaml")
    off.write_text(yaml.safe_dump(data))
    with socket.socket() as probe:  # a free port for /metrics
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    data["listen"] = {
        "etsi014": "127.0.0.1:0",
        "etsi004": "127.0.0.1:0",
        "relay": "127.0.0.1:0",
        "metrics": f"127.0.0.1:{metrics_port}",
    }
    data["data_dir"] = str(Path(config.parent, data["data_dir"]).resolve()) + "-metrics"
    on = config.with_name("km-n1-metrics-on.yaml")
    on.write_text(yaml.safe_dump(data))
    return off, on, f"http://127.0.0.1:{metrics_port}/metrics"


class Scraper:
    """GETs /metrics once a second (as Prometheus does in the lab) until stopped."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.wait(self.interval_s):
                if client.get(self.url).status_code == 200:
                    self.scrapes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def paired_ratio(on: list[LoadResult], off: list[LoadResult]) -> float:
    """The median of on/off req/s over adjacent windows (each pair saw the same machine)."""
    return statistics.median(a.req_per_s / b.req_per_s for a, b in zip(on, off, strict=True))


def recording_cost_us(calls: int = 100_000) -> dict[str, float]:
    """CPU cost of the metrics of one delivered enc_keys request, and of one scrape, in µs."""
    from prometheus_client import CollectorRegistry, generate_latest

    from km.metrics import KmMetrics

    registry = CollectorRegistry()
    node = KmMetrics(registry).for_node("n1")
    began = time.perf_counter()
    for _ in range(calls):
        node.delivered("enc_keys", "a", "b", 1, 256, 0.001)
    per_request = (time.perf_counter() - began) / calls * 1e6
    began = time.perf_counter()
    for _ in range(100):
        generate_latest(registry)
    return {
        "per_request_us": per_request,
        "per_scrape_us": (time.perf_counter() - began) / 100 * 1e6,
    }


def run_bench(seconds: float, clients: int, rounds: int) -> dict[str, Any]:
    """Both servers run at once; short windows alternate between them, `rounds` times per
    workload, so that load from other processes on the machine hits both alike."""
    with tempfile.TemporaryDirectory(prefix="bench-etsi014-") as tmp:
        state = Path(tmp)
        make_test_plan(state, ["n1"], [], [("a", "n1"), ("b", "n1")])
        create_lab_pki(state, ["n1"], ["a", "b"])
        servers: dict[str, Server] = {}
        runs: dict[str, dict[str, list[LoadResult]]] = {"trivial": {}, "km": {}, "km_metrics": {}}
        scraper: Scraper | None = None
        try:
            servers["trivial"] = Server([*TRIVIAL_RUN, "--state", tmp])
            off, on, metrics_url = km_configs(state)
            servers["km"] = Server([*KM_RUN, "--config", str(off)])
            servers["km_metrics"] = Server([*KM_RUN, "--config", str(on)])
            scraper = Scraper(metrics_url)
            for workload, (n_clients, number, size) in WORKLOADS.items():
                for _ in range(rounds):
                    for name, server in servers.items():
                        result = asyncio.run(
                            load(server.url, state, n_clients or clients, seconds, number, size)
                        )
                        runs[name].setdefault(workload, []).append(result)
            scraper.stop()
            if scraper.scrapes == 0:
                raise RuntimeError(f"{metrics_url}: never scraped: metrics not served")
        finally:
            if scraper is not None:
                scraper.stop()
            for server in servers.values():
                server.stop()
    results = {
        name: {workload: median_result(r) for workload, r in by_workload.items()}
        for name, by_workload in runs.items()
    }
    km, trivial, metered = results["km"], results["trivial"], results["km_metrics"]
    cost = recording_cost_us()
    return {
        "clients": clients,
        "seconds_per_window": seconds,
        "rounds": rounds,
        "results": {
            name: {kind: {**asdict(r), "mbit_per_s": r.mbit_per_s} for kind, r in by_kind.items()}
            for name, by_kind in results.items()
        },
        "figures": {
            "single_key_ratio_km_over_trivial": km["single"].req_per_s
            / trivial["single"].req_per_s,
            "km_single_req_per_s": km["single"].req_per_s,
            "trivial_single_req_per_s": trivial["single"].req_per_s,
            "km_p99_ms_under_load": km["single"].p99_ms,
            "trivial_p99_ms_under_load": trivial["single"].p99_ms,
            "km_p99_ms_one_client": km["single_one_client"].p99_ms,
            "km_batched_mbit_per_s": km["batched"].mbit_per_s,
            "trivial_batched_mbit_per_s": trivial["batched"].mbit_per_s,
            "km_metrics_single_req_per_s": metered["single"].req_per_s,
            "metrics_on_over_off_single": paired_ratio(
                runs["km_metrics"]["single"], runs["km"]["single"]
            ),
            "metrics_on_over_off_single_medians": metered["single"].req_per_s
            / km["single"].req_per_s,
            "metrics_recording_us_per_request": cost["per_request_us"],
            "metrics_scrape_us": cost["per_scrape_us"],
            "km_metrics_p99_ms_under_load": metered["single"].p99_ms,
            "km_metrics_batched_mbit_per_s": metered["batched"].mbit_per_s,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode")
    serve = sub.add_parser("serve-trivial")
    serve.add_argument("--state", required=True, type=Path)
    serve.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--seconds", type=float, default=1.5, help="per load window")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.mode == "serve-trivial":
        asyncio.run(serve_trivial(args.state, args.port))
        return 0
    report = run_bench(args.seconds, args.clients, args.rounds)
    figures = report["figures"]
    print(f"{'figure':45} {'value':>10}  target")
    rows = [
        ("single-key enc_keys, KM req/s", figures["km_single_req_per_s"], ""),
        ("single-key enc_keys, trivial req/s", figures["trivial_single_req_per_s"], ""),
        ("KM / trivial", figures["single_key_ratio_km_over_trivial"], ">= 0.8"),
        (f"KM p99 ms, {args.clients} clients", figures["km_p99_ms_under_load"], "<= 15"),
        (f"trivial p99 ms, {args.clients} clients", figures["trivial_p99_ms_under_load"], ""),
        ("KM p99 ms, one client", figures["km_p99_ms_one_client"], "<= 15"),
        ("KM batched Mbit/s", figures["km_batched_mbit_per_s"], ">= 110"),
        ("trivial batched Mbit/s", figures["trivial_batched_mbit_per_s"], ""),
        ("single-key enc_keys, KM metrics on req/s", figures["km_metrics_single_req_per_s"], ""),
        (
            "metrics on / off, median of paired windows",
            figures["metrics_on_over_off_single"],
            ">= 0.95",
        ),
        ("metrics on / off, ratio of medians", figures["metrics_on_over_off_single_medians"], ""),
        ("metrics recording, µs per request", figures["metrics_recording_us_per_request"], ""),
        ("one scrape of a KM's registry, µs", figures["metrics_scrape_us"], ""),
        (
            f"KM metrics on p99 ms, {args.clients} clients",
            figures["km_metrics_p99_ms_under_load"],
            "",
        ),
        ("KM metrics on batched Mbit/s", figures["km_metrics_batched_mbit_per_s"], ""),
    ]
    for name, value, target in rows:
        print(f"{name:45} {value:10.2f}  {target}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
