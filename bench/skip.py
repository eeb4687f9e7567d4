"""SKIP `GET /key` single-key throughput against ETSI 014 `enc_keys`, same KM process, same run.

Subject and baseline are the two faces of one real `qkdsdn km run` process (SQLite store,
access control, mutual TLS): SKIP `GET /key?remoteSystemID=b` and ETSI 014
`GET /api/v1/keys/b/enc_keys` (one 256-bit key each, same-node pair a -> b). The same lean
load generator as bench/etsi014.py (keep-alive, mutual TLS, 32 concurrent connections)
drives both in short alternating windows so that load from other processes hits both alike.

    .venv/bin/python bench/skip.py [--seconds 1.5] [--rounds 5] [--clients 32] [--json out.json]

Figure: SKIP req/s / ETSI 014 req/s (target >= 0.8), and both p50/p99 under that load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# `python bench/skip.py` puts bench/ first on sys.path, where bench/controller.py would
# shadow the controller package: the repository root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.etsi014 import (  # noqa: E402
    KM_RUN,
    Connection,
    LoadResult,
    median_result,
    timed_gets,
)
from km.etsi014.server import TlsFiles, client_tls_context  # noqa: E402
from lab.configs import write_process_configs  # noqa: E402
from lab.pki import create_lab_pki  # noqa: E402
from lab.plan import LabPlan  # noqa: E402
from tests.harness.agents import make_test_plan  # noqa: E402
from tests.harness.etsi014 import read_ready_line  # noqa: E402

START_TIMEOUT_S = 30.0
PATHS = {
    "etsi014": "/api/v1/keys/b/enc_keys?number=1&size=256",
    "skip": "/key?remoteSystemID=b&size=256",
}


def check(face: str, status: int, body: bytes) -> None:
    data = json.loads(body) if status == 200 else {}
    ok = len(data.get("keys", [])) == 1 if face == "etsi014" else len(data.get("key", "")) == 64
    if not ok:
        raise RuntimeError(f"{face}: unexpected answer {status} {body[:120]!r}")


async def load(face: str, url: str, state: Path, clients: int, seconds: float) -> LoadResult:
    pki = state / "pki"
    context = client_tls_context(TlsFiles(pki / "sae-a.pem", pki / "sae-a.key", pki / "ca.pem"))
    path = PATHS[face]
    connections = await asyncio.gather(*(Connection.open(url, context) for _ in range(clients)))
    for connection in connections:  # handshakes and a first request are not measured
        check(face, *(await connection.get(path)))
    return await timed_gets(connections, path, seconds, 256, face)


def run_bench(seconds: float, clients: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-skip-") as tmp:
        state = Path(tmp)
        make_test_plan(state, ["n1"], [], [("a", "n1"), ("b", "n1")])
        create_lab_pki(state, ["n1"], ["a", "b"])
        config = write_process_configs(LabPlan.load(state / "plan.json"))["km-n1"]
        proc = subprocess.Popen(
            [*KM_RUN, "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        runs: dict[str, list[LoadResult]] = {"etsi014": [], "skip": []}
        try:
            line = read_ready_line(proc, START_TIMEOUT_S)
            if line is None:
                raise RuntimeError("the key manager did not become ready")
            urls = {
                face: next(p for p in line.split() if p.startswith(f"{face}="))[len(face) + 1 :]
                for face in runs
            }
            for round_ in range(rounds):  # the order alternates: neither face always goes first
                for face in list(runs)[:: 1 if round_ % 2 == 0 else -1]:
                    runs[face].append(asyncio.run(load(face, urls[face], state, clients, seconds)))
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
    results = {face: median_result(r) for face, r in runs.items()}
    # windows next to each other share the machine's load: their ratio is the steadier figure
    ratios = sorted(
        s.req_per_s / e.req_per_s for s, e in zip(runs["skip"], runs["etsi014"], strict=True)
    )
    return {
        "clients": clients,
        "seconds_per_window": seconds,
        "rounds": rounds,
        "results": {face: asdict(r) for face, r in results.items()},
        "all_windows_req_per_s": {face: [r.req_per_s for r in rs] for face, rs in runs.items()},
        "figures": {
            "skip_over_etsi014": statistics.median(ratios),
            "skip_over_etsi014_of_medians": results["skip"].req_per_s
            / results["etsi014"].req_per_s,
            "skip_req_per_s": results["skip"].req_per_s,
            "etsi014_req_per_s": results["etsi014"].req_per_s,
            "skip_p50_ms": results["skip"].p50_ms,
            "etsi014_p50_ms": results["etsi014"].p50_ms,
            "skip_p99_ms": results["skip"].p99_ms,
            "etsi014_p99_ms": results["etsi014"].p99_ms,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.5, help="per load window")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = run_bench(args.seconds, args.clients, args.rounds)
    figures = report["figures"]
    print(f"{'figure':42} {'value':>10}  target")
    for name, key, target in (
        ("SKIP GET /key req/s", "skip_req_per_s", ""),
        ("ETSI 014 enc_keys req/s", "etsi014_req_per_s", ""),
        ("SKIP / ETSI 014 (median of round ratios)", "skip_over_etsi014", ">= 0.8"),
        ("SKIP / ETSI 014 (of median windows)", "skip_over_etsi014_of_medians", ""),
        ("SKIP p50 ms", "skip_p50_ms", ""),
        ("ETSI 014 p50 ms", "etsi014_p50_ms", ""),
        ("SKIP p99 ms", "skip_p99_ms", ""),
        ("ETSI 014 p99 ms", "etsi014_p99_ms", ""),
    ):
        print(f"{name:42} {figures[key]:10.2f}  {target}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
