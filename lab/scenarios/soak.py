"""The soak: steady key traffic on a twin while links are cut and processes die, then the counts.

The schedule of faults is a pure function of a seed; so is the counting, from what the
applications saw and what the processes traced. What must stay zero: keys delivered twice,
keys that differ between the two ends, keys acknowledged to the master and never retrievable
by the slave, and link-key indices used twice.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lab import faults, launcher
from lab.plan import LabPlan
from lab.timeline import TimelineEvent, read_events

ACTIONS = ("cut", "kill-km", "term-km", "kill-agents", "kill-controller")
RESTORE_AFTER_S = (3.0, 8.0)  # a cut link comes back after this long (uniform)
DEC_RETRY_S = 30.0  # how long the slave keeps asking for an acknowledged key at the end


@dataclass(frozen=True)
class ChaosAction:
    at_s: float  # seconds after the traffic started
    kind: str  # "cut", "restore", "kill-km", "term-km", "kill-agents", "kill-controller"
    target: str  # a link "A-B", a node name, or the process name


def chaos_schedule(
    seed: int,
    duration_s: float,
    interval_s: float,
    links: Sequence[str],
    nodes: Sequence[str],
    kinds: Sequence[str] = ACTIONS,
) -> list[ChaosAction]:
    """One fault every `interval_s` (jittered), each cut restored a few seconds later, all
    within `duration_s`; the same seed gives the same schedule."""
    if interval_s <= 0 or duration_s <= 0:
        raise ValueError("the soak needs a positive duration and fault interval")
    unknown = set(kinds) - set(ACTIONS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(ACTIONS)}")
    rng = random.Random(seed)
    actions: list[ChaosAction] = []
    at = interval_s
    cut_until: dict[str, float] = {}
    while at < duration_s - RESTORE_AFTER_S[1]:
        kind = rng.choice(list(kinds))
        if kind == "cut" and links:
            free = [link for link in links if cut_until.get(link, -1.0) < at]
            if free:
                link = rng.choice(free)
                back = at + rng.uniform(*RESTORE_AFTER_S)
                cut_until[link] = back
                actions += [ChaosAction(at, "cut", link), ChaosAction(back, "restore", link)]
        elif kind in ("kill-km", "term-km") and nodes:
            actions.append(ChaosAction(at, kind, rng.choice(list(nodes))))
        elif kind == "kill-agents":
            actions.append(ChaosAction(at, kind, "agents"))
        elif kind == "kill-controller":
            actions.append(ChaosAction(at, kind, "controller"))
        at += interval_s * rng.uniform(0.75, 1.25)
    return sorted(actions, key=lambda a: a.at_s)


@dataclass(frozen=True)
class RequestRecord:
    """One enc_keys/dec_keys round as the two applications saw it (fingerprints, no keys)."""

    pair: str
    outcome: str  # "ok", or why the round failed ("enc_keys 503", "dec_keys 404", ...)
    key_id: str = ""
    master_fp: str = ""
    slave_fp: str = ""
    second_dec_status: int = 0  # a second dec_keys of the same key_ID: must be refused


@dataclass(frozen=True)
class SoakCounts:
    requests: int
    outcomes: dict[str, int]
    delivered_twice: int
    mismatches: int
    lost_after_ack: int
    link_key_reuse: int
    faults: dict[str, int] = field(default_factory=dict)
    # restarts the supervisor made during the run, by process name (from pids.json)
    restarts: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (
            self.delivered_twice or self.mismatches or self.lost_after_ack or self.link_key_reuse
        )


def link_key_reuse(events: Iterable[TimelineEvent]) -> int:
    """Link-key indices used more than once by the same end of a link, from the traces."""
    uses = Counter(
        (
            e.source,
            str(e.fields.get("qkdl_id")),
            str(e.fields.get("role")),
            int(index),
        )
        for e in events
        if e.event == "link_key.used"
        for index in _indices(e.fields)
    )
    return sum(count - 1 for count in uses.values() if count > 1)


def _indices(fields: dict[str, object]) -> list[int]:
    if "indices" in fields and isinstance(fields["indices"], list):
        return [int(i) for i in fields["indices"]]
    if "index" in fields:
        return [int(str(fields["index"]))]
    return []


def restarts_between(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Restarts per process between two readings of the supervisor's counts (only those > 0)."""
    return {
        name: n - before.get(name, 0)
        for name, n in sorted(after.items())
        if n > before.get(name, 0)
    }


def count(
    records: Sequence[RequestRecord],
    events: Iterable[TimelineEvent],
    faults_done: Sequence[ChaosAction] = (),
    restarts: Mapping[str, int] | None = None,
) -> SoakCounts:
    outcomes = Counter(r.outcome for r in records)
    served = [r for r in records if r.outcome == "ok"]
    by_key = Counter(r.master_fp for r in served)
    twice = sum(1 for r in served if r.second_dec_status == 200)
    twice += sum(n - 1 for n in by_key.values() if n > 1)  # one key under two key_IDs
    return SoakCounts(
        requests=len(records),
        outcomes=dict(outcomes),
        delivered_twice=twice,
        mismatches=sum(1 for r in served if r.master_fp != r.slave_fp),
        lost_after_ack=outcomes.get("acknowledged, never retrievable", 0),
        link_key_reuse=link_key_reuse(events),
        faults=dict(Counter(a.kind for a in faults_done)),
        restarts=dict(restarts or {}),
    )


# ---------------------------------------------------------------- the run (I/O)


def _fingerprint(material: str) -> str:
    return hashlib.sha256(base64.b64decode(material)).hexdigest()[:16]


class _Apps:
    """The applications of the soak: plain HTTPS clients with their lab certificates."""

    def __init__(self, plan: LabPlan, saes: Iterable[str]) -> None:
        self.plan = plan
        self.clients: dict[str, httpx.Client] = {}
        for sae in saes:
            app = plan.app(sae)
            context = ssl.create_default_context(cafile=plan.credentials.ca_cert)
            context.load_cert_chain(app.cert, app.key)
            self.clients[sae] = httpx.Client(verify=context, timeout=10.0)

    def url(self, sae: str) -> str:
        return self.plan.node(self.plan.app(sae).node).km_etsi014_url

    def enc(self, master: str, slave: str) -> tuple[str, str, str]:
        """(outcome, key_ID, fingerprint)."""
        try:
            reply = self.clients[master].get(f"{self.url(master)}/api/v1/keys/{slave}/enc_keys")
        except httpx.HTTPError as error:
            return f"enc_keys {type(error).__name__}", "", ""
        if reply.status_code != 200:
            return f"enc_keys {reply.status_code}", "", ""
        entry = reply.json()["keys"][0]
        return "ok", str(entry["key_ID"]), _fingerprint(entry["key"])

    def dec(self, slave: str, master: str, key_id: str) -> tuple[int, str]:
        """(HTTP status or 0 when unreachable, fingerprint)."""
        try:
            reply = self.clients[slave].post(
                f"{self.url(slave)}/api/v1/keys/{master}/dec_keys",
                json={"key_IDs": [{"key_ID": key_id}]},
            )
        except httpx.HTTPError:
            return 0, ""
        if reply.status_code != 200:
            return reply.status_code, ""
        return 200, _fingerprint(reply.json()["keys"][0]["key"])

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _signal_process(state_dir: Path, name: str, signum: int) -> bool:
    """Signals the running process `name` of the twin (one the lab started); False if none."""
    for process in launcher.recorded_processes(state_dir):
        if process.name == name and launcher.is_ours(process):
            os.kill(process.pid, signum)
            return True
    return False


def apply_fault(plan: LabPlan, action: ChaosAction) -> str:
    state_dir = Path(plan.state_dir)
    if action.kind in ("cut", "restore"):
        return faults.inject(plan, action.kind, action.target)
    name = {
        "kill-km": f"km-{action.target}",
        "term-km": f"km-{action.target}",
        "kill-agents": "agents",
        "kill-controller": "controller",
    }[action.kind]
    signum = signal.SIGTERM if action.kind == "term-km" else signal.SIGKILL
    done = _signal_process(state_dir, name, signum)
    return f"{signal.Signals(signum).name} {name}" if done else f"{name} not running"


def run_soak(
    plan: LabPlan,
    pairs: Sequence[tuple[str, str]],
    duration_s: float,
    seed: int,
    fault_interval_s: float,
    rate_per_pair: float = 2.0,
    kinds: Sequence[str] = ACTIONS,
    say: Callable[[str], None] = lambda _m: None,
) -> SoakCounts:
    """Traffic and faults on the running twin of `plan` for `duration_s`; then the counts."""
    links = [f"{link.a}-{link.b}" for link in plan.links]
    schedule = chaos_schedule(
        seed, duration_s, fault_interval_s, links, [n.name for n in plan.nodes], kinds
    )
    apps = _Apps(plan, {sae for pair in pairs for sae in pair})
    restarts_before = _restart_counts(plan)
    records: list[RequestRecord] = []
    pending: list[tuple[str, str, str, str]] = []  # acknowledged, slave not served yet
    done: list[ChaosAction] = []
    period = 1.0 / (rate_per_pair * len(pairs))
    start = time.monotonic()
    try:
        tick = 0
        while (now := time.monotonic() - start) < duration_s:
            while schedule and schedule[0].at_s <= now:
                action = schedule.pop(0)
                try:
                    say(f"{now:6.1f} s {action.kind} {action.target}: {apply_fault(plan, action)}")
                except faults.FaultError as error:  # e.g. its agent is restarting right now
                    say(f"{now:6.1f} s {action.kind} {action.target}: not applied ({error})")
                done.append(action)
            master, slave = pairs[tick % len(pairs)]
            outcome, key_id, fp = apps.enc(master, slave)
            if outcome != "ok":
                records.append(RequestRecord(f"{master}>{slave}", outcome))
            else:  # the slave asks at once, as a real one would; again at the end if it failed
                status, slave_fp = apps.dec(slave, master, key_id)
                if status == 200:
                    second, _ = apps.dec(slave, master, key_id)
                    records.append(
                        RequestRecord(f"{master}>{slave}", "ok", key_id, fp, slave_fp, second)
                    )
                else:
                    pending.append((master, slave, key_id, fp))
            pause = start + (tick + 1) * period - time.monotonic()
            tick += 1
            if pause > 0:
                time.sleep(pause)
        # Every cut is restored before the end; processes come back by the supervisor.
        for action in schedule:
            if action.kind == "restore":
                faults.inject(plan, "restore", action.target)
        for master, slave, key_id, fp in pending:
            records.append(_collect(apps, master, slave, key_id, fp))
    finally:
        apps.close()
    events = read_events(Path(plan.state_dir) / "trace")
    return count(records, events, done, restarts_between(restarts_before, _restart_counts(plan)))


def _restart_counts(plan: LabPlan) -> dict[str, int]:
    """How often the supervisor has restarted each process of the twin so far."""
    return {r.process.name: r.restarts for r in launcher.recorded_status(Path(plan.state_dir))}


def _collect(apps: _Apps, master: str, slave: str, key_id: str, fp: str) -> RequestRecord:
    """dec_keys of an acknowledged key, retried until DEC_RETRY_S (the slave's KM may be
    restarting), then a second dec_keys that must be refused."""
    deadline = time.monotonic() + DEC_RETRY_S
    delay = 0.05
    while True:
        status, slave_fp = apps.dec(slave, master, key_id)
        if status == 200:
            second, _ = apps.dec(slave, master, key_id)
            return RequestRecord(f"{master}>{slave}", "ok", key_id, fp, slave_fp, second)
        if time.monotonic() > deadline:
            return RequestRecord(f"{master}>{slave}", "acknowledged, never retrievable", key_id, fp)
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
