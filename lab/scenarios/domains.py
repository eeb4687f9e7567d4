"""The `domains` scenario: app-a (domain A) gets keys with app-c (domain C) across three domains,
and the same network run as one domain, one twin after the other in the same run.

The multi-domain twin is lab/topologies/three-domains.yaml; the baseline is the same file
with each border site made one trusted node (`single_domain`): the same QKD hops. Each twin
serves `rounds` requests (the first one cold: reservations and segment installs in every
domain; the later ones warm, after the master's KM has keys relayed ahead). Written to
OUT/results.json and OUT/timeline.png (docs/cross-domain.md, docs/benchmarks.md).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import networkx as nx
from rich.console import Console

from lab.launcher import make_plan, running_lab, start_with_free_ports, viewer_token
from lab.plan import LabPlan
from lab.scenarios.runner import (
    MILESTONES,
    fingerprint,
    key_request,
    median,
    sae_client,
    wait_buffer,
)
from lab.timeline import TimelineEvent, read_events
from lab.topology import Topology, load_topology, single_domain, topology_path

TOPOLOGY = "three-domains"
MASTER, SLAVE = "app-a", "app-c"
ROUNDS = 8
START_S = 240.0  # 9 KMs, 3 agents processes and 3 controllers on a busy 2-core machine
TARGET_RATIO = 2.0  # warm p50 across domains within 2x of the one-domain path
# Events of other parts than the intra-domain relay: the controllers' reservations and the
# ETSI 020 hand-offs between border KMs (named by their prefixes).
CROSS_DOMAIN_PREFIXES = (
    "relay.handed_off",  # the border KM handed the batch to the next domain's (ETSI 020)
    "interdomain.",
    "etsi020.",
    "ext_keys",
    "reservation.",
)


def shown(event: str) -> bool:
    """Whether a trace event belongs on the timeline."""
    return event in MILESTONES or event.startswith(CROSS_DOMAIN_PREFIXES)


@dataclass(frozen=True)
class KeyRequest:
    index: int
    key_id: str
    key_fingerprint: str  # SHA-256 prefix: shows equality without showing the key
    keys_match: bool
    enc_ms: float
    dec_ms: float
    events: list[dict[str, Any]]
    # enc_keys answers other than 200 before this one (each retried after 0.2 s, as an
    # application would); the timings are those of the served call
    refused_before: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TwinRun:
    twin: str  # "three domains" or "one domain"
    topology: str
    qkd_hops: int  # QKD links between app-a's and app-c's nodes
    requests: list[KeyRequest]
    first_key_ms: float
    warm_p50_ms: float
    # From the master KM's first link key for a key to its relay.done (the whole chain's
    # acknowledgement): the relay itself, whether or not the request found it buffered.
    relay_p50_ms: float
    all_keys_match: bool
    key_ids_served_twice: int
    reservations_left: dict[str, int]  # controller process -> reservations it still holds


@dataclass(frozen=True)
class DomainsResult:
    scenario: str
    pair: str
    domains: TwinRun
    single: TwinRun
    warm_ratio: float  # domains warm p50 / one-domain warm p50
    target_ratio: float
    target_met: bool
    all_keys_match: bool
    state_dir: str


def qkd_hops(topology: Topology, master: str, slave: str) -> int:
    """QKD links on the fewest-hop path between the two applications' nodes, the border
    sites counted as one trusted node each (what every domain relays, added up)."""
    flat = single_domain(topology)
    graph: nx.Graph[str] = nx.Graph()
    graph.add_edges_from((link.a, link.b) for link in flat.links)
    nodes = {app.sae_id: app.node for app in flat.apps}
    return int(nx.shortest_path_length(graph, nodes[master], nodes[slave]))


def journey(events: list[TimelineEvent], key_id: str, t0: float, t1: float) -> list[dict[str, Any]]:
    """The events of one request: those between its enc_keys call and its dec_keys answer
    (except relays and hand-offs of other keys), plus every event naming this key."""
    picked = []
    for e in events:
        if not shown(e.event):
            continue
        key_ids = e.fields.get("key_ids")
        names_keys = isinstance(key_ids, list) or "key_id" in e.fields
        mine = (isinstance(key_ids, list) and key_id in key_ids) or e.fields.get("key_id") == key_id
        if names_keys and not mine:
            continue
        if not mine and not t0 - 1.0 <= e.t_ms <= t1 + 1.0:
            continue
        fields = {k: v for k, v in e.fields.items() if k not in ("key_ids", "key_id")}
        picked.append(
            {"t_ms": round(e.t_ms - t0, 3), "source": e.source, "event": e.event, **fields}
        )
    return picked


def relay_ms(request: KeyRequest, master_km: str) -> float | None:
    """How long the relay of this request's key took, seen at the master's KM: its first
    `relay.link_key` to its `relay.done` (None when the trace lacks either)."""
    at_master = [e for e in request.events if e["source"] == master_km]
    starts = [e["t_ms"] for e in at_master if e["event"] == "relay.link_key"]
    ends = [e["t_ms"] for e in at_master if e["event"] == "relay.done"]
    if not starts or not ends or max(ends) < min(starts):
        return None
    return round(float(max(ends)) - float(min(starts)), 3)


def _reservations(plan: LabPlan) -> dict[str, int]:
    """How many reservations each domain controller still holds (GET, viewer role)."""
    held: dict[str, int] = {}
    for domain in plan.domains:
        view = plan.view(domain.name)
        token = viewer_token(view)
        try:
            reply = httpx.get(
                f"{domain.controller.url}/interdomain/reservations",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5.0,
            )
            body = reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            body = None
        items = body.get("reservations", body) if isinstance(body, dict) else body
        live = [
            r
            for r in (items if isinstance(items, list) else [])
            if isinstance(r, dict) and r.get("state") in ("reserved", "committing")
        ]
        held[domain.process] = len(live) if body is not None else -1
    return held


def run_twin(
    topology: Topology,
    topology_file: Path,
    state: Path,
    label: str,
    rounds: int,
    say: Callable[[str], None],
) -> TwinRun:
    """Starts one twin, serves `rounds` app-a → app-c requests, stops it."""
    timings = []
    reservations: dict[str, int] = {}
    with ExitStack() as stack:
        plan = _started(stack, topology, topology_file, state, label, say)
        say(f"{label}: twin ready")
        clients = {sae: sae_client(plan, sae) for sae in (MASTER, SLAVE)}
        try:
            for index in range(rounds):
                if index > 0:
                    wait_buffer(plan, clients, MASTER, SLAVE)
                answer, refused = _served(plan, clients)
                key_id, k_master, k_slave, t0, t1, _, t2 = answer
                timings.append((index, key_id, k_master, k_slave, t0, t1, t2, refused))
                say(f"{label} #{index + 1}: {t1 - t0:.1f} ms enc, {t2 - t1:.1f} ms dec")
            if plan.domains:
                reservations = _reservations(plan)
        finally:
            for client in clients.values():
                client.close()
    events = read_events(state / "trace", controllers_by_file=True)
    requests = [
        KeyRequest(
            index=index,
            key_id=key_id,
            key_fingerprint=fingerprint(k_master),
            keys_match=k_master == k_slave,
            enc_ms=round(t1 - t0, 3),
            dec_ms=round(t2 - t1, 3),
            events=journey(events, key_id, t0, t2),
            refused_before=refused,
        )
        for index, key_id, k_master, k_slave, t0, t1, t2, refused in timings
    ]
    served = Counter(r.key_id for r in requests)
    master_km = f"km:{plan.app(MASTER).node}"
    relays = [ms for r in requests if (ms := relay_ms(r, master_km)) is not None]
    return TwinRun(
        twin=label,
        topology=str(topology_file) if not plan.domains else topology.name,
        qkd_hops=qkd_hops(topology, MASTER, SLAVE),
        requests=requests,
        first_key_ms=requests[0].enc_ms if requests else 0.0,
        warm_p50_ms=median([r.enc_ms for r in requests[1:]]),
        relay_p50_ms=median(relays),
        all_keys_match=bool(requests) and all(r.keys_match for r in requests),
        key_ids_served_twice=sum(1 for count in served.values() if count > 1),
        reservations_left=reservations,
    )


RETRY_S = 60.0  # how long a request is retried while the KM refuses it (503)


def _served(
    plan: LabPlan, clients: dict[str, httpx.Client]
) -> tuple[tuple[str, bytes, bytes, float, float, float, float], list[str]]:
    """One app-a → app-c request, asked again while the master's KM refuses it (a link pool
    still resynchronising, say); returns the served request and the refusals before it."""
    refused: list[str] = []
    deadline = time.monotonic() + RETRY_S
    while True:
        try:
            return key_request(plan, clients, MASTER, SLAVE), refused
        except RuntimeError as error:
            if not str(error).startswith("enc_keys") or time.monotonic() > deadline:
                raise
            refused.append(str(error)[:200])
        time.sleep(0.2)


def _started(
    stack: ExitStack,
    topology: Topology,
    topology_file: Path,
    state: Path,
    label: str,
    say: Callable[[str], None],
    attempts: int = 3,
) -> LabPlan:
    """A running twin (stopped when `stack` closes); planned again with other ports when
    another twin on this machine took one of them before it was bound."""
    plan, _ = start_with_free_ports(
        make_plan(topology, topology_file, state),
        lambda planned: stack.enter_context(
            running_lab(planned, START_S, progress=lambda name: say(f"{label}: started {name}"))
        ),
        attempts,
        say=lambda message: say(f"{label}: {message}"),
    )
    return plan


def run_domains(
    out_dir: Path,
    state_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    rounds: int = ROUNDS,
) -> DomainsResult:
    """Both twins one after the other (never at once: they would share the cores)."""
    say = progress or (lambda _message: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = topology_path(TOPOLOGY)
    topology = load_topology(path)
    state = state_dir or Path(tempfile.mkdtemp(prefix="qkdsdn-domains-"))
    domains = run_twin(topology, path, state / "domains", "three domains", rounds, say)
    single = run_twin(single_domain(topology), path, state / "single", "one domain", rounds, say)
    ratio = domains.warm_p50_ms / single.warm_p50_ms if single.warm_p50_ms > 0 else float("inf")
    result = DomainsResult(
        scenario="domains",
        pair=f"{MASTER}>{SLAVE}",
        domains=domains,
        single=single,
        warm_ratio=round(ratio, 3),
        target_ratio=TARGET_RATIO,
        target_met=ratio <= TARGET_RATIO,
        all_keys_match=domains.all_keys_match and single.all_keys_match,
        state_dir=str(state),
    )
    (out_dir / "results.json").write_text(json.dumps(asdict(result), indent=2))
    return result


def _lane_order(events: list[dict[str, Any]]) -> list[str]:
    """Sources in the chain's order: by domain letter of the node, controllers first."""

    def key(source: str) -> tuple[str, int, str]:
        if source.startswith("controller-"):
            return (source.removeprefix("controller-").lower(), 0, source)
        name = source.split(":", 1)[-1]
        return (name[:1].lower(), 1, name)

    return sorted({e["source"] for e in events}, key=key)


def domains_chart(result: DomainsResult, path: Path) -> None:
    """The first (cold) and the warm requests across the three domains: one lane per process
    (each domain's controller and KMs), every reservation, install, relay and hand-off marked;
    a third panel compares the latencies with the one-domain twin of the same run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    requests = result.domains.requests
    everything = [e for r in requests for e in r.events]
    lanes = _lane_order(everything) or ["(no trace)"]
    names = sorted({e["event"] for e in everything})
    colours = plt.get_cmap("tab20")
    fig, axes = plt.subplots(3, 1, figsize=(13, 4 + 0.55 * len(lanes) * 2))
    panels = ((axes[0], requests[:1], "first request (cold)"), (axes[1], requests[1:], "warm"))
    for ax, shown_requests, title in panels:
        labelled: set[str] = set()
        for request in shown_requests:
            for event in request.events:
                name = event["event"]
                colour = colours(names.index(name) % 20)
                ax.plot(
                    event["t_ms"],
                    lanes.index(event["source"]),
                    marker="|" if request.index == 0 else ".",
                    markersize=14 if request.index == 0 else 7,
                    color=colour,
                    label=name if name not in labelled else None,
                    alpha=1.0 if request.index == 0 else 0.6,
                )
                labelled.add(name)
            ax.axvspan(0, request.enc_ms, color="#9ecae1", alpha=0.15)
        ax.set_yticks(range(len(lanes)))
        ax.set_yticklabels(lanes, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("ms since the enc_keys call (shaded: until enc_keys answered)")
        ax.set_title(f"{result.pair} across domains A – B – C: {title}")
        if labelled:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax = axes[2]
    for run in (result.domains, result.single):
        xs = [r.index + 1 for r in run.requests]
        ax.plot(xs, [r.enc_ms for r in run.requests], marker="o", label=run.twin)
    ax.set_yscale("log")
    ax.set_xlabel("request")
    ax.set_ylabel("enc_keys ms")
    ax.set_title(
        f"first key {result.domains.first_key_ms:.0f} vs {result.single.first_key_ms:.0f} ms; "
        f"warm p50 {result.domains.warm_p50_ms:.1f} vs {result.single.warm_p50_ms:.1f} ms "
        f"(×{result.warm_ratio:.2f}, target ≤ ×{result.target_ratio:g}); relay p50 "
        f"{result.domains.relay_p50_ms:.0f} vs {result.single.relay_p50_ms:.0f} ms; "
        f"{result.domains.qkd_hops} QKD hops either way"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def domains_command(
    out_dir: Path, state_dir: Path | None, console: Console, rounds: int | None = None
) -> int:
    """`qkdsdn lab run --scenario domains`: runs both twins, prints the figures, draws the chart."""
    with console.status("starting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        result = run_domains(out_dir, state_dir, progress, rounds or ROUNDS)
    chart = out_dir / "timeline.png"
    domains_chart(result, chart)
    for run in (result.domains, result.single):
        console.print(
            f"{run.twin}: {len(run.requests)} requests, first key {run.first_key_ms:.1f} ms, "
            f"warm p50 {run.warm_p50_ms:.1f} ms, relay p50 {run.relay_p50_ms:.1f} ms, "
            f"keys equal: {run.all_keys_match}, "
            f"refused then served: {sum(len(r.refused_before) for r in run.requests)}, "
            f"key_IDs served twice: {run.key_ids_served_twice}"
            + (f", reservations left {run.reservations_left}" if run.reservations_left else "")
        )
    verdict = "met" if result.target_met else "NOT met"
    console.print(
        f"warm p50 ratio {result.warm_ratio:.2f} (target ≤ {result.target_ratio:g}): {verdict}"
    )
    console.print(f"results: {out_dir / 'results.json'}, chart: {chart}")
    return 0 if result.all_keys_match and result.domains.key_ids_served_twice == 0 else 1
