"""Counts link-key resyncs per key manager of running twins over the same windows, under load.

    .venv/bin/python bench/resync_storm.py STATE_DIR [STATE_DIR ...] [--window 25]
        [--windows 3] [--busy 8]

Each STATE_DIR is a twin already up (`qkdsdn lab up TOPOLOGY --state-dir DIR`), e.g. one
started with main's code and one with a branch's (PYTHONPATH), side by side so both see the
same machine load. `--busy N` adds N busy loops (processes this script starts and ends by
PID) for the first windows; every window counts the `link_key.resync` events of each KM's
trace (caller and answerer lines) in all twins at once. docs/benchmarks.md "Link-key resync
storm" reports a run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BUSY_LOOP = "while True: pass"


def resyncs(state_dir: Path) -> dict[str, int]:
    """`link_key.resync` events so far in each KM's trace of a twin, by process name."""
    counts: dict[str, int] = {}
    for trace in sorted((state_dir / "trace").glob("km-*.jsonl")):
        with trace.open(encoding="utf-8") as lines:
            counts[trace.stem] = sum(1 for line in lines if '"link_key.resync"' in line)
    return counts


def _load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dirs", nargs="+", type=Path)
    parser.add_argument("--window", type=float, default=25.0, help="seconds per window")
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="busy loops during the windows")
    parser.add_argument("--busy-windows", type=int, default=2, help="windows with the loops")
    args = parser.parse_args(argv)
    for state_dir in args.state_dirs:
        if not (state_dir / "trace").is_dir():
            parser.error(f"{state_dir}: no trace directory (not a twin's state directory?)")
    busy: list[subprocess.Popen[bytes]] = []
    try:
        for window in range(1, args.windows + 1):
            if window == 1 and args.busy:
                busy = [
                    subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.busy)
                ]
            if window == args.busy_windows + 1:
                _stop(busy)
                busy = []
            before = {d: resyncs(d) for d in args.state_dirs}
            started = time.strftime("%H:%M:%S", time.gmtime())
            load_before = _load_average()
            time.sleep(args.window)  # a measurement window, not a wait for a condition
            print(
                f"window {window} from {started} UTC, {args.window:g} s, load {load_before} ->"
                f" {_load_average()}, busy loops {len(busy)}"
            )
            for state_dir in args.state_dirs:
                after = resyncs(state_dir)
                counts = {km: n - before[state_dir].get(km, 0) for km, n in after.items()}
                per_km = ", ".join(f"{km.removeprefix('km-')} {n}" for km, n in counts.items())
                print(f"  {state_dir}: total {sum(counts.values())}; {per_km}")
    finally:
        _stop(busy)
    return 0


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.kill()
    for process in processes:
        process.wait()


if __name__ == "__main__":
    sys.exit(main())
