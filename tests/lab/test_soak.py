"""A short soak in `make test`: the supervised triangle under traffic while links are cut and
key managers die; nothing may be delivered twice, differ, get lost once acknowledged, or
reuse a link key. The long run is bench/soak.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import launcher
from lab.scenarios.soak import run_soak
from lab.topology import load_topology, topology_path

pytestmark = pytest.mark.lab


@pytest.mark.timeout(300)  # a twin, 30 s of traffic and faults, on a shared 2-core machine
def test_a_short_soak_delivers_every_key_once_and_reuses_no_link_key(tmp_path: Path) -> None:
    topo_file = topology_path("triangle")
    plan = launcher.make_plan(load_topology(topo_file), topo_file, tmp_path / "state")
    launcher.start_supervised(plan, timeout=120.0)
    try:
        counts = run_soak(
            plan,
            [("app1", "app2")],
            # Seed 3 at this pace: two cuts and their restores, SIGTERMs and a SIGKILL of key
            # managers; the slave's KM is killed 13 s before the end (time for the supervisor
            # to bring it back on a busy machine: the acknowledged keys are fetched after).
            duration_s=30.0,
            seed=3,
            fault_interval_s=4.0,
            rate_per_pair=2.0,
            kinds=("cut", "kill-km", "term-km"),
        )
    finally:
        report = launcher.stop(Path(plan.state_dir))
    assert report.killed == []
    assert sum(counts.faults.values()) >= 4, counts.faults
    assert {"cut", "restore", "kill-km", "term-km"} <= set(counts.faults), counts.faults
    assert counts.outcomes.get("ok", 0) >= 20, counts.outcomes
    assert counts.delivered_twice == 0
    assert counts.mismatches == 0
    assert counts.lost_after_ack == 0
    assert counts.link_key_reuse == 0
