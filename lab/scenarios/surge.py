"""The surge scenario: Poisson key requests on a metro twin while a spur loses 90 % of its key
rate and a second application starts consuming hard, run under static and under data-driven
control in the same run; per pair: 014 requests failed, key response delay, keys delivered.

Key response delay is counted from the moment the application wanted the key (its Poisson
arrival) to the enc_keys answer, so waiting for a busy client counts too; a request fails
when enc_keys or dec_keys does not answer 200 within `timeout_s`, or the keys differ, or
the application's own requests waited `timeout_s` for one of its `workers_per_pair`
connections ("client backlog": the pair asks faster than its keys come).
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agents.emulator.physics import link_rate
from lab import faults
from lab.launcher import LabError, make_plan, running_lab, viewer_token
from lab.plan import LabPlan
from lab.topology import LinkSpec, Topology, load_topology, topology_path

MODES = ("static", "data-driven")


@dataclass(frozen=True)
class PairLoad:
    """One application pair's Poisson key requests."""

    master: str
    slave: str
    rate_per_s: float  # mean requests per second
    keys_per_request: int
    start_s: float = 0.0
    priority: int = 0  # the operator's priority for the master and slave SAEs (steering)

    @property
    def pair(self) -> str:
        return f"{self.master}>{self.slave}"


@dataclass(frozen=True)
class SurgeSettings:
    topology: str = "metro-surge"
    duration_s: float = 100.0
    drop_link: str = "getafe-almagro"
    drop_at_s: float = 20.0
    drop_factor: float = 10.0
    surge_at_s: float = 40.0
    timeout_s: float = 15.0
    workers_per_pair: int = 6
    seed: int = 2026
    # Start the data-driven run's twin while the static run's traffic flows (the tests: it
    # saves a twin start; the static controller steers nothing whatever the load). Off for
    # the figures: the second twin's start would load the machine under the static run.
    overlap_starts: bool = False
    loads: tuple[PairLoad, ...] = (
        PairLoad("hospital-a", "hospital-b", 2.0, 16, 0.0, priority=10),
        PairLoad("bank-hq", "bank-dc", 1.0, 8, 0.0, priority=5),
        PairLoad("office-central", "campus-upm", 2.0, 64, 40.0, priority=0),
    )

    def __post_init__(self) -> None:
        if not 0 < self.drop_at_s < self.duration_s or not 0 < self.surge_at_s < self.duration_s:
            raise ValueError("surge: the drop and the surge must fall within the run")
        if self.drop_factor <= 1:
            raise ValueError(f"surge: drop_factor must be above 1, got {self.drop_factor}")


@dataclass(frozen=True)
class Outcome:
    """One request as its application saw it (no key material)."""

    pair: str
    at_s: float  # when the application wanted the keys (from the start of the traffic)
    delay_ms: float  # until enc_keys answered (or failed)
    ok: bool
    status: str  # "ok", or why it failed ("enc_keys 503", "timeout", ...)
    keys: int


@dataclass(frozen=True)
class PairSummary:
    pair: str
    priority: int
    requests: int
    failed: int
    p50_ms: float
    p99_ms: float
    keys_delivered: int
    failures: dict[str, int]


@dataclass(frozen=True)
class ModeResult:
    mode: str
    pairs: list[PairSummary]
    outcomes: list[Outcome]
    drop: str  # what the SKR drop did, as the agents reported it
    events: list[dict[str, Any]]  # the controller's alarms and decisions (its live view)
    t0: float  # UNIX time of the traffic start


@dataclass(frozen=True)
class SurgeResult:
    settings: dict[str, Any]
    runs: list[ModeResult] = field(default_factory=list)


# ------------------------------------------------------------------ pure parts


def arrivals(rate_per_s: float, start_s: float, end_s: float, rng: random.Random) -> list[float]:
    """Poisson arrival times in [start_s, end_s)."""
    if rate_per_s <= 0:
        return []
    times: list[float] = []
    t = start_s
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= end_s:
            return times
        times.append(t)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summarise(outcomes: Sequence[Outcome], loads: Sequence[PairLoad]) -> list[PairSummary]:
    """Per pair: requests, failures (by reason), delay p50/p99 of the answered ones, keys."""
    summaries = []
    for load in loads:
        mine = [o for o in outcomes if o.pair == load.pair]
        answered = [o.delay_ms for o in mine if o.ok]
        failures: dict[str, int] = {}
        for o in mine:
            if not o.ok:
                failures[o.status] = failures.get(o.status, 0) + 1
        summaries.append(
            PairSummary(
                load.pair,
                load.priority,
                len(mine),
                sum(failures.values()),
                round(percentile(answered, 50), 1),
                round(percentile(answered, 99), 1),
                sum(o.keys for o in mine if o.ok),
                failures,
            )
        )
    return summaries


def eavesdrop_fraction(link: LinkSpec, factor: float) -> float:
    """The intercepted share that divides the link's key rate by `factor` (bisection on the
    agents' own rate model), below the share at which the link aborts."""
    base = link_rate(link.preset, link.length_km, link.extra_loss_db, 0.0, link.skr_bps, link.qber)
    target = base.skr_bps / factor
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        rate = link_rate(
            link.preset, link.length_km, link.extra_loss_db, mid, link.skr_bps, link.qber
        )
        if rate.aborted or rate.skr_bps < target:
            high = mid
        else:
            low = mid
    return low


def priorities_of(loads: Sequence[PairLoad]) -> dict[str, int]:
    found: dict[str, int] = {}
    for load in loads:
        for sae in (load.master, load.slave):
            found[sae] = max(found.get(sae, 0), load.priority)
    return found


# ------------------------------------------------------------------ the twin


def _topology_link(topology: Topology, name: str) -> LinkSpec:
    a, _, b = name.partition("-")
    for link in topology.links:
        if {link.a, link.b} == {a, b}:
            return link
    raise ValueError(f"surge: no link {name!r} in {topology.name}")


@contextmanager
def controller_mode(mode: str, loads: Sequence[PairLoad]) -> Iterator[None]:
    """The controller of the next twin runs with this steering mode (controller.yaml's
    `steering`, set through the QKDSDN_STEERING__* environment the lab passes on)."""
    if mode not in MODES:
        raise ValueError(f"unknown control mode {mode!r}; known: {', '.join(MODES)}")
    wanted = {
        "QKDSDN_STEERING__MODE": mode,
        "QKDSDN_STEERING__PRIORITIES": json.dumps(priorities_of(loads)),
    }
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _client(plan: LabPlan, sae_id: str, timeout_s: float) -> httpx.Client:
    app = plan.app(sae_id)
    context = ssl.create_default_context(cafile=plan.credentials.ca_cert)
    context.load_cert_chain(app.cert, app.key)
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    return httpx.Client(verify=context, timeout=timeout_s, limits=limits)


def _request(
    plan: LabPlan,
    clients: Mapping[str, httpx.Client],
    load: PairLoad,
    wanted_at: float,
    at_s: float,
    size_bits: int,
) -> Outcome:
    master_km = plan.node(plan.app(load.master).node).km_etsi014_url
    slave_km = plan.node(plan.app(load.slave).node).km_etsi014_url

    def failed(status: str) -> Outcome:
        return Outcome(load.pair, at_s, (time.time() - wanted_at) * 1000.0, False, status, 0)

    try:
        enc = clients[load.master].get(
            f"{master_km}/api/v1/keys/{load.slave}/enc_keys",
            params={"number": load.keys_per_request, "size": size_bits},
        )
        delay_ms = (time.time() - wanted_at) * 1000.0
        if enc.status_code != 200:
            return failed(f"enc_keys {enc.status_code}: {_reason(enc)}")
        keys = enc.json()["keys"]
        dec = clients[load.slave].post(
            f"{slave_km}/api/v1/keys/{load.master}/dec_keys",
            json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]},
        )
        if dec.status_code != 200:
            return failed(f"dec_keys {dec.status_code}: {_reason(dec)}")
        got = {k["key_ID"]: base64.b64decode(k["key"]) for k in dec.json()["keys"]}
        if any(got.get(k["key_ID"]) != base64.b64decode(k["key"]) for k in keys):
            return failed("keys differ")
    except httpx.TimeoutException:
        return failed("timeout")
    except httpx.HTTPError as error:
        return failed(type(error).__name__)
    return Outcome(load.pair, at_s, round(delay_ms, 3), True, "ok", len(keys))


def _reason(reply: httpx.Response) -> str:
    """The ETSI error message, with numbers and ids blanked so that alike failures group."""
    try:
        message = str(reply.json().get("message", ""))
    except ValueError:
        message = reply.text
    return re.sub(r"[0-9a-f-]{8,}|\d+", "#", message)[:90]


def _live_events(plan: LabPlan) -> list[dict[str, Any]]:
    """The controller's recent alarms and decisions (its live view's log)."""
    try:
        token = viewer_token(plan)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        frame = httpx.get(f"{plan.controller.url}/live/state", headers=headers, timeout=10.0).json()
    except (httpx.HTTPError, ValueError):
        return []
    return list(frame.get("feed", []))


@contextmanager
def mode_twin(
    mode: str, settings: SurgeSettings, state_dir: Path, say: Callable[[str], None]
) -> Iterator[LabPlan]:
    """A fresh twin whose controller runs under `mode` control (its processes read the mode
    from the environment as they start: it is set only while they do)."""
    topo_file = topology_path(settings.topology)
    with ExitStack() as stack:
        with controller_mode(mode, settings.loads):
            plan = stack.enter_context(
                _twin(load_topology(topo_file), topo_file, state_dir, mode, say)
            )
        yield plan


def run_mode(
    mode: str,
    settings: SurgeSettings,
    state_dir: Path,
    say: Callable[[str], None],
    plan: LabPlan | None = None,
) -> ModeResult:
    """One run on a fresh twin under `mode` control (`plan`: one started by `mode_twin`,
    which the caller stops; None: started and stopped here)."""
    topology = load_topology(topology_path(settings.topology))
    drop_link = _topology_link(topology, settings.drop_link)
    fraction = eavesdrop_fraction(drop_link, settings.drop_factor)
    rng = random.Random(settings.seed)  # the same requests in both modes
    schedule = sorted(
        (t, load)
        for load in settings.loads
        for t in arrivals(load.rate_per_s, load.start_s, settings.duration_s, rng)
    )
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    drop = ""
    with ExitStack() as stack:
        if plan is None:
            plan = stack.enter_context(mode_twin(mode, settings, state_dir, say))
        clients = {
            sae: _client(plan, sae, settings.timeout_s)
            for load in settings.loads
            for sae in (load.master, load.slave)
        }
        pools = {
            load.pair: ThreadPoolExecutor(settings.workers_per_pair) for load in settings.loads
        }
        for pool in pools.values():
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        try:
            say(f"{mode}: twin ready: {len(schedule)} requests over {settings.duration_s:.0f} s")
            t0 = time.time()
            futures: list[Future[None]] = []
            dropped = False
            for at, load in schedule:
                if not dropped and at >= settings.drop_at_s:
                    _sleep_until(t0 + settings.drop_at_s)
                    drop = faults.inject(plan, "eavesdrop", settings.drop_link, fraction)
                    say(f"{mode}: SKR of {settings.drop_link} / {settings.drop_factor:g}: {drop}")
                    dropped = True
                _sleep_until(t0 + at)

                def one(load: PairLoad = load, at: float = at) -> None:
                    wanted = t0 + at
                    if time.time() - wanted > settings.timeout_s:  # gave up before asking
                        waited = (time.time() - wanted) * 1000.0
                        outcome = Outcome(load.pair, at, waited, False, "client backlog", 0)
                    else:
                        outcome = _request(
                            plan, clients, load, wanted, at, plan.settings.key_size_bits
                        )
                    with lock:
                        outcomes.append(outcome)

                futures.append(pools[load.pair].submit(one))
            for future in futures:
                future.result()
            events = _live_events(plan)
        finally:
            for client in clients.values():
                client.close()
    outcomes.sort(key=lambda o: (o.at_s, o.pair))
    summary = summarise(outcomes, settings.loads)
    for s in summary:
        say(
            f"{mode}: {s.pair}: {s.requests} requests, {s.failed} failed, "
            f"p50 {s.p50_ms:.0f} ms, p99 {s.p99_ms:.0f} ms, {s.keys_delivered} keys"
        )
    return ModeResult(mode, summary, outcomes, drop, events, t0)


@contextmanager
def _twin(
    topology: Topology, topo_file: Path, state_dir: Path, mode: str, say: Callable[[str], None]
) -> Iterator[LabPlan]:
    """A running twin; on a busy machine another program may take a port between planning
    and binding, so a failed start is planned again with fresh ports (three tries)."""
    for attempt in range(1, 4):
        plan = make_plan(topology, topo_file, state_dir / f"try{attempt}")
        try:
            lab = running_lab(plan, progress=lambda name: say(f"{mode}: started {name}"))
            lab.__enter__()
        except LabError as error:
            if attempt == 3:
                raise
            say(f"{mode}: the twin did not start ({str(error).splitlines()[0]}); again")
            continue
        try:
            yield plan
        finally:
            lab.__exit__(None, None, None)
        return


def _sleep_until(when: float) -> None:
    left = when - time.time()
    if left > 0:
        time.sleep(left)


def run_surge(
    out_dir: Path,
    state_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    settings: SurgeSettings | None = None,
) -> SurgeResult:
    """Both runs (static, then data-driven); writes surge.json and surge.png into out_dir."""
    say = progress or (lambda _msg: None)
    chosen = settings or SurgeSettings()
    out_dir.mkdir(parents=True, exist_ok=True)
    base = state_dir or Path(tempfile.mkdtemp(prefix="qkdsdn-surge-"))
    result = SurgeResult(asdict(chosen))
    if chosen.overlap_starts:
        result.runs.extend(_overlapped_runs(chosen, base, say))
    else:
        for mode in MODES:
            result.runs.append(run_mode(mode, chosen, base / mode, say))
    (out_dir / "surge.json").write_text(json.dumps(asdict(result), indent=2))
    surge_chart(result, chosen, out_dir / "surge.png")
    return result


def _overlapped_runs(
    settings: SurgeSettings, base: Path, say: Callable[[str], None]
) -> list[ModeResult]:
    """Both runs, the data-driven twin starting (in a thread) once the static one is up,
    while the static traffic flows; each twin stops as soon as its run is over."""
    first, second = MODES
    with ExitStack() as later, ThreadPoolExecutor(1) as starter:
        with mode_twin(first, settings, base / first, say) as plan:
            starting = starter.submit(
                later.enter_context, mode_twin(second, settings, base / second, say)
            )
            runs = [run_mode(first, settings, base / first, say, plan)]
        runs.append(run_mode(second, settings, base / second, say, starting.result()))
    return runs


# ------------------------------------------------------------------ the chart


def surge_chart(result: SurgeResult, settings: SurgeSettings, path: Path) -> None:
    """Both timelines, one above the other: each request's key response delay by pair (a
    cross where it failed), the SKR drop and the surge, and the controller's steering moves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#c62828", "#1565c0", "#8e8e8e", "#2e7d32", "#6a1b9a"]
    figure, axes = plt.subplots(
        len(result.runs), 1, figsize=(11, 3.6 * len(result.runs)), sharex=True
    )
    axes_list = list(axes) if len(result.runs) > 1 else [axes]
    ceiling = settings.timeout_s * 1000.0 * 1.3
    for ax, run in zip(axes_list, result.runs, strict=True):
        for colour, load in zip(colours, settings.loads, strict=False):
            mine = [o for o in run.outcomes if o.pair == load.pair]
            ok = [o for o in mine if o.ok]
            bad = [o for o in mine if not o.ok]
            summary = next(s for s in run.pairs if s.pair == load.pair)
            label = (
                f"{load.pair} (prio {load.priority}): {summary.failed}/{summary.requests} failed, "
                + (
                    f"p99 {summary.p99_ms:.0f} ms"
                    if summary.failed < summary.requests
                    else "none answered"
                )
            )
            ax.scatter(
                [o.at_s for o in ok],
                [max(o.delay_ms, 1.0) for o in ok],
                s=6,
                color=colour,
                label=label,
            )
            ax.scatter([o.at_s for o in bad], [ceiling] * len(bad), s=18, marker="x", color=colour)
        ax.axvline(settings.drop_at_s, color="black", linestyle="--", linewidth=1)
        ax.axvline(settings.surge_at_s, color="black", linestyle=":", linewidth=1)
        ax.text(
            settings.drop_at_s,
            ceiling * 1.6,
            f" {settings.drop_link} SKR ÷{settings.drop_factor:g}",
            fontsize=8,
        )
        ax.text(settings.surge_at_s, ceiling * 0.5, " campus surge", fontsize=8)
        for event in run.events:
            if event.get("kind") == "steering":
                ax.axvline(float(event["at"]) - run.t0, color="#6a1b9a", alpha=0.35, linewidth=1)
        ax.set_yscale("log")
        ax.set_ylim(1.0, ceiling * 3)
        ax.set_ylabel("key response delay (ms)")
        ax.set_title(
            f"{run.mode} control (× failed request; purple lines: steering moves)", fontsize=10
        )
        ax.legend(loc="lower left", fontsize=8)
    axes_list[-1].set_xlabel("seconds since the traffic started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def surge_command(out_dir: Path, state_dir: Path | None, console: Any) -> int:
    """`qkdsdn lab run --scenario surge`: both runs, a table per pair, the files written."""
    from rich.table import Table

    with console.status("starting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        result = run_surge(out_dir, state_dir, progress)
    table = Table(title="surge: static vs data-driven control (same requests, same run)")
    for column in ("pair", "prio", "control", "requests", "failed", "p50 ms", "p99 ms", "keys"):
        table.add_column(column, justify="left" if column in ("pair", "control") else "right")
    for index in range(len(result.runs[0].pairs)):
        for run in result.runs:
            s = run.pairs[index]
            table.add_row(
                s.pair, str(s.priority), run.mode, str(s.requests), str(s.failed),
                f"{s.p50_ms:.0f}", f"{s.p99_ms:.0f}", str(s.keys_delivered),
            )  # fmt: skip
    console.print(table)
    console.print(f"results: {out_dir / 'surge.json'}, chart: {out_dir / 'surge.png'}")
    return 0
