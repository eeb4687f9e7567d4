"""The `outage` scenario: three application pairs in three key modes while both paths between
their nodes are cut, then restored; each pair's key origin over time, as JSON and a PNG.

Pairs (lab/topologies/triangle-outage.yaml): app1→app2 qkd-preferred, app3→app4 qkd-only,
app5→app6 hybrid-either, all from qnode1 to qnode3. The fibres qnode1–qnode3 and qnode1–qnode2
are cut (both paths), then restored. Every pair asks for one key at a steady pace (enc_keys at
its KM, dec_keys at the slave's), and every answer's `key_extension.origin` is recorded.
Expected: no failed request for the preferred and hybrid pairs, 503 with the reason for the
QKD-only pair during the outage; the switch-over is measured from the agents' link-down
notice and from the moment the master's KM saw its association fail (trace event
`keys.qkd_path`), and back from the KM seeing it admitted again after the restore.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.faults import inject
from lab.hosts import hosts_for
from lab.launcher import make_plan, running_lab
from lab.plan import LabPlan
from lab.scenarios.catalog import Scenario
from lab.timeline import read_events
from lab.topology import load_topology, topology_path

CUT = ("qnode1-qnode3", "qnode1-qnode2")
PACE_S = 0.25  # one request per pair per pace: an application asking at a steady rate


@dataclass(frozen=True)
class Sample:
    pair: str
    mode: str
    phase: str  # before, outage, after
    t_s: float  # seconds since the first request, at the answer
    t_start_s: float  # seconds since the first request, when enc_keys was sent
    status: int  # HTTP status of enc_keys (or of dec_keys when enc_keys succeeded)
    origin: str | None
    keys_match: bool | None
    enc_ms: float
    message: str = ""


@dataclass(frozen=True)
class PairSummary:
    pair: str
    mode: str
    requests: int
    failed_during_outage: int
    failed_outside_outage: int  # before the cut or after QKD was installed again
    origins_during_outage: dict[str, int]
    switch_after_notice_ms: float | None  # first key from the fallback source after the notice
    # the first request after the master's KM saw its association fail (keys.qkd_path)
    first_after_failure_origin: str | None
    back_to_qkd_after_install_ms: float | None  # from the KM seeing it admitted again
    refusal_reason: str | None


@dataclass(frozen=True)
class OutageResult:
    scenario: str
    t_cut_s: float
    t_restore_s: float
    t_link_down_notice_s: float | None
    pairs: list[PairSummary]
    samples: list[Sample] = field(default_factory=list)
    all_keys_match: bool = True
    state_dir: str = ""


def _client(plan: LabPlan, sae_id: str) -> httpx.Client:
    app = plan.app(sae_id)
    context = ssl.create_default_context(cafile=plan.credentials.ca_cert)
    context.load_cert_chain(app.cert, app.key)
    return httpx.Client(verify=context, timeout=30.0)


def _request(
    plan: LabPlan, clients: dict[str, httpx.Client], master: str, slave: str
) -> tuple[int, str | None, bool | None, float, str]:
    km_master = plan.node(plan.app(master).node).km_etsi014_url
    km_slave = plan.node(plan.app(slave).node).km_etsi014_url
    t0 = time.monotonic()
    enc = clients[master].get(f"{km_master}/api/v1/keys/{slave}/enc_keys", params={"number": 1})
    enc_ms = (time.monotonic() - t0) * 1000.0
    if enc.status_code != 200:
        return enc.status_code, None, None, enc_ms, str(enc.json().get("message", enc.text))
    entry = enc.json()["keys"][0]
    origin = (entry.get("key_extension") or {}).get("origin")
    dec = clients[slave].post(
        f"{km_slave}/api/v1/keys/{master}/dec_keys", json={"key_IDs": [{"key_ID": entry["key_ID"]}]}
    )
    if dec.status_code != 200:
        return dec.status_code, origin, None, enc_ms, str(dec.json().get("message", dec.text))
    slave_entry = dec.json()["keys"][0]
    same = base64.b64decode(entry["key"]) == base64.b64decode(slave_entry["key"])
    same = same and (slave_entry.get("key_extension") or {}).get("origin") == origin
    return 200, origin, same, enc_ms, ""


WARM_UP_S = 30.0  # bound of the warm-up: every pair served by QKD once before the clock starts
ORIGINS = {
    "qkd-only": ("qkd",),
    "qkd-preferred": ("qkd",),
    "pqc-only": ("pqc",),
}  # hybrid: "hybrid"


def _warm_up(
    plan: LabPlan,
    clients: dict[str, httpx.Client],
    pairs: Sequence[tuple[str, str]],
    modes: dict[str, str],
    say: Callable[[str], None],
) -> None:
    """Asks each pair until its key comes from QKD (or is hybrid), before the clock starts.

    A twin just started may still be running its link pools' start-up exchange: a
    qkd-preferred pair asking then gets a post-quantum key, as its mode says it should. The
    scenario is about a cut in a running network, so it starts from a warm one (bounded)."""
    deadline = time.monotonic() + WARM_UP_S
    for master, slave in pairs:
        wanted = ORIGINS.get(modes[master], ("hybrid",))
        while True:
            status, origin, _, _, message = _request(plan, clients, master, slave)
            if status == 200 and origin in wanted:
                break
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"{master}>{slave} got no {'/'.join(wanted)} key within {WARM_UP_S:.0f} s"
                    f" of the twin's start (last: {status} {origin} {message})"
                )
            time.sleep(PACE_S)
        say(f"{master}>{slave} warm ({origin})")


def run_outage(
    scenario: Scenario,
    out_dir: Path,
    state_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    hosts: str = "local",
    phase_s: tuple[float, float, float] = (4.0, 8.0, 12.0),
    end_phases_when_seen: bool = False,
) -> OutageResult:
    """Runs the scenario on a twin of its own; writes results.json and outage.png.

    `phase_s`: how long before the cut, during it and after the restore. With
    `end_phases_when_seen` they are upper bounds: a phase ends as soon as it has shown what
    it is there for (`phase_seen`), so a quick twin is not kept waiting (the tests use it;
    the CLI keeps the fixed phases its figures come from)."""
    say = progress or (lambda _msg: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    topo_file = topology_path(scenario.topology)
    topology = load_topology(topo_file)
    modes = {app.sae_id: app.key_mode or "qkd-preferred" for app in topology.apps}
    state = state_dir or Path(tempfile.mkdtemp(prefix="qkdsdn-outage-"))
    samples: list[Sample] = []
    with ExitStack() as stack:
        placed = stack.enter_context(hosts_for(hosts, state, [n.name for n in topology.nodes]))
        plan = make_plan(topology, topo_file, state, {}, hosts=placed)
        stack.enter_context(running_lab(plan, progress=lambda n: say(f"started {n}"), hosts=placed))
        say("twin ready")
        clients = {sae: _client(plan, sae) for pair in scenario.pairs for sae in pair}
        for c in clients.values():
            stack.callback(c.close)
        _warm_up(plan, clients, scenario.pairs, modes, say)
        t0 = time.monotonic()
        wall0 = time.time()
        t_cut = t_restore = 0.0
        phase = "before"
        phase_began = 0.0
        trace = Path(plan.state_dir) / "trace"

        def over(now: float) -> bool:
            """The current phase has run its time, or (when asked) has shown its part."""
            index = ("before", "outage", "after").index(phase)
            if now - phase_began >= phase_s[index]:
                return True
            if not end_phases_when_seen:
                return False
            seen = Progress(samples, t_cut if phase != "before" else None, t_restore or None)
            return phase_seen(phase, scenario.pairs, modes, seen, lambda: read_events(trace), wall0)

        while True:
            now = time.monotonic() - t0
            if phase == "before" and over(now):
                for link in CUT:
                    say(f"cut {link}: {inject(plan, 'cut', link)}")
                t_cut, phase = time.monotonic() - t0, "outage"
                phase_began = t_cut if end_phases_when_seen else phase_s[0]
            elif phase == "outage" and over(now):
                # From the first restore on: a KM may admit its path again as soon as one
                # of the links is back, before the other restore has returned.
                t_restore, phase = time.monotonic() - t0, "after"
                for link in CUT:
                    say(f"restore {link}: {inject(plan, 'restore', link)}")
                phase_began = t_restore if end_phases_when_seen else phase_s[0] + phase_s[1]
            elif phase == "after" and over(now):
                break
            tick = time.monotonic()
            for master, slave in scenario.pairs:
                started = round(time.monotonic() - t0, 3)
                status, origin, same, enc_ms, message = _request(plan, clients, master, slave)
                samples.append(
                    Sample(f"{master}>{slave}", modes[master], phase,
                           round(time.monotonic() - t0, 3), started, status, origin, same,
                           round(enc_ms, 3), message)
                )  # fmt: skip
            time.sleep(max(0.0, PACE_S - (time.monotonic() - tick)))
    events = read_events(Path(plan.state_dir) / "trace")
    result = _summarise(scenario, samples, events, wall0, t_cut, t_restore, plan.state_dir)
    (out_dir / "results.json").write_text(json.dumps(asdict(result), indent=2))
    outage_chart(result, out_dir / "outage.png")
    return result


def _rel(event: Any, wall0: float) -> float:
    return float(event.t_ms) / 1000.0 - wall0


SEEN_BEFORE = 3  # QKD keys each pair gets before the cut when phases end on what was seen
SEEN_DURING = 2  # requests of each pair after its KM saw the QKD path fail


@dataclass(frozen=True)
class Progress:
    """The run so far, for `phase_seen`: samples, and when the cut and the restore came
    (seconds since the first request; None: not yet)."""

    samples: list[Sample]
    t_cut: float | None
    t_restore: float | None


def phase_seen(
    phase: str,
    pairs: Sequence[tuple[str, str]],
    modes: Mapping[str, str],
    seen: Progress,
    events: Callable[[], list[Any]],
    wall0: float,
) -> bool:
    """Whether `phase` has shown what it is there for. before: every pair got SEEN_BEFORE
    QKD (or hybrid) keys. outage: every pair's master KM saw its QKD path fail (trace
    `keys.qkd_path`), and the pair asked SEEN_DURING times since. after: every pair that uses
    QKD got a QKD (or hybrid) key again, asked after its KM saw the path admitted again.
    `events` reads the traces; it is called only once the samples alone allow the end."""
    qkd = ("qkd", "hybrid")
    mine = {f"{m}>{s}": [x for x in seen.samples if x.pair == f"{m}>{s}"] for m, s in pairs}
    if phase == "before":
        return all(
            sum(1 for x in got if x.status == 200 and x.origin in qkd) >= SEEN_BEFORE
            for got in mine.values()
        )
    since = seen.t_restore if phase == "after" else seen.t_cut
    if since is None:
        return False
    if phase == "outage":
        if not all(
            sum(1 for x in got if x.t_start_s > since) >= SEEN_DURING for got in mine.values()
        ):
            return False
        wanted: tuple[str, ...] = ("failed", "rejected")
    else:
        if not all(
            any(x.t_start_s > since and x.status == 200 and x.origin in qkd for x in got)
            for (m, _), got in zip(pairs, mine.values(), strict=True)
            if modes.get(m) != "pqc-only"
        ):
            return False
        wanted = ("admitted",)
    found = events()
    for master, slave in pairs:
        if phase == "after" and modes.get(master) == "pqc-only":
            continue
        at = [
            _rel(e, wall0) for e in found
            if e.event == "keys.qkd_path" and e.fields.get("master") == master
            and e.fields.get("state") in wanted
            and _rel(e, wall0) >= (since - 0.5 if phase == "outage" else since)
        ]  # fmt: skip
        got = mine[f"{master}>{slave}"]
        if not at:
            return False
        if phase == "outage" and sum(1 for x in got if x.t_start_s > min(at)) < SEEN_DURING:
            return False
        if phase == "after" and not any(
            x.t_start_s > min(at) and x.status == 200 and x.origin in qkd for x in got
        ):
            return False
    return True


def _summarise(
    scenario: Scenario,
    samples: list[Sample],
    events: list[Any],
    wall0: float,
    t_cut: float,
    t_restore: float,
    state_dir: str,
) -> OutageResult:
    downs = [
        _rel(e, wall0) for e in events
        if e.event == "link.changed" and e.fields.get("status") != "ACTIVE"
        and t_cut - 0.5 <= _rel(e, wall0) < t_restore
    ]  # fmt: skip
    notice = min(downs) if downs else None
    pairs = []
    for master, slave in scenario.pairs:
        name = f"{master}>{slave}"
        mine = [s for s in samples if s.pair == name]
        failed_at = [
            _rel(e, wall0) for e in events
            if e.event == "keys.qkd_path" and e.fields.get("master") == master
            and e.fields.get("state") in ("failed", "rejected")
            and t_cut - 0.5 <= _rel(e, wall0) < t_restore
        ]  # fmt: skip
        installed = [
            _rel(e, wall0) for e in events
            if e.event == "keys.qkd_path" and e.fields.get("master") == master
            and e.fields.get("state") == "admitted" and _rel(e, wall0) >= t_restore
        ]  # fmt: skip
        during = [s for s in mine if s.phase == "outage"]
        fallback = [s for s in during if s.status == 200 and s.origin not in ("qkd", "hybrid")]
        after_fail = [s for s in mine if failed_at and s.t_start_s > min(failed_at)]
        back = [
            s
            for s in mine
            if installed and s.t_start_s > min(installed) and s.origin in ("qkd", "hybrid")
        ]
        back_at = min(installed) if installed else t_restore
        # Outside the outage: before the cut, or after QKD was installed again.
        outside = [s for s in mine if s.t_start_s < t_cut or s.t_start_s > back_at]
        refusals = [s.message for s in during if s.status != 200]
        counts: dict[str, int] = {}
        for s in during:
            key = s.origin if s.status == 200 and s.origin else f"http {s.status}"
            counts[key] = counts.get(key, 0) + 1
        pairs.append(
            PairSummary(
                pair=name,
                mode=mine[0].mode if mine else "",
                requests=len(mine),
                failed_during_outage=sum(1 for s in during if s.status != 200),
                failed_outside_outage=sum(1 for s in outside if s.status != 200),
                origins_during_outage=counts,
                switch_after_notice_ms=(
                    round((fallback[0].t_s - notice) * 1000.0, 1)
                    if fallback and notice is not None
                    else None
                ),
                first_after_failure_origin=(
                    (after_fail[0].origin or f"http {after_fail[0].status}") if after_fail else None
                ),
                back_to_qkd_after_install_ms=(
                    round((back[0].t_s - min(installed)) * 1000.0, 1) if back else None
                ),
                refusal_reason=refusals[0] if refusals else None,
            )
        )
    return OutageResult(
        scenario=scenario.name,
        t_cut_s=round(t_cut, 3),
        t_restore_s=round(t_restore, 3),
        t_link_down_notice_s=None if notice is None else round(notice, 3),
        pairs=pairs,
        samples=samples,
        all_keys_match=all(s.keys_match is not False for s in samples),
        state_dir=state_dir,
    )


COLOURS = {"qkd": "#3182bd", "pqc": "#e6550d", "hybrid": "#31a354", "local": "#969696"}


def outage_chart(result: OutageResult, path: Path) -> None:
    """One row per pair: each request at its time, coloured by the key's origin (red x: failed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [p.pair for p in result.pairs]
    fig, ax = plt.subplots(figsize=(12, 1.6 + 0.9 * len(names)))
    seen: set[str] = set()
    for y, pair in enumerate(result.pairs):
        for s in (s for s in result.samples if s.pair == pair.pair):
            label = (s.origin or "") if s.status == 200 else f"HTTP {s.status}"
            colour = COLOURS.get(s.origin or "", "#000000") if s.status == 200 else "#de2d26"
            marker = "o" if s.status == 200 else "x"
            ax.plot(s.t_s, y, marker=marker, color=colour, markersize=6, linestyle="none",
                    label=label if label not in seen else None)  # fmt: skip
            seen.add(label)
    ax.axvspan(
        result.t_cut_s, result.t_restore_s, color="#fee0d2", alpha=0.6, label="both paths cut"
    )
    if result.t_link_down_notice_s is not None:
        ax.axvline(result.t_link_down_notice_s, color="#a50f15", linestyle="--",
                   label="sdqkdn_link_down")  # fmt: skip
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{p.pair}\n{p.mode}" for p in result.pairs])
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first request")
    ax.set_title("qkd-sdn scenario 'outage': origin of each delivered key")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
