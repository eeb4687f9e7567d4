"""End to end on the whole twin: real processes, real NETCONF, TLS and gRPC on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.launcher import recorded_processes
from lab.scenarios.catalog import SCENARIOS
from lab.scenarios.runner import ScenarioResult, run_scenario
from lab.timeline import read_events

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.lab


def _hops(result: ScenarioResult) -> list[tuple[str, str]]:
    """(sender, receiver) of every relay hop the key managers traced, in order, deduplicated."""
    seen: list[tuple[str, str]] = []
    for event in read_events(Path(result.state_dir) / "trace"):
        if event.event == "relay.link_key":
            hop = (str(event.fields["sender"]), str(event.fields["receiver"]))
            if hop not in seen:
                seen.append(hop)
    return seen


def _assert_nothing_left(state_dir: Path) -> None:
    assert recorded_processes(state_dir) == []


def test_lab_run_command_is_the_paper_experiment(tmp_path: Path) -> None:
    out, state = tmp_path / "out", tmp_path / "state"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "lab",
            "run",
            "--out",
            str(out),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=dict(os.environ, COLUMNS="120"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["scenario"] == "paper"
    assert results["all_keys_match"] is True
    assert len(results["requests"]) == SCENARIOS["paper"].requests
    assert all(r["keys_match"] for r in results["requests"])
    assert len({r["key_id"] for r in results["requests"]}) == len(results["requests"])
    assert (out / "timeline.png").stat().st_size > 10_000
    # The forced indirect path: qnode2 relays every key.
    result_hops = {
        (e.fields.get("sender"), e.fields.get("receiver"))
        for e in read_events(state / "trace")
        if e.event == "relay.link_key"
    }
    assert result_hops == {("qnode1", "qnode2"), ("qnode2", "qnode3")}
    # The first request pays for admission and installation; later ones come from the buffer.
    later = [r for r in results["requests"] if r["index"] > 0]
    assert later and all(r["from_buffer"] for r in later)
    assert "all keys identical" in proc.stdout
    _assert_nothing_left(state)


def test_direct_path_on_the_triangle(tmp_path: Path) -> None:
    result = run_scenario(SCENARIOS["direct"], tmp_path / "out", tmp_path / "state", requests=3)
    assert result.all_keys_match
    assert _hops(result) == [("qnode1", "qnode3")]
    _assert_nothing_left(tmp_path / "state")


def test_ten_hop_chain(tmp_path: Path) -> None:
    result = run_scenario(SCENARIOS["chain"], tmp_path / "out", tmp_path / "state", requests=2)
    assert result.all_keys_match
    hops = _hops(result)
    assert len(hops) == 10
    # Every hop starts where the previous one ended: one chain from one end to the other.
    assert all(hops[i][1] == hops[i + 1][0] for i in range(len(hops) - 1))
    assert len({node for hop in hops for node in hop}) == 11
    _assert_nothing_left(tmp_path / "state")
