"""`qkdsdn lab run --scenario surge`, shortened: both control modes run on fresh metro twins
(the second starting during the first run) with the same requests, the data-driven
controller moves the high-priority association off the spur whose SKR fell, and the
summary, JSON and chart are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.scenarios.surge import PairLoad, SurgeSettings, run_surge

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]


def test_a_short_surge_runs_both_modes_and_steering_moves_the_priority_pair(
    tmp_path: Path,
) -> None:
    # The controller moves the priority pair within a second or two of the drop (0.7 s
    # measured on a machine at load 25): 8 s of traffic after it leave a wide margin. The
    # data-driven twin starts while the static run's traffic flows.
    settings = SurgeSettings(
        duration_s=12.0,
        drop_at_s=4.0,
        surge_at_s=6.0,
        overlap_starts=True,
        loads=(
            PairLoad("hospital-a", "hospital-b", 1.0, 8, 0.0, priority=10),
            PairLoad("office-central", "campus-upm", 1.0, 32, 6.0),
        ),
    )
    result = run_surge(tmp_path / "out", tmp_path / "state", settings=settings)
    assert [run.mode for run in result.runs] == ["static", "data-driven"]
    static, steered = result.runs
    for run in result.runs:
        assert [p.pair for p in run.pairs] == ["hospital-a>hospital-b", "office-central>campus-upm"]
        assert all(o.status != "keys differ" for o in run.outcomes)
        assert "skr=" in run.drop
    # The same Poisson requests in both runs.
    assert [(o.pair, o.at_s) for o in static.outcomes] == [
        (o.pair, o.at_s) for o in steered.outcomes
    ]
    moves = [e["text"] for e in steered.events if e["kind"] == "steering"]
    assert any(
        t.startswith("steering hospital-a>hospital-b: link almagro–getafe SKR fell") for t in moves
    ), moves
    assert not [e for e in static.events if e["kind"] == "steering"]
    written = json.loads((tmp_path / "out" / "surge.json").read_text())
    assert len(written["runs"]) == 2
    assert (tmp_path / "out" / "surge.png").read_bytes()[:4] == b"\x89PNG"
