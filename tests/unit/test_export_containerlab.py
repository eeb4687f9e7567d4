"""`qkdsdn lab export --to containerlab`: the .clab.yml's structure (checked here against the
rules of containerlab's published topology schema, as no containerlab binary is at hand),
every node and link present once, each command matching its bound config file."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from ipaddress import IPv4Interface
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from cryptography import x509

from agents import config as agent_config
from controller import config as controller_config
from km import config as km_config
from lab.cli import main
from lab.export.containerlab import STATE, containerlab_addressing, write_containerlab
from lab.export.network import CONTAINER_ROOT, PORTS, ExportError, host_label, plan_export
from lab.plan import LabPlan
from lab.topology import NodeSpec, Topology, TopologySettings, topology_path

IMAGE = "qkd-sdn:test"
LOADERS = {"agent": agent_config.load, "km": km_config.load, "controller": controller_config.load}
# From containerlab's topology schema (schemas/clab.schema.json): the top-level keys, the
# node keys this export uses, and the shapes of endpoints, binds, ports and network-mode.
TOP_KEYS = {"name", "prefix", "mgmt", "topology", "settings"}
NODE_KEYS = {
    "kind",
    "image",
    "user",
    "cmd",
    "env",
    "binds",
    "labels",
    "network-mode",
    "ports",
    "exec",
}
ENDPOINT = re.compile(r"^\S+:\S+$")
BIND = re.compile(r"^[^:]+:/[^:]+(:ro)?$")
PORT = re.compile(r"^\d{1,5}:\d{1,5}$")
NETWORK_MODE = re.compile(r"^(host)|(container:\S+)$")
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # a Linux interface name


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPlan, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("clab")
    network = plan_export(topology_path("metro-madrid"), out / STATE, containerlab_addressing)
    path = write_containerlab(network, out, IMAGE)
    assert path == out / f"{network.name}.clab.yml"
    return network.plan, yaml.safe_load(path.read_text()), out


def test_the_file_has_the_shape_containerlabs_schema_asks_for(
    exported: tuple[LabPlan, dict[str, Any], Path],
) -> None:
    plan, doc, _ = exported
    assert set(doc) <= TOP_KEYS and {"name", "topology"} <= set(doc)
    assert doc["name"] == plan.name and doc["prefix"] == ""
    assert set(doc["topology"]) == {"nodes", "links"}
    for name, node in doc["topology"]["nodes"].items():
        assert set(node) <= NODE_KEYS, name
        assert node["kind"] == "linux" and node["image"] == IMAGE
        assert isinstance(node["cmd"], str)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in node["env"].items())
        assert node["binds"] and len(set(node["binds"])) == len(node["binds"])
        assert all(BIND.match(bind) for bind in node["binds"]), node["binds"]
        assert all(PORT.match(port) for port in node.get("ports", []))
        assert NETWORK_MODE.match(node.get("network-mode", "host"))
        assert all(isinstance(command, str) for command in node.get("exec", ["-"]))
    for link in doc["topology"]["links"]:
        assert set(link) == {"endpoints"} and len(link["endpoints"]) == 2
        assert all(ENDPOINT.match(end) for end in link["endpoints"])


def test_every_node_is_present_and_each_channel_of_each_link_once(
    exported: tuple[LabPlan, dict[str, Any], Path],
) -> None:
    plan, doc, _ = exported
    nodes = doc["topology"]["nodes"]
    hosts = {host_label(n.name) for n in plan.nodes}
    assert len(hosts) == len(plan.nodes) and any("_" in n.name for n in plan.nodes)
    assert set(nodes) == hosts | {f"{host}-km" for host in hosts} | {"controller"}
    links = [tuple(link["endpoints"]) for link in doc["topology"]["links"]]
    wanted = Counter()
    for link in plan.links:
        for channel in ("q", "c"):
            a, b = host_label(link.a), host_label(link.b)
            wanted[(f"{a}:{channel}{link.a_qkdi_id}", f"{b}:{channel}{link.b_qkdi_id}")] += 1
    assert Counter(links) == wanted and set(wanted.values()) == {1}
    ends = [end for link in links for end in link]
    assert len(ends) == len(set(ends))  # no interface used twice
    for end in ends:
        node, interface = end.split(":")
        assert node in hosts  # links attach to the agents' containers
        assert IFNAME.match(interface)


def _bound(node: dict[str, Any], out: Path) -> dict[PurePosixPath, Path]:
    """Container path -> file on this machine, of a node's binds."""
    binds = {}
    for bind in node["binds"]:
        source, target = bind.split(":")[:2]
        binds[PurePosixPath(target)] = out / source
    return binds


def test_each_nodes_command_runs_the_config_file_bound_for_that_node(
    exported: tuple[LabPlan, dict[str, Any], Path],
) -> None:
    _, doc, out = exported
    for name, node in doc["topology"]["nodes"].items():
        role, run, flag, config = shlex.split(node["cmd"])
        assert (run, flag) == ("run", "--config")
        assert PurePosixPath(config).parent == CONTAINER_ROOT / "config"
        loaded = LOADERS[role](_bound(node, out)[PurePosixPath(config)], env={})
        if role == "controller":
            assert name == "controller"
            assert node["ports"] == [f"{PORTS.controller_api}:{PORTS.controller_api}"]
        else:
            host = host_label(loaded.node)
            assert name == (host if role == "agent" else f"{host}-km")
            assert PurePosixPath(config).name == f"{role}-{loaded.node}.yaml"


def test_every_bound_file_exists_and_every_file_a_process_reads_is_bound(
    exported: tuple[LabPlan, dict[str, Any], Path],
) -> None:
    from lab.export.network import paths_of

    _, doc, out = exported
    state = (out / STATE).resolve()
    for node in doc["topology"]["nodes"].values():
        binds = _bound(node, out)
        assert all(source.exists() for source in binds.values())
        config = PurePosixPath(shlex.split(node["cmd"])[3])
        loaded = LOADERS[shlex.split(node["cmd"])[0]](binds[config], env={})
        for field, path in paths_of(loaded):
            target = CONTAINER_ROOT / path.relative_to(state).as_posix()
            assert binds[target].resolve() == path, field
            read_only = f"{binds[target].relative_to(out)}:{target}:ro" in node["binds"]
            assert read_only == (field != "data_dir"), field


def test_a_key_manager_shares_its_agents_namespace_and_the_controller_finds_nodes_by_name(
    exported: tuple[LabPlan, dict[str, Any], Path],
) -> None:
    plan, doc, out = exported
    nodes = doc["topology"]["nodes"]
    for node in plan.nodes:
        km_node = nodes[f"{host_label(node.name)}-km"]
        assert km_node["network-mode"] == f"container:{host_label(node.name)}"
        km = km_config.load(out / STATE / "config" / f"km-{node.name}.yaml", env={})
        agent = agent_config.load(out / STATE / "config" / f"agent-{node.name}.yaml", env={})
        assert km.agent == agent.listen.grpc and str(km.agent) == f"127.0.0.1:{PORTS.agent_grpc}"
        assert {peer.node for peer in km.peers} == {
            link.other_end(node.name) for link in plan.links_of(node.name)
        }
    controller = controller_config.load(out / STATE / "config" / "controller.yaml", env={})
    assert [str(n.netconf) for n in controller.nodes] == [
        f"{host_label(n.name)}:{PORTS.netconf}" for n in plan.nodes
    ]


def _topology(*names: str) -> Topology:
    nodes = tuple(NodeSpec(name) for name in names)
    return Topology("t", TopologySettings(), nodes, links=(), apps=())


def test_node_names_that_are_no_host_names_or_collide_are_refused() -> None:
    with pytest.raises(ExportError, match="controller"):
        containerlab_addressing(_topology("qnode1", "controller"))
    with pytest.raises(ExportError, match="one host name 'madrid-1'"):
        containerlab_addressing(_topology("Madrid_1", "madrid_1"))
    with pytest.raises(ExportError, match="not usable as a host name"):
        containerlab_addressing(_topology("node_"))


def test_relayed_keys_cross_the_classical_link_each_end_of_which_has_its_address(
    exported: tuple[LabPlan, dict[str, Any], Path],
) -> None:
    plan, doc, out = exported
    nodes = doc["topology"]["nodes"]
    address_of: dict[tuple[str, str], IPv4Interface] = {}  # (node, interface) -> address
    for node in plan.nodes:
        for command in nodes[host_label(node.name)].get("exec", []):
            ip, address, add, interface, dev, name = command.split()
            assert (ip, address, add, dev) == ("ip", "address", "add", "dev")
            address_of[(host_label(node.name), name)] = IPv4Interface(interface)
    links = [link["endpoints"] for link in doc["topology"]["links"]]
    classical = [ends for ends in links if all(end.split(":")[1].startswith("c") for end in ends)]
    assert len(classical) == len(plan.links)
    assert len(address_of) == 2 * len(plan.links)  # an address at both ends of each, no other
    for ends in classical:
        a, b = (tuple(end.split(":")) for end in ends)
        assert address_of[a].network == address_of[b].network  # one /31 per link
        assert address_of[a].network.prefixlen == 31 and address_of[a] != address_of[b]
    for node in plan.nodes:
        km = km_config.load(out / STATE / "config" / f"km-{node.name}.yaml", env={})
        cert = x509.load_pem_x509_certificate(km.tls.cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for peer in km.peers:
            [ends] = [
                e
                for e in classical
                if {x.split(":")[0] for x in e} == {host_label(node.name), host_label(peer.node)}
            ]
            [peer_end] = [
                tuple(e.split(":")) for e in ends if e.startswith(host_label(peer.node) + ":")
            ]
            assert str(peer.relay) == f"{address_of[peer_end].ip}:{PORTS.relay}"
        own = {address_of[key].ip for key in address_of if key[0] == host_label(node.name)}
        assert own <= set(san.get_values_for_type(x509.IPAddress))  # peers dial it there


def test_the_command_writes_the_topology_beside_its_files(tmp_path: Path) -> None:
    out = tmp_path / "clab"
    assert main(["lab", "export", "triangle", "--to", "containerlab", str(out)]) == 0
    doc = yaml.safe_load((out / "triangle.clab.yml").read_text())
    assert len(doc["topology"]["nodes"]) == 7
    assert (out / STATE / "agents" / "qnode1").is_dir()
