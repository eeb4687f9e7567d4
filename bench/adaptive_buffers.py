"""A bursty pair's key response delay with a fixed relay buffer vs an adaptive one, same run.

    PYTHONPATH=. .venv/bin/python bench/adaptive_buffers.py [--bursts 40] [--burst 12]
        [--period 2] [--horizon 2] [--warmup 20] [--json out.json]

The triangle twin is started twice, first with `buffers: {mode: fixed}` (every association
keeps the lab's 3 relayed keys ready: the baseline), then with `mode: adaptive` (the
controller sizes the buffer from the consumption the KMs report, docs/controller.md). Each
time app1 (qnode1) asks for single keys for app2 (qnode3) in bursts: `--burst` requests back
to back every `--period` seconds. Reported per mode, over the bursts after `--warmup` seconds
(the controller polls every 5 s, so the measured rate needs two polls): the delay of each
request (p50, p90, p99), of each burst's last key, and the relay buffer at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]


def qkdsdn(env: dict[str, str], *args: str) -> None:
    """Runs a `qkdsdn` command (a `lab up` that lost a planned port to another process on
    this shared machine plans its ports again itself)."""
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"qkdsdn {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def live_buffer(state: Path) -> int | None:
    endpoints = json.loads((state / "endpoints.json").read_text())
    token = (state / "secrets" / "controller-token-viewer").read_text().strip()
    frame = httpx.get(
        f"{endpoints['controller']['url']}/live/state",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    rows = [i for i in frame["intents"] if i["pair"] == "app1>app2" and i["state"] == "INSTALLED"]
    return rows[0]["buffer"] if rows else None


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix=f"qkdsdn-buffers-{mode}-")) / "state"
    env = dict(
        os.environ,
        QKDSDN_BUFFERS__MODE=mode,
        QKDSDN_BUFFERS__HORIZON_S=str(args.horizon),
        PYTHONPATH=str(ROOT),
    )
    qkdsdn(env, "lab", "up", "triangle", "--state-dir", str(state))
    try:
        endpoints = json.loads((state / "endpoints.json").read_text())
        km1 = endpoints["nodes"]["qnode1"]["km"]["etsi014_url"]
        context = ssl.create_default_context(cafile=str(state / "pki" / "ca.pem"))
        context.load_cert_chain(state / "pki" / "sae-app1.pem", state / "pki" / "sae-app1.key")
        url = f"{km1}/api/v1/keys/app2/enc_keys"
        delays: list[float] = []
        lasts: list[float] = []
        failed = 0
        with httpx.Client(verify=context, timeout=30.0) as app1:
            app1.get(url, params={"number": 1, "size": 256})  # installs the association
            started = time.monotonic()
            for burst in range(args.bursts):
                due = started + burst * args.period
                time.sleep(max(0.0, due - time.monotonic()))
                measured = time.monotonic() - started >= args.warmup
                burst_start = time.perf_counter()
                for _ in range(args.burst):
                    t0 = time.perf_counter()
                    reply = app1.get(url, params={"number": 1, "size": 256})
                    if reply.status_code != 200:
                        failed += 1
                    elif measured:
                        delays.append(time.perf_counter() - t0)
                if measured:
                    lasts.append(time.perf_counter() - burst_start)
        buffer = live_buffer(state)
    finally:
        qkdsdn(env, "lab", "down", "--state-dir", str(state))
    ms = 1000.0
    return {
        "mode": mode,
        "requests_measured": len(delays),
        "failed": failed,
        "delay_ms": {
            "p50": round(pct(delays, 0.5) * ms, 2),
            "p90": round(pct(delays, 0.9) * ms, 2),
            "p99": round(pct(delays, 0.99) * ms, 2),
        },
        "burst_ms": {"p50": round(pct(lasts, 0.5) * ms, 1), "p99": round(pct(lasts, 0.99) * ms, 1)},
        "buffer_at_end": buffer,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--burst", type=int, default=12, help="single-key requests per burst")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between bursts")
    parser.add_argument("--horizon", type=float, default=2.0, help="buffers.horizon_s")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for mode in ("fixed", "adaptive"):
        results.append(run_mode(mode, args))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    for result in results:
        print(
            f"{result['mode']:>8}: {result['requests_measured']} requests, "
            f"{result['failed']} failed; delay p50 {result['delay_ms']['p50']} ms, "
            f"p90 {result['delay_ms']['p90']} ms, p99 {result['delay_ms']['p99']} ms; "
            f"burst of {args.burst} p50 {result['burst_ms']['p50']} ms, "
            f"p99 {result['burst_ms']['p99']} ms; buffer at end {result['buffer_at_end']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
