"""The soak: the metro twin under steady key traffic while links are cut and processes die.

    .venv/bin/python bench/soak.py [--minutes 10] [--seed 1] [--fault-every 20] [--json out.json]

The twin runs supervised, as `lab up` runs it: a killed key manager, agents process or
controller comes back by the supervisor. Faults follow a seeded schedule
(lab/scenarios/soak.py): cut and restore of links, SIGKILL and SIGTERM of key managers,
SIGKILL of the agents and of the controller. The baseline is the same traffic on the same
twin for the first minute with no fault at all (served share and request rate), measured
first in the same run. What must be zero: keys delivered twice, mismatches, keys acknowledged
but never retrievable, link-key indices used twice (from the traces).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from lab import launcher  # noqa: E402
from lab.scenarios.soak import SoakCounts, run_soak  # noqa: E402
from lab.topology import load_topology, topology_path  # noqa: E402


def _pairs(apps: list[str]) -> list[tuple[str, str]]:
    return [(apps[i], apps[i + 1]) for i in range(0, len(apps) - 1, 2)]


def _line(name: str, counts: SoakCounts) -> str:
    ok = counts.outcomes.get("ok", 0)
    share = 100.0 * ok / counts.requests if counts.requests else 0.0
    return (
        f"{name}: {counts.requests} requests, {ok} served ({share:.1f} %), outcomes "
        f"{counts.outcomes}, faults {counts.faults}; delivered twice {counts.delivered_twice}, "
        f"mismatches {counts.mismatches}, lost after ack {counts.lost_after_ack}, "
        f"link-key indices used twice {counts.link_key_reuse}; restarts {counts.restarts}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="metro-madrid")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second per pair")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    topo_file = topology_path(args.topology)
    topology = load_topology(topo_file)
    pairs = _pairs([app.sae_id for app in topology.apps])
    state = Path(tempfile.mkdtemp(prefix="qkdsdn-soak-"))
    plan = launcher.make_plan(topology, topo_file, state)
    launcher.start_supervised(plan, timeout=300.0)
    try:
        quiet = run_soak(plan, pairs, 60.0, args.seed, 1e9, args.rate)  # no fault fits in
        chaos = run_soak(
            plan, pairs, args.minutes * 60, args.seed, args.fault_every, args.rate, say=print
        )
    finally:
        report = launcher.stop(Path(plan.state_dir))
    print(_line("baseline, no fault (1 min)", quiet))
    print(_line(f"soak ({args.minutes:g} min)", chaos))
    print(f"lab down: {len(report.stopped)} stopped, {len(report.killed)} SIGKILLed")
    if args.json:
        args.json.write_text(json.dumps({"baseline": asdict(quiet), "soak": asdict(chaos)}))
    return 0 if chaos.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
