"""The surge scenario's pure parts: Poisson arrivals, percentiles, per-pair summaries, the
eavesdropper share that divides a link's rate by ten, and the controller mode switch."""

from __future__ import annotations

import json
import os
import random

import pytest

from agents.emulator.physics import link_rate
from lab.scenarios.catalog import SCENARIOS
from lab.scenarios.surge import (
    Outcome,
    PairLoad,
    SurgeSettings,
    arrivals,
    controller_mode,
    eavesdrop_fraction,
    percentile,
    summarise,
)
from lab.topology import LinkSpec, load_topology, topology_path


def test_poisson_arrivals_have_the_asked_mean_rate_and_repeat_with_the_seed() -> None:
    times = arrivals(4.0, 10.0, 1010.0, random.Random(7))
    assert all(10.0 < t < 1010.0 for t in times) and times == sorted(times)
    assert 3_800 < len(times) < 4_200  # 4/s over 1000 s
    assert times == arrivals(4.0, 10.0, 1010.0, random.Random(7))
    assert arrivals(0.0, 0.0, 10.0, random.Random(7)) == []


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 50) == 0.0


def test_a_summary_counts_failures_by_reason_and_delays_of_answered_requests_only() -> None:
    load = PairLoad("a", "b", 1.0, 4, priority=3)
    outcomes = [
        Outcome("a>b", 1.0, 10.0, True, "ok", 4),
        Outcome("a>b", 2.0, 30.0, True, "ok", 4),
        Outcome("a>b", 3.0, 15_000.0, False, "timeout", 0),
        Outcome("a>b", 4.0, 200.0, False, "enc_keys 503", 0),
        Outcome("c>d", 4.0, 1.0, True, "ok", 9),
    ]
    [summary] = summarise(outcomes, [load])
    assert (summary.requests, summary.failed, summary.keys_delivered) == (4, 2, 8)
    assert summary.failures == {"timeout": 1, "enc_keys 503": 1}
    assert (summary.p50_ms, summary.p99_ms) == (10.0, 30.0)
    assert summary.priority == 3


def test_the_eavesdropper_share_divides_the_links_rate_by_the_factor_without_aborting_it() -> None:
    topology = load_topology(topology_path("metro-surge"))
    link = next(x for x in topology.links if {x.a, x.b} == {"getafe", "almagro"})
    fraction = eavesdrop_fraction(link, 10.0)
    base = link_rate(link.preset, link.length_km, link.extra_loss_db, 0.0, link.skr_bps)
    dropped = link_rate(link.preset, link.length_km, link.extra_loss_db, fraction, link.skr_bps)
    assert not dropped.aborted
    assert dropped.skr_bps == pytest.approx(base.skr_bps / 10.0, rel=0.01)
    model = LinkSpec("x", "y", 30.0, 0.0, "commercial", None, None)
    assert 0 < eavesdrop_fraction(model, 10.0) < 0.2


def test_the_control_mode_reaches_the_next_controller_through_its_environment() -> None:
    loads = (PairLoad("vip", "vip-peer", 1.0, 1, priority=9), PairLoad("bulk", "x", 1.0, 1))
    before = os.environ.get("QKDSDN_STEERING__MODE")
    with controller_mode("data-driven", loads):
        assert os.environ["QKDSDN_STEERING__MODE"] == "data-driven"
        priorities = json.loads(os.environ["QKDSDN_STEERING__PRIORITIES"])
        assert priorities == {"vip": 9, "vip-peer": 9, "bulk": 0, "x": 0}
    assert os.environ.get("QKDSDN_STEERING__MODE") == before
    with pytest.raises(ValueError, match="unknown control mode"), controller_mode("smart", loads):
        pass


def test_the_surge_scenario_is_in_the_catalog_and_its_settings_are_checked() -> None:
    assert SCENARIOS["surge"].topology == "metro-surge"
    pairs = {f"{m}>{s}" for m, s in SCENARIOS["surge"].pairs}
    assert pairs == {load.pair for load in SurgeSettings().loads}
    with pytest.raises(ValueError, match="within the run"):
        SurgeSettings(duration_s=10.0, drop_at_s=20.0)
    with pytest.raises(ValueError, match="drop_factor"):
        SurgeSettings(drop_factor=1.0)
