"""Lab plans and agents for tests: real seeds, SSH keys, a password file, free ports in a temp dir.

`make_test_plan(tmp_path, ["a", "b"], [("a", "b")], [("sae-1", "a")])`. The PKI fields
name files under `tmp_path/pki` that this helper does not create (`lab.pki` does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import main as agents_main
from agents.main import AgentHandle
from agents.node import Site
from lab.launcher import make_plan
from lab.plan import LabPlan, Settings
from lab.topology import AppSpec, NodeSpec, Topology, TopologySettings
from lab.topology import LinkSpec as TopologyLink
from tests.harness.configs import agent_config_of, agent_configs
from yang.schema import Schema


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    length_km: float = 50.0
    preset: str = "commercial"
    skr_bps: float | None = None
    qber: float | None = None
    extra_loss_db: float = 0.0


def make_test_plan(
    tmp_path: Path,
    nodes: Sequence[str],
    links: Sequence[tuple[str, str] | LinkSpec],
    apps: Sequence[tuple[str, str]] = (),
    settings: Settings | None = None,
) -> LabPlan:
    """A complete plan in `tmp_path` (the state dir); `apps` are (sae_id, node) pairs.

    The same resolution as `qkdsdn lab up` (lab.launcher.make_plan), without the PKI."""
    specs = [spec if isinstance(spec, LinkSpec) else LinkSpec(*spec) for spec in links]
    for link in specs:
        if link.a not in nodes or link.b not in nodes:
            raise ValueError(f"link {link.a}-{link.b} names a node that is not in {list(nodes)}")
    topology = Topology(
        name="test",
        settings=TopologySettings(),
        nodes=tuple(NodeSpec(name, f"lab bench {i}") for i, name in enumerate(nodes, start=1)),
        links=tuple(
            TopologyLink(s.a, s.b, s.length_km, s.extra_loss_db, s.preset, s.skr_bps, s.qber)
            for s in specs
        ),
        apps=tuple(AppSpec(sae_id, node) for sae_id, node in apps),
    )
    state = tmp_path.resolve()
    plan = make_plan(
        topology,
        state / "topology.yaml",
        state,
        settings=settings or Settings(),
        with_pki=False,
    )
    plan.save(state / "plan.json")
    return plan


def running_path(plan: LabPlan, name: str) -> Path:
    """Where the agent of `name` persists its running configuration."""
    return agent_config_of(plan, name).running_file


def running_agents(
    plan: LabPlan,
    nodes: Sequence[str] | None = None,
    *,
    plan_ports: bool = True,
    **options: Any,
) -> contextlib.AbstractAsyncContextManager[dict[str, AgentHandle]]:
    """agents.main.running_agents for the nodes of a plan (ports from the plan, or free)."""
    return agents_main.running_agents(
        agent_configs(plan, nodes), configured_ports=plan_ports, **options
    )


async def start_agent(
    plan: LabPlan, name: str, site: Site, schema: Schema, **options: Any
) -> AgentHandle:
    return await agents_main.start_agent(agent_config_of(plan, name), site, schema, **options)
