"""How `lab up` spreads the agents over processes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from lab.launcher import (
    AGENTS_PER_PROCESS,
    agent_groups,
    is_agents,
    process_commands,
    readiness_ports,
)
from tests.harness.agents import make_test_plan

NAMES = [f"n{i}" for i in range(7)]


def test_groups_keep_the_file_order_and_differ_by_at_most_one() -> None:
    groups = agent_groups(NAMES, 3)
    assert groups == (("n0", "n1", "n2"), ("n3", "n4"), ("n5", "n6"))
    assert [n for g in groups for n in g] == NAMES


@pytest.mark.parametrize("processes", [1, 0, -3])
def test_one_process_is_no_groups(processes: int) -> None:
    assert agent_groups(NAMES, processes) == ()


def test_never_more_processes_than_nodes() -> None:
    assert agent_groups(["a", "b"], 5) == (("a",), ("b",))


def test_by_default_one_process_per_share_of_nodes_up_to_the_cores() -> None:
    small = [f"n{i}" for i in range(AGENTS_PER_PROCESS)]
    assert agent_groups(small) == ()
    big = [f"n{i}" for i in range(AGENTS_PER_PROCESS * 8)]
    expected = min(os.cpu_count() or 1, 8)
    assert len(agent_groups(big) or (big,)) == expected


def test_each_agents_process_hosts_and_waits_for_its_own_nodes(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    spread = replace(plan, agent_groups=(("a", "b"), ("c",)))
    commands = dict(process_commands(spread))
    config = Path(plan.state_dir) / "config"
    assert commands["agents-1"][-4:] == (
        "--config",
        str(config / "agent-a.yaml"),
        "--config",
        str(config / "agent-b.yaml"),
    )
    assert commands["agents-2"][-2:] == ("--config", str(config / "agent-c.yaml"))
    assert all((config / f"agent-{n}.yaml").is_file() for n in ("a", "b", "c"))
    assert commands["km-b"][-2:] == ("--config", str(config / "km-b.yaml"))
    assert commands["controller"][-2:] == ("--config", str(config / "controller.yaml"))
    c = spread.node("c")
    assert readiness_ports(spread, "agents-2") == [c.netconf_port, c.agent_grpc_port]
    assert "agents" in dict(process_commands(plan))
    assert is_agents("agents") and is_agents("agents-12")
    assert not is_agents("agents-x") and not is_agents("km-agents")
