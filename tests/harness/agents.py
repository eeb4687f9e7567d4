"""Lab plans and agents for tests: real seeds, SSH keys, a password file, free ports in a temp dir.

`make_test_plan(tmp_path, ["a", "b"], [("a", "b")], [("sae-1", "a")])`, with the lab PKI
under `tmp_path/pki` (the agents' gRPC takes mutual TLS) and `operator_channel` for the
AgentControl calls of a test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agents import main as agents_main
from agents.main import AgentHandle
from agents.node import Site
from common.roles import TlsMaterial, channel_credentials
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

    The same resolution as `qkdsdn lab up` (lab.launcher.make_plan), PKI included."""
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


def operator_tls(plan: LabPlan) -> TlsMaterial:
    """The lab operator's client certificate (urn:qkdsdn:operator:lab): AgentControl."""
    return TlsMaterial.from_files(*plan.operator_cert, plan.credentials.ca_cert)


def km_tls(plan: LabPlan, node: str) -> TlsMaterial:
    """The key manager of `node`'s certificate (urn:qkdsdn:km:<node>): KeyDelivery, NodeLink."""
    return TlsMaterial.from_files(*plan.node_certs[node], plan.credentials.ca_cert)


def agent_channel(address: str, tls: TlsMaterial) -> grpc.aio.Channel:
    """A grpc.aio channel to an agent presenting the certificate of `tls`."""
    return grpc.aio.secure_channel(address, channel_credentials(tls))
