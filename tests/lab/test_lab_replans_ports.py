"""Real processes: a port of the plan taken by another process before the twin binds it
(another twin on a shared machine): `lab up` stops what it started, plans new ports and
starts on those; the plan it returns is the one running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from lab.launcher import (
    make_plan,
    port_open,
    recorded_processes,
    start,
    start_with_free_ports,
    stop,
)
from lab.plan import LabPlan
from lab.processes import is_ours
from lab.topology import DEFAULT_TOPOLOGY, load_topology

pytestmark = pytest.mark.lab


def test_a_twin_whose_planned_port_was_taken_starts_on_new_ports(tmp_path: Path) -> None:
    state = tmp_path / "state"
    plan = make_plan(load_topology(DEFAULT_TOPOLOGY), DEFAULT_TOPOLOGY, state, metrics=False)
    taken = plan.node("qnode2").netconf_port  # the agents start first: the first try is short
    said: list[str] = []
    with socket.socket() as squatter:  # bound, not listening: the KM cannot have it
        squatter.bind(("127.0.0.1", taken))
        try:
            running, _ = start_with_free_ports(
                plan, lambda planned: start(planned, timeout=120.0), say=said.append
            )
            assert said == ["a port was taken meanwhile; planning again (1/3)"]
            assert running != plan and taken not in running.ports()
            assert LabPlan.load(state / "plan.json") == running  # the record is the new plan
            node = running.node("qnode2")
            assert port_open((node.host, node.netconf_port))
            processes = recorded_processes(state)
        finally:
            stop(state)
    assert processes and not [p.name for p in processes if is_ours(p)]
