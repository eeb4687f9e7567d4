"""A twin of a ROWSxCOLS grid on this machine: start-up, memory, idle CPU, far-corner keys, shutdown.

    .venv/bin/python bench/scale.py [--rows 10 --cols 10] [--minutes 5] [--rate 0.5] [--json out.json]

Measured in one run, each figure also as a ratio to the same figure of the triangle (3 nodes),
started and measured first in the same run as the baseline:
- `lab up`: seconds until every process listens (targets for 10x10: <= 60 s);
- RSS: total resident memory of every process of the twin (target <= 3 GB);
- idle CPU: CPU time of the whole twin over a 10 s window, in % of one core (target <= 20 %),
  once the link-key pools reached their high-water mark (after the time the slowest link
  takes to generate a full pool, `link_pool_max_bits` / SKR, plus 10 s), nothing asked; also
  the same figure over the first 10 s after up (`fill_cpu_pct`: the pools filling);
- first key: `enc_keys` from the application at one corner for the one at the opposite corner
  (2*(n-1) hops on a grid), until the key arrives (target <= 2 s), then `dec_keys` at the far end;
- steady: requests at `--rate` per second for `--minutes`, the share served (target >= 99 %);
- `lab down`: seconds, and whether any process needed SIGKILL (target <= 10 s, none).
Every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# `python bench/scale.py` puts bench/ first on sys.path, where bench/controller.py would
# shadow the controller package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from agents.emulator.physics import link_rate  # noqa: E402
from lab import launcher  # noqa: E402
from lab.plan import LabPlan  # noqa: E402
from lab.topology import load_topology  # noqa: E402

TARGETS = {"up_s": 60.0, "rss_gb": 3.0, "idle_cpu_pct": 20.0, "first_key_s": 2.0, "down_s": 10.0}
IDLE_WINDOW_S = 10.0
FILL_MARGIN_S = 10.0
LINK_KM = 20.0  # every link of the generated topologies
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TwinFigures:
    name: str
    nodes: int
    links: int
    hops: int
    up_s: float
    processes: int
    rss_gb: float
    idle_cpu_pct: float
    fill_cpu_pct: float
    idle_after_s: float  # seconds after up when the idle window began
    load_average: float  # 1-minute load average of the machine at the idle window
    first_key_s: float
    first_outcome: str  # "ok", or why the first request failed
    steady_sent: int
    steady_ok: int
    steady_errors: dict[str, int]
    down_s: float
    stopped: int
    killed: int


def grid_topology(rows: int, cols: int) -> str:
    """A grid of 20 km metro links with an application at two opposite corners."""
    names = [[f"n{r}x{c}" for c in range(cols)] for r in range(rows)]
    lines = [
        f"name: grid{rows}x{cols}",
        f"description: {rows}x{cols} grid, applications at opposite corners.",
        "defaults: {preset: commercial, length_km: 20}",
        "nodes:",
        *(f"  {name}: {{}}" for row in names for name in row),
        "links:",
    ]
    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols:
                lines.append(f"  - between: [{names[r][c]}, {names[r][c + 1]}]")
            if r + 1 < rows:
                lines.append(f"  - between: [{names[r][c]}, {names[r + 1][c]}]")
    lines += ["apps:", f"  corner-a: {names[0][0]}", f"  corner-b: {names[-1][-1]}"]
    return "\n".join(lines) + "\n"


def triangle_topology() -> str:
    return (
        "name: triangle-baseline\n"
        "defaults: {preset: commercial, length_km: 20}\n"
        "nodes: {qnode1: {}, qnode2: {}, qnode3: {}}\n"
        "links:\n"
        "  - between: [qnode1, qnode2]\n"
        "  - between: [qnode2, qnode3]\n"
        "  - between: [qnode1, qnode3]\n"
        "apps: {corner-a: qnode1, corner-b: qnode3}\n"
    )


def _process_tree(pids: list[int]) -> list[int]:
    """The given PIDs and every descendant still running."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def _rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _cpu_pct(pids: list[int], window: float) -> float:
    """CPU time of `pids` over the next `window` seconds, in % of one core."""
    ticks = _cpu_ticks(pids)
    time.sleep(window)  # the measurement window itself, nothing waited for
    return 100.0 * (_cpu_ticks(pids) - ticks) / CLK_TCK / window


def _client(plan: LabPlan, sae: str) -> httpx.Client:
    app = plan.app(sae)
    context = ssl.create_default_context(cafile=plan.credentials.ca_cert)
    context.load_cert_chain(app.cert, app.key)
    return httpx.Client(verify=context, timeout=30.0)


def _request(plan: LabPlan, clients: dict[str, httpx.Client]) -> str:
    """One key corner-a -> corner-b: "ok", or the reason it failed."""
    km_a = plan.node(plan.app("corner-a").node).km_etsi014_url
    km_b = plan.node(plan.app("corner-b").node).km_etsi014_url
    try:
        enc = clients["corner-a"].get(f"{km_a}/api/v1/keys/corner-b/enc_keys")
        if enc.status_code != 200:
            return f"enc_keys HTTP {enc.status_code}"
        entry = enc.json()["keys"][0]
        dec = clients["corner-b"].post(
            f"{km_b}/api/v1/keys/corner-a/dec_keys",
            json={"key_IDs": [{"key_ID": entry["key_ID"]}]},
        )
        if dec.status_code != 200:
            return f"dec_keys HTTP {dec.status_code}"
        same = base64.b64decode(dec.json()["keys"][0]["key"]) == base64.b64decode(entry["key"])
        return "ok" if same else "keys differ"
    except httpx.HTTPError as error:
        return type(error).__name__


def measure(name: str, topology_text: str, hops: int, minutes: float, rate: float) -> TwinFigures:
    state = Path(tempfile.mkdtemp(prefix=f"qkdsdn-scale-{name}-"))
    topo_file = state / "topology.yaml"
    topo_file.write_text(topology_text)
    topology = load_topology(topo_file)
    plan = launcher.make_plan(topology, topo_file, state / "state")
    started = time.monotonic()
    processes = launcher.start(plan, timeout=600.0)
    up_s = time.monotonic() - started
    down_s, stopped, killed = 0.0, 0, 0
    try:
        pids = _process_tree([p.pid for p in processes])
        rss = _rss_bytes(pids)
        fill_pct = _cpu_pct(pids, IDLE_WINDOW_S)
        # The pools fill at the links' key rate: wait out the slowest link, then measure.
        skr = link_rate("commercial", LINK_KM).skr_bps
        fill_s = plan.settings.link_pool_max_bits / skr + FILL_MARGIN_S
        idle_after = time.monotonic() - started - up_s
        if idle_after < fill_s:
            time.sleep(fill_s - idle_after)  # a computed bound, not a guess at readiness
        idle_after = time.monotonic() - started - up_s
        load = os.getloadavg()[0]
        idle_pct = _cpu_pct(pids, IDLE_WINDOW_S)
        clients = {sae: _client(plan, sae) for sae in ("corner-a", "corner-b")}
        try:
            t0 = time.monotonic()
            first = _request(plan, clients)
            first_s = time.monotonic() - t0 if first == "ok" else float("inf")
            outcomes: dict[str, int] = {}
            count = int(minutes * 60 * rate)
            period = 1.0 / rate if rate > 0 else 0.0
            begin = time.monotonic()
            for index in range(count):
                pause = begin + index * period - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                outcome = _request(plan, clients)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            for client in clients.values():
                client.close()
    finally:
        t_down = time.monotonic()
        report = launcher.stop(Path(plan.state_dir))
        stopped, killed = len(report.stopped), len(report.killed)
        down_s = time.monotonic() - t_down
    ok = outcomes.pop("ok", 0)
    return TwinFigures(
        name=name,
        nodes=len(topology.nodes),
        links=len(topology.links),
        hops=hops,
        up_s=round(up_s, 2),
        processes=len(processes),
        rss_gb=round(rss / 2**30, 3),
        idle_cpu_pct=round(idle_pct, 1),
        fill_cpu_pct=round(fill_pct, 1),
        idle_after_s=round(idle_after, 1),
        load_average=round(load, 2),
        first_key_s=round(first_s, 3),
        first_outcome=first,
        steady_sent=count,
        steady_ok=ok,
        steady_errors=outcomes,
        down_s=round(down_s, 2),
        stopped=stopped,
        killed=killed,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--cols", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=5.0, help="steady phase length")
    parser.add_argument("--rate", type=float, default=0.5, help="requests per second")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    baseline_minutes = min(args.minutes, 1.0)
    base = measure("triangle", triangle_topology(), 1, baseline_minutes, args.rate)
    grid = measure(
        f"grid{args.rows}x{args.cols}",
        grid_topology(args.rows, args.cols),
        args.rows + args.cols - 2,
        args.minutes,
        args.rate,
    )
    print(f"{'figure':<14}{'triangle':>12}{grid.name:>14}{'ratio':>9}{'target':>10}")
    for field, target in TARGETS.items():
        b, g = getattr(base, field), getattr(grid, field)
        ratio = g / b if b else float("inf")
        print(f"{field:<14}{b:>12}{g:>14}{ratio:>9.1f}{target:>10}")
    for figures in (base, grid):
        share = 100.0 * figures.steady_ok / figures.steady_sent if figures.steady_sent else 0.0
        print(
            f"{figures.name}: {figures.processes} processes, steady {figures.steady_ok}/"
            f"{figures.steady_sent} served ({share:.1f} %), errors {figures.steady_errors}, "
            f"stopped {figures.stopped}, SIGKILLed {figures.killed}; first request"
            f" {figures.first_outcome}; CPU while the pools"
            f" fill {figures.fill_cpu_pct} %, idle window {figures.idle_after_s} s after up"
            f" at load average {figures.load_average}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(base), asdict(grid)], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
