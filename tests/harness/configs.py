"""Per-process configurations of a lab plan, in memory: what `lab up` would write and load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents import config as agent_config
from agents.config import AgentConfig
from controller import config as controller_config
from controller.api import Controller, addresses_from_config
from controller.config import ControllerConfig
from controller.devices.session import DeviceAddress
from km import config as km_config
from km.config import KmConfig
from km.relay.client import RelayClient
from lab.configs import config_dir, process_configs
from lab.plan import LabPlan


def _file(plan: LabPlan, name: str) -> Path:
    return config_dir(plan) / f"{name}.yaml"


def agent_configs(plan: LabPlan, nodes: Sequence[str] | None = None) -> list[AgentConfig]:
    """The agent configurations of `nodes` (default: every node of the plan), in that order."""
    names = list(dict.fromkeys(nodes)) if nodes is not None else [n.name for n in plan.nodes]
    for name in names:
        plan.node(name)  # an unknown name fails here
    data = process_configs(plan)
    return [
        agent_config.parse(data[f"agent-{name}"], _file(plan, f"agent-{name}")) for name in names
    ]


def agent_config_of(plan: LabPlan, node: str) -> AgentConfig:
    return agent_configs(plan, [node])[0]


def km_config_of(plan: LabPlan, node: str) -> KmConfig:
    plan.node(node)
    return km_config.parse(process_configs(plan)[f"km-{node}"], _file(plan, f"km-{node}"))


def controller_config_of(plan: LabPlan) -> ControllerConfig:
    """The controller's configuration; without its TLS identity when the plan has no PKI
    (tests that make none: the controller does not use it yet)."""
    data = process_configs(plan)["controller"]
    if not Path(plan.controller.cert).exists():
        data["tls"] = None
    return controller_config.parse(data, _file(plan, "controller"))


def controller_from_plan(plan: LabPlan, **options: Any) -> Controller:
    """Controller.from_config of the plan's controller.yaml (keyword overrides as there)."""
    return Controller.from_config(controller_config_of(plan), **options)


def addresses_from_plan(plan: LabPlan) -> list[DeviceAddress]:
    return addresses_from_config(controller_config_of(plan))


def relay_client(config: KmConfig) -> RelayClient:
    """The relay channels of the key manager of `config` (its certificate, its peers)."""
    return RelayClient(config.configured_relays(), config.tls)
