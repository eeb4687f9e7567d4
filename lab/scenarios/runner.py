"""Runs a scenario on a fresh twin: applications get keys over ETSI 014, a timeline is kept.

The applications here are plain HTTPS clients with their lab certificates, as a real SAE
(strongSwan, an OpenSSL provider) would be: the master calls `enc_keys` at its own key
manager, the slave calls `dec_keys` at its own with the key_ID it was given.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from lab.hosts import hosts_for
from lab.launcher import make_plan, running_lab
from lab.plan import LabPlan
from lab.scenarios.catalog import Scenario
from lab.timeline import TimelineEvent, read_events
from lab.topology import Topology, load_topology, topology_path

# Trace events shown in the timeline, in the order of a key's journey.
MILESTONES = (
    "enc_keys.received",
    "association.requested",
    "app.registered",
    "intent.rejected",
    "intent.rerouted",
    "intent.installed",
    "association.admitted",
    "relay.link_key",
    "relay.hop.received",
    "relay.stored",
    "relay.done",
    "relay.served",
    "enc_keys.sent",
    "dec_keys.received",
    "dec_keys.sent",
)


@dataclass(frozen=True)
class RequestResult:
    pair: str
    index: int
    key_id: str
    key_fingerprint: str  # SHA-256 prefix of the key: shows equality without showing the key
    keys_match: bool
    enc_ms: float
    dec_ms: float
    from_buffer: bool | None
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    topology: str
    pairs: list[str]
    forced_paths: dict[str, list[str]]
    requests: list[RequestResult]
    all_keys_match: bool
    first_request_ms: float
    later_requests_p50_ms: float
    state_dir: str


def _client(plan: LabPlan, sae_id: str) -> httpx.Client:
    app = plan.app(sae_id)
    # The KM's certificate comes from the CA of the application's domain.
    context = ssl.create_default_context(cafile=plan.view_of_node(app.node).credentials.ca_cert)
    context.load_cert_chain(app.cert, app.key)
    return httpx.Client(verify=context, timeout=30.0)


def _pairs(scenario: Scenario, topology: Topology) -> tuple[tuple[str, str], ...]:
    if scenario.pairs:
        return scenario.pairs
    apps = [app.sae_id for app in topology.apps]
    return tuple((apps[i], apps[i + 1]) for i in range(0, len(apps) - 1, 2))


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _one_request(
    plan: LabPlan, clients: dict[str, httpx.Client], master: str, slave: str
) -> tuple[str, bytes, bytes, float, float, float, float]:
    """enc_keys at the master's KM, then dec_keys at the slave's KM; returns times in ms."""
    km_master = plan.node(plan.app(master).node).km_etsi014_url
    km_slave = plan.node(plan.app(slave).node).km_etsi014_url
    t0 = time.time() * 1000.0
    enc = clients[master].get(
        f"{km_master}/api/v1/keys/{slave}/enc_keys",
        params={"number": 1, "size": plan.settings.key_size_bits},
    )
    t1 = time.time() * 1000.0
    if enc.status_code != 200:
        raise RuntimeError(f"enc_keys for {master}→{slave}: HTTP {enc.status_code} {enc.text}")
    entry = enc.json()["keys"][0]
    key_id = str(entry["key_ID"])
    dec = clients[slave].post(
        f"{km_slave}/api/v1/keys/{master}/dec_keys", json={"key_IDs": [{"key_ID": key_id}]}
    )
    t2 = time.time() * 1000.0
    if dec.status_code != 200:
        raise RuntimeError(f"dec_keys for {slave}←{master}: HTTP {dec.status_code} {dec.text}")
    master_key = base64.b64decode(entry["key"])
    slave_key = base64.b64decode(dec.json()["keys"][0]["key"])
    return key_id, master_key, slave_key, t0, t1, t1, t2


def _wait_buffer(
    plan: LabPlan, clients: dict[str, httpx.Client], master: str, slave: str, timeout: float = 10.0
) -> int:
    """Waits (bounded) until the master's KM reports keys relayed ahead, as an application
    asking for keys at intervals would find them; returns the stored_key_count seen."""
    url = f"{plan.node(plan.app(master).node).km_etsi014_url}/api/v1/keys/{slave}/status"
    deadline = time.monotonic() + timeout
    while True:
        count = int(clients[master].get(url).json().get("stored_key_count", 0))
        if count > 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def _journey(
    events: list[TimelineEvent], key_id: str, t0: float, t1: float
) -> list[dict[str, Any]]:
    """The events of one request: what happened between its enc_keys call and its dec_keys
    answer, except relays of other keys (buffer refills running beside it), plus the relay of
    this very key wherever it falls (before t0, negative times, when it was relayed ahead)."""
    picked = []
    for e in events:
        if e.event not in MILESTONES:
            continue
        key_ids = e.fields.get("key_ids")
        if e.event.startswith("relay.") and isinstance(key_ids, list):
            if key_id not in key_ids:
                continue
        elif not t0 - 1.0 <= e.t_ms <= t1 + 1.0:
            continue
        fields = {k: v for k, v in e.fields.items() if k != "key_ids"}
        picked.append(
            {"t_ms": round(e.t_ms - t0, 3), "source": e.source, "event": e.event, **fields}
        )
    return picked


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_scenario(
    scenario: Scenario,
    out_dir: Path,
    state_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    requests: int | None = None,
    hosts: str = "local",
) -> ScenarioResult:
    """Starts the twin (on this host's loopback, or with `hosts="netns"` each node in its own
    network namespace), runs the requests, stops the twin; writes results.json into out_dir."""
    say = progress or (lambda _msg: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    topo_file = topology_path(scenario.topology)
    topology = load_topology(topo_file)
    state = state_dir or Path(tempfile.mkdtemp(prefix=f"qkdsdn-{scenario.name}-"))
    say(f"planning {topology.name}: {len(topology.nodes)} nodes, {len(topology.links)} links")
    pairs = _pairs(scenario, topology)
    rounds = requests or scenario.requests
    timings: list[tuple[str, int, str, bytes, bytes, float, float, float, float]] = []
    with ExitStack() as stack:  # the twin stops first, then its namespaces (if any) go
        placed = stack.enter_context(
            hosts_for(
                hosts, state, [n.name for n in topology.nodes], [d.name for d in topology.domains]
            )
        )
        plan = make_plan(topology, topo_file, state, scenario.forced_paths, hosts=placed)
        stack.enter_context(
            running_lab(plan, progress=lambda name: say(f"started {name}"), hosts=placed)
        )
        say("twin ready")
        clients = {sae: _client(plan, sae) for pair in pairs for sae in pair}
        try:
            for index in range(rounds):
                for master, slave in pairs:
                    if index > 0:
                        _wait_buffer(plan, clients, master, slave)
                    key_id, k_master, k_slave, t0, t1, t1b, t2 = _one_request(
                        plan, clients, master, slave
                    )
                    timings.append(
                        (f"{master}>{slave}", index, key_id, k_master, k_slave, t0, t1, t1b, t2)
                    )
                    say(
                        f"{master}→{slave} #{index + 1}: {t1 - t0:.1f} ms enc, {t2 - t1b:.1f} ms dec"
                    )
        finally:
            for client in clients.values():
                client.close()
    events = read_events(Path(plan.state_dir) / "trace")
    results = []
    for pair, index, key_id, k_master, k_slave, t0, t1, t1b, t2 in timings:
        window = _journey(events, key_id, t0, t2)
        sent = [e for e in window if e["event"] == "relay.served" and e["t_ms"] >= -1.0]
        from_buffer = bool(sent[0].get("from_buffer")) if sent else None
        results.append(
            RequestResult(
                pair=pair,
                index=index,
                key_id=key_id,
                key_fingerprint=_fingerprint(k_master),
                keys_match=k_master == k_slave,
                enc_ms=round(t1 - t0, 3),
                dec_ms=round(t2 - t1b, 3),
                from_buffer=from_buffer,
                events=window,
            )
        )
    firsts = [r.enc_ms for r in results if r.index == 0]
    laters = [r.enc_ms for r in results if r.index > 0]
    result = ScenarioResult(
        scenario=scenario.name,
        topology=str(topo_file),
        pairs=[f"{m}>{s}" for m, s in pairs],
        forced_paths={k: list(v) for k, v in scenario.forced_paths.items()},
        requests=results,
        all_keys_match=bool(results) and all(r.keys_match for r in results),
        first_request_ms=max(firsts) if firsts else 0.0,
        later_requests_p50_ms=_median(laters),
        state_dir=plan.state_dir,
    )
    (out_dir / "results.json").write_text(json.dumps(asdict(result), indent=2))
    return result


# The building blocks the other scenarios share (lab/scenarios/domains.py).
sae_client = _client
key_request = _one_request
wait_buffer = _wait_buffer
median = _median
fingerprint = _fingerprint
