"""A containerlab topology of an exported network: `<name>.clab.yml` and the files it binds.

Per node two `linux` nodes share one network namespace, as the containers of a pod do: `<node>`
(the node's name as a host name: lower case, '-' for '_') runs the agent and owns the node's
interfaces, `<node>-km` runs the key manager with `network-mode: container:<node>` (it
reaches its agent on 127.0.0.1). Per PHYS link two links: the quantum channel `q<i>` and the
classical channel `c<i>`, i being the link's interface id (qkdi_id) at that end; the classical
channel gets a /31 of CLASSICAL_NETWORK (`exec` on the agent's node) and a key manager reaches
its neighbour's relay there, so relayed keys cross the classical links. With `prefix: ""`
containers are named after their node: the controller reaches `<node>:8300` by name on the
management network. Containers run as root: the bound key files keep mode 0600, and `exec`
configures the interfaces.

A network of several domains: every container carries its domain (`group: domain-<D>`, label
`qkd-sdn.domain`), each domain's controller is a node of its own (`controller-<d>`, API on
host port 8500, 8501, ... in domain order), and each border site's two nodes get a site link
`x<i>` with a /31 of BORDER_NETWORK: their key managers' ETSI 020 hand-offs cross it.
"""

from __future__ import annotations

import shlex
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from lab.configs import CONTROLLER
from lab.export.network import (
    CONTAINER_ROOT,
    PORTS,
    Addressing,
    ExportedNetwork,
    ExportError,
    Process,
    host_label,
    host_labels,
)
from lab.topology import Topology

STATE = "state"  # the state folder beside the .clab.yml: binds are relative to it
KM_SUFFIX = "-km"
CLASSICAL_NETWORK = IPv4Network("10.201.0.0/16")  # a /31 per link's classical channel
BORDER_NETWORK = IPv4Network("10.202.0.0/16")  # a /31 per border site's link (ETSI 020)
PORT_BASE = PORTS.controller_api  # the host port of the (first) controller's API
SITE_INTERFACE = "x"  # + the site's number at that node: a border site's link


def classical_addresses(
    index: int, network: IPv4Network = CLASSICAL_NETWORK
) -> tuple[IPv4Interface, IPv4Interface]:
    """The two ends (a, b) of the classical channel of the topology's `index`-th link (or,
    `network=BORDER_NETWORK`, of its `index`-th border site's link)."""
    first = network.network_address + 2 * index
    if first + 1 > network.broadcast_address:
        raise ExportError(f"more than {network.num_addresses // 2} links in {network}")
    return IPv4Interface(f"{first}/31"), IPv4Interface(f"{first + 1}/31")


def controller_label(process: str) -> str:
    """The containerlab node of a controller process: "controller", "controller-a", ..."""
    return host_label(process)


def containerlab_addressing(topology: Topology) -> Addressing:
    """Every node (and the controller) at its containerlab node name; key managers reach a
    neighbour's relay at the neighbour's end of their classical link."""
    hosts: dict[str, str] = dict(host_labels([n.name for n in topology.nodes], KM_SUFFIX))
    sans = {node: [label] for node, label in hosts.items()}
    relay_hosts: dict[tuple[str, str], str] = {}
    for index, link in enumerate(topology.links):
        at_a, at_b = classical_addresses(index)
        relay_hosts[(link.a, link.b)] = str(at_b.ip)
        relay_hosts[(link.b, link.a)] = str(at_a.ip)
        sans[link.a].append(str(at_a.ip))
        sans[link.b].append(str(at_b.ip))
    hosts[CONTROLLER] = CONTROLLER
    for domain in topology.domains:
        process = f"controller-{domain.name}"
        label = controller_label(process)
        if label in hosts.values():
            raise ExportError(f"domain {domain.name!r}: the host name {label!r} is taken by a node")
        hosts[process] = label
    interdomain_hosts: dict[str, str] = {}
    for index, site in enumerate(topology.borders):
        at_a, at_b = classical_addresses(index, BORDER_NETWORK)
        for node, end in ((site.a, at_a), (site.b, at_b)):
            interdomain_hosts[node] = str(end.ip)
            sans[node].append(str(end.ip))
    return Addressing(hosts, sans, relay_hosts, interdomain_hosts)


def node_name(process: Process) -> str:
    """The containerlab node of a process: the agent's is the node's host name."""
    if process.node is None:
        return controller_label(process.name)
    label = host_label(process.node, KM_SUFFIX)
    return label if process.role == "agent" else label + KM_SUFFIX


def containerlab_topology(network: ExportedNetwork, image: str) -> dict[str, Any]:
    """The topology document (pure: paths are relative to the .clab.yml's folder)."""
    nodes: dict[str, Any] = {}
    addresses: dict[str, list[str]] = {}
    links = []
    for index, link in enumerate(network.plan.links):
        a, b = host_label(link.a), host_label(link.b)
        at_a, at_b = classical_addresses(index)
        for channel in ("q", "c"):
            links.append(
                {
                    "endpoints": [
                        f"{a}:{channel}{link.a_qkdi_id}",
                        f"{b}:{channel}{link.b_qkdi_id}",
                    ]
                }
            )
        addresses.setdefault(a, []).append(f"ip address add {at_a} dev c{link.a_qkdi_id}")
        addresses.setdefault(b, []).append(f"ip address add {at_b} dev c{link.b_qkdi_id}")
    sites: dict[str, int] = {}  # node -> border sites so far: its site interfaces x1, x2, ...
    for index, pair in enumerate(network.plan.border_sites):
        ends = []
        for at, end in zip(pair, classical_addresses(index, BORDER_NETWORK), strict=True):
            sites[at] = sites.get(at, 0) + 1
            interface = f"{SITE_INTERFACE}{sites[at]}"
            ends.append(f"{host_label(at)}:{interface}")
            addresses.setdefault(host_label(at), []).append(f"ip address add {end} dev {interface}")
        links.append({"endpoints": ends})
    api_ports = {p.name: PORT_BASE + i for i, p in enumerate(network.controllers)}
    for process in network.processes:
        node: dict[str, Any] = {
            "kind": "linux",
            "image": image,
            "user": "0",
            "cmd": shlex.join(process.command),
            "env": {"PYTHONUNBUFFERED": "1"},
            "binds": _binds(process),
            "labels": {"qkd-sdn.role": process.role}
            | ({"qkd-sdn.domain": process.domain} if process.domain else {}),
        }
        if process.role == "agent" and addresses.get(node_name(process)):
            node["exec"] = addresses[node_name(process)]
        if process.role == "km" and process.node is not None:
            node["network-mode"] = f"container:{host_label(process.node)}"
        if process.role == CONTROLLER:
            node["ports"] = [f"{api_ports[process.name]}:{port}" for port in process.ports.values()]
        if process.domain:
            node["group"] = f"domain-{process.domain}"
        nodes[node_name(process)] = node
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
