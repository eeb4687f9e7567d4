"""Blocking probability against offered load: fewest-hops vs key-aware path selection.

    .venv/bin/python bench/blocking_study.py --out out/blocking [--arrivals 3000] [--seed 1]

Key association requests arrive as a Poisson process between uniformly chosen node pairs,
hold their key rate for an exponential time (mean 1) and leave; offered load in Erlangs is
arrival rate x mean holding time. Each request asks min = max = its demand (uniform in
[0.5, 1.5] x the mean demand), so it is admitted only with that much free key rate on every
hop (the controller's own `admit`). Blocking = rejected / offered, after a warm-up of 10 % of
the arrivals. Both policies see exactly the same arrivals (common random numbers).

Topologies: the 9-node metro (lab/topologies/metro-madrid.yaml, link rates from the physical
model of agents.emulator.physics) and a 50-node Waxman graph (alpha = beta = 0.4, seeded), whose link
lengths are the node distances x 80 km with the `field` preset.
Writes blocking.png and blocking.json into --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this folder would come first on sys.path; the project root must.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import heapq
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx

from agents.emulator.physics import link_rate
from controller.admission import admit
from controller.model import KeyRequest, QoS, Reservation, Reservations
from controller.paths import FewestHops, KeyAware, PathPolicy
from controller.topology.synthetic import snapshot_from_graph
from lab.topology import load_topology, topology_path


@dataclass(frozen=True)
class Study:
    name: str
    graph: nx.Graph  # edges carry "eskr" (bit/s)
    mean_demand: int  # bit/s
    loads: tuple[float, ...]  # Erlangs


def metro_graph() -> nx.Graph:
    topology = load_topology(topology_path("metro-madrid"))
    graph = nx.Graph()
    for link in topology.links:
        rate = link_rate(link.preset, link.length_km, link.extra_loss_db, skr_bps=link.skr_bps)
        graph.add_edge(link.a, link.b, eskr=int(rate.skr_bps))
    return graph


def waxman(nodes: int, seed: int) -> nx.Graph:
    graph = nx.waxman_graph(nodes, beta=0.4, alpha=0.4, seed=seed)
    pos = nx.get_node_attributes(graph, "pos")
    for a, b in graph.edges:
        km = 80.0 * math.dist(pos[a], pos[b])
        graph.edges[a, b]["eskr"] = int(link_rate("field", km, 1.0).skr_bps)
    return graph


def simulate(
    study: Study, policy: PathPolicy, load: float, arrivals: int, seed: int
) -> dict[str, float]:
    """One run at one offered load; every loop is bounded by the number of arrivals."""
    rng = random.Random(seed)
    snapshot, ids = snapshot_from_graph(study.graph, rate=lambda a, b, d: int(d["eskr"]))
    nodes = list(ids.values())
    reservations = Reservations()
    departures: list[tuple[float, str]] = []
    clock, offered, blocked, hops = 0.0, 0, 0, 0
    warmup = arrivals // 10
    decision_time = 0.0
    for index in range(arrivals):
        clock += rng.expovariate(load)  # mean holding time 1: arrival rate = load
        holding = rng.expovariate(1.0)
        src, dst = rng.sample(nodes, 2)
        demand = int(study.mean_demand * rng.uniform(0.5, 1.5))
        while departures and departures[0][0] <= clock:
            _, gone = heapq.heappop(departures)
            reservations = reservations.without(gone)
        request = KeyRequest(src, dst, qos=QoS(min_bandwidth=demand, max_bandwidth=demand))
        started = time.perf_counter()
        decision = admit(snapshot, reservations, request, policy)
        decision_time += time.perf_counter() - started
        if index < warmup:
            pass
        else:
            offered += 1
            blocked += not decision.admitted
        if decision.admitted and decision.path is not None:
            intent = f"i{index}"
            reservations = reservations.with_(
                Reservation(intent, decision.path.links, decision.bandwidth)
            )
            heapq.heappush(departures, (clock + holding, intent))
            if index >= warmup:
                hops += decision.path.hops
    carried = offered - blocked
    return {
        "load": load,
        "blocking": blocked / offered if offered else 0.0,
        "mean_hops": hops / carried if carried else 0.0,
        "decision_ms": decision_time / arrivals * 1000,
    }


def run_study(study: Study, arrivals: int, seed: int) -> dict[str, Any]:
    policies: list[PathPolicy] = [FewestHops(), KeyAware()]
    result: dict[str, Any] = {
        "nodes": study.graph.number_of_nodes(),
        "links": study.graph.number_of_edges(),
        "mean_demand_bps": study.mean_demand,
    }
    for policy in policies:
        result[policy.name] = [
            simulate(study, policy, load, arrivals, seed + index)
            for index, load in enumerate(study.loads)
        ]
    return result


def plot(results: dict[str, Any], out: Path) -> Path:
    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2))
    for axis, (name, data) in zip(
        figure.axes if len(results) > 1 else [axes], results.items(), strict=True
    ):
        for policy, marker in (("fewest-hops", "o"), ("key-aware", "s")):
            loads = [p["load"] for p in data[policy]]
            blocking = [max(p["blocking"], 1e-4) for p in data[policy]]
            axis.plot(loads, blocking, marker=marker, label=policy)
        axis.set_yscale("log")
        axis.set_xlabel("offered load (Erlang)")
        axis.set_ylabel("blocking probability (0 drawn at 1e-4)")
        axis.set_title(
            f"{name}: {data['nodes']} nodes, {data['links']} links, "
            f"mean demand {data['mean_demand_bps'] / 1000:.0f} kbit/s"
        )
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = out / "blocking.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/blocking"))
    parser.add_argument("--arrivals", type=int, default=3000, help="requests per load point")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--metro-demand", type=int, default=2_000, help="mean bit/s")
    parser.add_argument("--waxman-demand", type=int, default=400_000, help="mean bit/s")
    parser.add_argument("--waxman-nodes", type=int, default=50)
    args = parser.parse_args()
    if args.arrivals < 100:
        parser.error("--arrivals must be at least 100")
    args.out.mkdir(parents=True, exist_ok=True)
    studies = [
        Study("metro-madrid", metro_graph(), args.metro_demand, (5, 10, 20, 40, 80, 160)),
        Study(
            f"waxman-{args.waxman_nodes}",
            waxman(args.waxman_nodes, args.seed),
            args.waxman_demand,
            (50, 100, 200, 400, 800),
        ),
    ]
    results = {s.name: run_study(s, args.arrivals, args.seed) for s in studies}
    (args.out / "blocking.json").write_text(json.dumps(results, indent=2))
    png = plot(results, args.out)
    for name, data in results.items():
        print(f"{name} ({data['nodes']} nodes, {data['links']} links)")
        print(f"  {'load':>6} {'fewest-hops':>12} {'key-aware':>10} {'hops fh/ka':>11}")
        for fh, ka in zip(data["fewest-hops"], data["key-aware"], strict=True):
            print(
                f"  {fh['load']:>6.0f} {fh['blocking']:>12.4f} {ka['blocking']:>10.4f}"
                f" {fh['mean_hops']:>5.2f}/{ka['mean_hops']:<5.2f}"
            )
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
