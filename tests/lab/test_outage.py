"""The outage scenario on the whole twin: key modes while both paths are cut and restored."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.launcher import recorded_processes
from lab.scenarios.catalog import SCENARIOS
from lab.scenarios.outage import run_outage

pytestmark = pytest.mark.lab


def test_preferred_and_hybrid_pairs_never_fail_while_qkd_only_gets_503_with_the_reason(
    tmp_path: Path,
) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    # Each phase ends once it has shown its part (the times are upper bounds): a quick twin
    # is not kept waiting, a slow one gets as long as before.
    result = run_outage(
        SCENARIOS["outage"],
        out,
        state_dir=state,
        phase_s=(4.0, 6.0, 10.0),
        end_phases_when_seen=True,
    )
    pairs = {p.mode: p for p in result.pairs}
    assert result.all_keys_match  # same key and same origin at enc_keys and dec_keys
    for mode in ("qkd-preferred", "hybrid-either"):
        pair = pairs[mode]
        assert pair.failed_during_outage == 0 and pair.failed_outside_outage == 0, pair
        assert pair.origins_during_outage.get("pqc", 0) > 0, pair
        assert pair.first_after_failure_origin == "pqc", pair
        assert pair.back_to_qkd_after_install_ms is not None, pair  # QKD again after restore
    qkd_only = pairs["qkd-only"]
    assert qkd_only.failed_during_outage > 0 and qkd_only.failed_outside_outage == 0
    assert qkd_only.refusal_reason is not None
    assert "key mode qkd-only" in qkd_only.refusal_reason and "down" in qkd_only.refusal_reason
    assert "pqc" not in qkd_only.origins_during_outage
    before = [s for s in result.samples if s.t_start_s < result.t_cut_s]
    assert before and all(s.origin in ("qkd", "hybrid") for s in before if s.status == 200)
    assert (out / "outage.png").stat().st_size > 10_000
    assert (out / "results.json").exists()
    assert recorded_processes(state) == []
