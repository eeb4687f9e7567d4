"""A containerlab topology of an exported network: `<name>.clab.yml` and the files it binds.

Per node two `linux` nodes share one network namespace, as the containers of a pod do: `<node>`
(the node's name as a host name: lower case, '-' for '_') runs the agent and owns the node's
interfaces, `<node>-km` runs the key manager with `network-mode: container:<node>` (it
reaches its agent on 127.0.0.1). Per PHYS link two
links: the quantum channel `q<i>` and the classical channel `c<i>`, i being the link's
interface id (qkdi_id) at that end. With `prefix: ""` containers are named after their node,
so the controller reaches `<node>:8300` and key managers reach `<peer>:8304` by name on the
management network. Containers run as root: the bound key files keep mode 0600.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.configs import CONTROLLER
from lab.export.network import (
    CONTAINER_ROOT,
    Addressing,
    ExportedNetwork,
    ExportError,
    Process,
    host_label,
    host_labels,
)

STATE = "state"  # the state folder beside the .clab.yml: binds are relative to it
KM_SUFFIX = "-km"


def containerlab_addressing(nodes: Sequence[str]) -> Addressing:
    """Every node (and the controller) at its containerlab node name."""
    hosts: dict[str, str] = dict(host_labels(nodes, KM_SUFFIX))
    sans = {node: [label] for node, label in hosts.items()}
    hosts[CONTROLLER] = CONTROLLER
    return Addressing(hosts, sans)


def node_name(process: Process) -> str:
    """The containerlab node of a process: the agent's is the node's host name."""
    if process.node is None:
        return CONTROLLER
    label = host_label(process.node, KM_SUFFIX)
    return label if process.role == "agent" else label + KM_SUFFIX


def containerlab_topology(network: ExportedNetwork, image: str) -> dict[str, Any]:
    """The topology document (pure: paths are relative to the .clab.yml's folder)."""
    nodes: dict[str, Any] = {}
    for process in network.processes:
        node: dict[str, Any] = {
            "kind": "linux",
            "image": image,
            "user": "0",
            "cmd": shlex.join(process.command),
            "env": {"PYTHONUNBUFFERED": "1"},
            "binds": _binds(process),
            "labels": {"qkd-sdn.role": process.role},
        }
        if process.role == "km" and process.node is not None:
            node["network-mode"] = f"container:{host_label(process.node)}"
        if process.role == CONTROLLER:
            node["ports"] = [f"{port}:{port}" for port in process.ports.values()]
        nodes[node_name(process)] = node
    links = []
    for link in network.plan.links:
        a, b = host_label(link.a), host_label(link.b)
        for channel in ("q", "c"):
            links.append(
                {
                    "endpoints": [
                        f"{a}:{channel}{link.a_qkdi_id}",
                        f"{b}:{channel}{link.b_qkdi_id}",
                    ]
                }
            )
    return {"name": network.name, "prefix": "", "topology": {"nodes": nodes, "links": links}}


def _binds(process: Process) -> list[str]:
    binds = [f"{STATE}/{process.config_path}:{CONTAINER_ROOT / process.config_path}:ro"]
    binds += [f"{STATE}/{file.path}:{CONTAINER_ROOT / file.path}:ro" for file in process.files]
    if process.data_dir is not None:
        binds.append(f"{STATE}/{process.data_dir}:{CONTAINER_ROOT / process.data_dir}")
    return binds


def write_containerlab(network: ExportedNetwork, out_dir: Path, image: str) -> Path:
    """Writes `<name>.clab.yml` beside the state folder of `plan_export(..., out_dir/STATE)`
    and makes the data folders it binds; returns the topology file."""
    state_dir = Path(network.plan.state_dir)
    if state_dir != (out_dir / STATE).resolve():
        raise ExportError(f"the exported state must be in {out_dir / STATE}, not {state_dir}")
    document = containerlab_topology(network, image)
    for process in network.processes:
        if process.data_dir is not None:
            (state_dir / process.data_dir).mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{network.name}.clab.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
