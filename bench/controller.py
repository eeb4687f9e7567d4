"""Controller performance, each figure with a baseline measured in the same run.

    .venv/bin/python bench/controller.py [--nodes 1000] [--decisions 300] [--installs 30]
                                         [--cuts 10] [--json out.json]

1. Decision (admission + path) on a Waxman graph (alpha = beta = 0.4, seeded), with the
   network already carrying reservations; baseline: plain `nx.shortest_path` on the same graph.
   Target: p50 <= 10 ms.
2. Install of a k-hop intent over NETCONF (lock, edit with validation, commit, unlock on every
   node of the path), agents in a child process as in a lab; baseline: one bare NETCONF <get>
   of the node's tree.
   Target: <= 20 ms + 3 ms per hop.
3. Re-route after a link cut: from the controller receiving `sdqkdn_link_down` to the new
   route committed on every node; baseline: one bare <get>. Target: <= 500 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is called controller.py: run as a file, its folder comes first on sys.path and
# would shadow the `controller` package; the project root must come first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import functools
import gc
import itertools
import json
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import networkx as nx

from common.protos import control_pb2, control_pb2_grpc
from controller.admission import admit
from controller.api import Controller
from controller.devices.session import NetconfSession
from controller.intents.compile import compile_install, compile_withdraw
from controller.intents.service import IntentEvent, IntentEventType
from controller.model import Intent, IntentState, KeyRequest, QoS, Reservation, Reservations
from controller.names import QKD_NODE_FILTER
from controller.paths import FewestHops, KeyAware, PathPolicy
from controller.topology.events import TopologyEvent, TopologyEventType
from controller.topology.synthetic import snapshot_from_graph
from lab.configs import write_process_configs
from lab.launcher import agent_groups
from lab.plan import LabPlan
from tests.harness.agents import agent_channel, make_test_plan, operator_tls, running_agents
from tests.harness.configs import controller_from_plan

SetLink = Callable[[str, str, bool], Awaitable[None]]  # (node name, qkdl_id, up)


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples_s: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {"p50_ms": statistics.median(ms), "p90_ms": pct(ms, 0.9), "n": len(ms)}


# ---------------------------------------------------------------- 1. decision


def bench_decision(nodes: int, decisions: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    graph = nx.waxman_graph(nodes, beta=0.4, alpha=0.4, seed=seed)
    # a small Waxman graph can fall apart: decide within its largest connected piece
    graph = nx.Graph(graph.subgraph(max(nx.connected_components(graph), key=len)))
    snapshot, ids = snapshot_from_graph(graph, rate=lambda a, b, d: rng.randint(2_000, 20_000))
    started = time.perf_counter()
    _ = snapshot.routing  # built once per topology change, shared by every decision after it
    routing_s = time.perf_counter() - started
    node_list = list(graph.nodes)
    # a loaded network: reservations of earlier intents on random short paths
    reservations = Reservations()
    for index in range(nodes):
        a, b = rng.sample(node_list, 2)
        decision = admit(
            snapshot, reservations, KeyRequest(ids[a], ids[b], qos=QoS(500, 1_000)), FewestHops()
        )
        if decision.admitted and decision.path is not None:
            reservations = reservations.with_(
                Reservation(f"pre-{index}", decision.path.links, decision.bandwidth)
            )
    pairs = [rng.sample(node_list, 2) for _ in range(decisions)]
    result: dict[str, Any] = {
        "nodes": graph.number_of_nodes(),
        "edges": graph.number_of_edges(),
        "reservations": len(reservations.by_intent),
        "routing_graph_build_ms": routing_s * 1000,
    }
    baseline = []
    for a, b in pairs:
        t0 = time.perf_counter()
        nx.shortest_path(graph, a, b)
        baseline.append(time.perf_counter() - t0)
    result["baseline_nx_shortest_path"] = summary(baseline)
    policies: list[PathPolicy] = [FewestHops(), KeyAware()]
    for policy in policies:
        times, admitted = [], 0
        for a, b in pairs:
            request = KeyRequest(ids[a], ids[b], qos=QoS(1_000, 2_000))
            t0 = time.perf_counter()
            decision = admit(snapshot, reservations, request, policy)
            times.append(time.perf_counter() - t0)
            admitted += decision.admitted
        result[f"decision_{policy.name}"] = summary(times) | {"admitted": admitted}
    return result


# ---------------------------------------------------------------- 2 and 3: NETCONF


@asynccontextmanager
async def hosted_agents(plan: LabPlan, mode: str) -> AsyncIterator[SetLink]:
    """The plan's agents, either in this process or (as in a lab) in a child process of ours;
    yields how to cut or restore a link at one node (AgentControl.SetLink)."""
    if mode == "in-process":
        async with running_agents(plan, persist=False) as agents:

            async def set_local(node: str, qkdl_id: str, up: bool) -> None:
                agents[node].node.set_link(qkdl_id, up)

            yield set_local
        return
    files = write_process_configs(plan)  # durable: false, as lab up runs them
    children: list[subprocess.Popen[str]] = []
    try:
        for group in plan.hosting_groups():  # one child per agents process of a lab
            hosted = [arg for node in group for arg in ("--config", str(files[f"agent-{node}"]))]
            argv = [sys.executable, "-m", "lab.cli", "agent", "run"]
            children.append(
                subprocess.Popen(
                    [*argv, *hosted],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None
            for _ in range(len(plan.nodes) + 50):  # bounded: a ready line per node, the total
                line = await asyncio.to_thread(child.stdout.readline)
                if not line:
                    raise RuntimeError(f"agents exited with {child.wait()}")
                if line.startswith("ready:"):
                    break

        async def set_remote(node: str, qkdl_id: str, up: bool) -> None:
            address = plan.node(node).agent_grpc_address
            async with agent_channel(address, operator_tls(plan)) as channel:
                stub = control_pb2_grpc.AgentControlStub(channel)
                await stub.SetLink(control_pb2.SetLinkRequest(qkdl_id=qkdl_id, up=up))

        yield set_remote
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


async def bare_get(controller: Controller, device: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        await controller.devices.call(device, lambda s: s.get(QKD_NODE_FILTER))
        times.append(time.perf_counter() - t0)
    return times


def edit_with(config: str, session: NetconfSession) -> None:
    session.edit_candidate(config)


async def rpc_breakdown(controller: Controller, count: int) -> dict[str, float]:
    """p50 of each RPC of a one-node transaction, sent one by one: what an install costs at
    least (the edit's test-then-set makes the agent validate; the commit applies)."""
    snap = controller.topology()
    c0, c1 = snap.resolve("c0"), snap.resolve("c1")
    request = KeyRequest(c0, c1, "a", ("b",))
    decision = controller.admit(request)
    assert decision.path is not None
    samples: dict[str, list[float]] = {}
    for _ in range(count):
        intent_id = Intent.new_id()
        install = compile_install(intent_id, request, decision.path, 1)[c0].config
        remove = compile_withdraw(intent_id, [c0])[c0].config
        steps: list[tuple[str, Callable[[NetconfSession], None]]] = [
            ("lock", NetconfSession.lock),
            ("edit", functools.partial(edit_with, install)),
            ("commit", NetconfSession.commit),
            ("unlock", NetconfSession.unlock),
        ]
        for name, step in steps:
            t0 = time.perf_counter()
            await controller.devices.call(c0, step)
            samples.setdefault(name, []).append(time.perf_counter() - t0)
        cleanup: list[Callable[[NetconfSession], None]] = [
            NetconfSession.lock,
            functools.partial(edit_with, remove),
            NetconfSession.commit,
            NetconfSession.unlock,
        ]
        for step in cleanup:
            await controller.devices.call(c0, step)
    breakdown = {f"{name}_p50_ms": statistics.median(v) * 1000 for name, v in samples.items()}
    breakdown["sum_p50_ms"] = sum(breakdown.values())
    return breakdown


async def bench_install(
    hops: Sequence[int], installs: int, mode: str, agent_processes: int | None
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    longest = max(hops)
    names = [f"c{i}" for i in range(longest + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_test_plan(Path(tmp), names, list(itertools.pairwise(names)))
        plan = replace(plan, agent_groups=agent_groups(names, agent_processes))
        async with hosted_agents(plan, mode):
            controller = controller_from_plan(plan, poll_interval=60.0)
            await controller.start()
            try:
                snap = controller.topology()
                result["baseline_bare_get"] = summary(
                    await bare_get(controller, snap.resolve("c0"), installs)
                )
                result["rpc_breakdown_one_node"] = await rpc_breakdown(controller, installs)
                for k in hops:
                    request = KeyRequest(snap.resolve("c0"), snap.resolve(f"c{k}"), "a", ("b",))
                    times = []
                    for _ in range(installs):
                        t0 = time.perf_counter()
                        intent = await controller.install(request)
                        times.append(time.perf_counter() - t0)
                        assert intent.state is IntentState.INSTALLED, intent.reason
                        await controller.withdraw(intent.intent_id)
                    result[f"install_{k}_hops"] = summary(times) | {"target_ms": 20 + 3 * k}
            finally:
                await controller.stop()
    return result


def _direct_admissible(controller: Controller, request: KeyRequest) -> bool:
    decision = controller.admit(request)
    return decision.path is not None and decision.path.hops == 1


async def bench_reroute(cuts: int, mode: str) -> dict[str, Any]:
    names = ["r1", "r2", "r3"]
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_test_plan(Path(tmp), names, [("r1", "r2"), ("r2", "r3"), ("r1", "r3")])
        async with hosted_agents(plan, mode) as set_link:
            controller = controller_from_plan(plan, poll_interval=60.0)
            await controller.start()
            marks: dict[str, float] = {}

            def on_topology(event: TopologyEvent) -> None:
                if event.type is TopologyEventType.LINK_DOWN:
                    marks.setdefault("down", time.perf_counter())

            def on_intent(event: IntentEvent) -> None:
                if event.type is IntentEventType.REROUTED:
                    marks.setdefault("rerouted", time.perf_counter())

            controller.topology_events.add(on_topology)
            controller.intent_events.add(on_intent)
            try:
                snap = controller.topology()
                r1, r3 = snap.resolve("r1"), snap.resolve("r3")
                baseline = await bare_get(controller, r1, 30)
                from_notification, from_cut = [], []
                request = KeyRequest(r1, r3, "a", ("b",))
                for _ in range(cuts):
                    intent = await controller.install(request)
                    assert intent.path is not None and intent.path.hops == 1, intent
                    direct = intent.path.links[0]
                    marks.clear()
                    cut_at = time.perf_counter()
                    await set_link("r1", direct, False)
                    deadline = time.monotonic() + 5
                    while "rerouted" not in marks and time.monotonic() < deadline:
                        await asyncio.sleep(0.001)
                    if "rerouted" not in marks:
                        raise RuntimeError("no re-route within 5 s")
                    from_notification.append(marks["rerouted"] - marks["down"])
                    from_cut.append(marks["rerouted"] - cut_at)
                    await controller.settle()
                    await controller.withdraw(intent.intent_id)
                    await set_link("r1", direct, True)
                    # back in service means up *and* its key rate reported again: until the
                    # next perf update the direct link has no free rate to admit on
                    deadline = time.monotonic() + 10
                    while not _direct_admissible(controller, request):
                        if time.monotonic() > deadline:
                            raise RuntimeError("the direct link did not come back")
                        await asyncio.sleep(0.005)
                return {
                    "baseline_bare_get": summary(baseline),
                    "reroute_from_notification": summary(from_notification) | {"target_ms": 500},
                    "reroute_from_cut": summary(from_cut),
                }
            finally:
                await controller.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--installs", type=int, default=30)
    parser.add_argument("--hops", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--cuts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--agents",
        choices=["subprocess", "in-process"],
        default="subprocess",
        help="host the agents in a child process (as a lab does) or in this one",
    )
    parser.add_argument(
        "--agent-processes",
        type=int,
        default=None,
        help="agents processes for the install figures (default: as `lab up`, one here)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {"agents": args.agents}
    results["decision"] = bench_decision(args.nodes, args.decisions, args.seed)
    # The 1000-node graph is garbage now: collected here, not during the next part's timing.
    gc.collect()
    results["install"] = asyncio.run(
        bench_install(args.hops, args.installs, args.agents, args.agent_processes)
    )
    gc.collect()
    results["reroute"] = asyncio.run(bench_reroute(args.cuts, args.agents))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
