"""Plans an exported network: per process its config file, the files it reads and its ports.

Every container sees the lab's state directory layout under CONTAINER_ROOT (config/, pki/,
ssh/, secrets/, agents/<node>/, km/<node>/), so the per-process files of lab/configs.py keep
the paths relative to their own folder that the local twin uses. Addresses are the names an
engine gives a node (a Kubernetes Service DNS name, a containerlab node name); the ports are
fixed and the same in every container; servers listen on 0.0.0.0. A network of several
domains keeps one CA per domain: each process gets only its own domain's files (and, on a
border key manager, the peer domains' CA certificates its operator trusts).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from lab.configs import CONTROLLER, agent_name, km_name, process_configs, write_process_configs
from lab.plan import LabPlan, controller_role_tokens
from lab.topology import Topology, load_topology

CONTAINER_ROOT = PurePosixPath("/var/lib/qkdsdn")
# The one controller API token of a deployment (role admin); the lab's per-role files are not
# left beside it (an operator reaching for "the token" finds only this one).
TOKEN_FILE = PurePosixPath("secrets/controller-token-admin")
LAB_TOKEN_FILE = PurePosixPath("secrets/controller-token")  # the lab's operator-role file
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    """The ports every exported process listens on (the same in every container)."""

    netconf: int = 8300
    agent_grpc: int = 8301  # loopback only: the node's KM shares the agent's network namespace
    etsi014: int = 8302
    etsi004: int = 8303
    relay: int = 8304
    skip: int = 8305
    restconf: int = 8306
    etsi020: int = 8307  # a border KM's ETSI 020 server (several domains)
    controller_api: int = 8500


PORTS = Ports()


@dataclass(frozen=True)
class Addressing:
    """Where the others reach each node and the controller (`hosts`: name -> host), where a
    key manager reaches a neighbour's relay when not at its host (`relay_hosts`: (node,
    peer) -> host, e.g. the peer's end of their classical link), and the names each node's
    key manager certificate must carry (`sans`: node -> names). In a network of several
    domains `hosts` also names each domain's controller ("controller-A"), and a border KM's
    ETSI 020 server is reached at `interdomain_hosts[node]` (default: its host)."""

    hosts: Mapping[str, str]
    sans: Mapping[str, Sequence[str]]
    relay_hosts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    interdomain_hosts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StateFile:
    """A file a process reads: where it sits in the state layout and where it is here."""

    path: PurePosixPath  # relative to the state directory, e.g. pki/km-qnode1.pem
    source: Path


@dataclass(frozen=True)
class Process:
    name: str  # agent-qnode1, km-qnode1, controller (controller-A: domain A's)
    role: str  # agent, km or controller: the `qkdsdn` command group
    node: str | None
    config: Mapping[str, Any]
    files: tuple[StateFile, ...]  # read-only inputs, the config file not included
    data_dir: PurePosixPath | None  # writable, relative to the state directory
    ports: Mapping[str, int]  # reachable from outside the process's network namespace
    domain: str = ""  # its domain in a network of several domains ("": one domain)

    @property
    def config_path(self) -> PurePosixPath:
        return PurePosixPath("config") / f"{self.name}.yaml"

    @property
    def command(self) -> tuple[str, ...]:
        """Arguments of the image's `qkdsdn` entry point."""
        return (self.role, "run", "--config", str(CONTAINER_ROOT / self.config_path))


@dataclass(frozen=True)
class ExportedNetwork:
    name: str
    plan: LabPlan
    processes: tuple[Process, ...]

    def process(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(f"no process {name!r} in the exported network")

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(node.name for node in self.plan.nodes)

    @property
    def controllers(self) -> tuple[Process, ...]:
        """The controller, or each domain's ("controller-A", ...) in the plan's order."""
        return tuple(self.process(name) for name in self.plan.controller_processes())

    def domain_nodes(self, domain: str) -> tuple[str, ...]:
        """The nodes of `domain` ("": every node of a network of one domain)."""
        return tuple(n.name for n in self.plan.nodes if not domain or n.domain == domain)


class ExportError(Exception):
    """The network cannot be exported as asked (names, files)."""


DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def host_label(node: str, longest_suffix: str = "") -> str:
    """A node's name as a host name (a DNS-1035 label): lower case, '_' as '-'. The names an
    engine makes from it (the label plus at most `longest_suffix`) must fit 63 characters."""
    label = node.lower().replace("_", "-")
    if not DNS_LABEL.fullmatch(label) or len(label + longest_suffix) > 63:
        raise ExportError(
            f"node {node!r}: not usable as a host name ({label + longest_suffix!r} must be a "
            "DNS label of at most 63 characters)"
        )
    return label


def host_labels(nodes: Sequence[str], longest_suffix: str = "") -> dict[str, str]:
    """Node -> host label; refuses two nodes with one label and a node named 'controller'."""
    labels: dict[str, str] = {}
    owners: dict[str, str] = {}
    for node in nodes:
        label = host_label(node, longest_suffix)
        if label == CONTROLLER:
            raise ExportError(f"node {node!r}: the name 'controller' is the controller's")
        if label in owners:
            raise ExportError(f"nodes {owners[label]!r} and {node!r} have one host name {label!r}")
        labels[node] = owners[label] = label
    return {node: labels[node] for node in nodes}


def plan_export(
    topology_file: Path,
    state_dir: Path,
    addressing: Callable[[Topology], Addressing],
    *,
    ca: tuple[Path, Path] | None = None,
) -> ExportedNetwork:
    """Resolves the topology with fixed ports and the engine's addresses, makes (or reuses)
    the secrets under `state_dir` (lab PKI signed by `ca` when given, or one CA per domain;
    SSH keys, link seeds, each controller's API token and the peer controllers' tokens),
    writes every process's file to `state_dir/config` and checks each with its part's own
    loader."""
    from lab.launcher import make_plan
    from lab.pki import create_domain_pki, create_lab_pki, load_ca

    topology = load_topology(topology_file)
    if topology.domains and ca is not None:
        raise ExportError(
            "a network of several domains has one CA per domain (made under the state "
            "folder): --ca-cert/--ca-key are for a network of one domain"
        )
    address = addressing(topology)
    state_dir = state_dir.resolve()
    plan = _fixed_ports(
        make_plan(topology, topology_file, state_dir, ca=ca, with_pki=False, metrics=False)
    )
    if plan.domains:
        for domain in plan.domains:
            create_domain_pki(
                state_dir,
                domain.name,
                domain.nodes,
                [app.sae_id for app in plan.apps if app.node in domain.nodes],
                km_hosts={node: address.sans[node] for node in domain.nodes},
            )
    else:
        create_lab_pki(
            state_dir,
            [node.name for node in plan.nodes],
            [app.sae_id for app in plan.apps],
            ca=load_ca(*ca) if ca is not None else None,
            km_hosts=address.sans,
        )
    tokens = {
        name: _admin_token(state_dir, lab_file) for name, lab_file in _lab_tokens(plan, state_dir)
    }
    folder = state_dir / "config"
    # The lab's own writer first: the files beside the configs (an access policy) come too;
    # the deployment's versions of the configs then replace the lab's.
    write_process_configs(plan, address.hosts, listen="0.0.0.0", peer_relays=True)
    configs = deployment_configs(
        process_configs(plan, address.hosts, listen="0.0.0.0", folder=folder),
        address.relay_hosts,
        tokens={name: os.path.relpath(path, folder) for name, path in tokens.items()},
        interdomain_hosts={
            node.name: address.interdomain_hosts.get(node.name, address.hosts[node.name])
            for node in plan.nodes
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    processes = []
    for name, data in configs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        process = _process(name, data, folder / f"{name}.yaml", state_dir)
        processes.append(replace(process, domain=_domain_of(plan, process)))
    return ExportedNetwork(name=plan.name, plan=plan, processes=tuple(processes))


def _domain_of(plan: LabPlan, process: Process) -> str:
    if not plan.domains:
        return ""
    if process.node is not None:
        return plan.node(process.node).domain
    return next(d.name for d in plan.domains if d.process == process.name)


def _lab_tokens(plan: LabPlan, state_dir: Path) -> list[tuple[str, Path]]:
    """Each controller process and the lab's operator token file of its API."""
    if plan.domains:
        return [(domain.process, Path(domain.token_file)) for domain in plan.domains]
    return [(CONTROLLER, state_dir / LAB_TOKEN_FILE)]


def _admin_token(state_dir: Path, lab_file: Path) -> Path:
    """The one (admin) API token of a controller in a deployment, made once; the lab's other
    role files beside it are removed. STATE/secrets/controller-token-admin for the one
    controller, STATE/secrets/controller-A-token-admin for domain A's."""
    token = Path(controller_role_tokens(str(lab_file))["admin"])
    if not token.exists():
        _write_secret(token, secrets.token_urlsafe(32).encode())
    for path in controller_role_tokens(str(lab_file)).values():
        if Path(path) != token:
            Path(path).unlink(missing_ok=True)
    return token


def _fixed_ports(plan: LabPlan) -> LabPlan:
    return replace(
        plan,
        nodes=tuple(
            replace(
                node,
                netconf_port=PORTS.netconf,
                agent_grpc_port=PORTS.agent_grpc,
                km_etsi014_port=PORTS.etsi014,
                km_etsi004_port=PORTS.etsi004,
                km_relay_port=PORTS.relay,
                km_skip_port=PORTS.skip if node.km_skip_port else 0,
                restconf_port=PORTS.restconf if node.restconf_port else 0,
                km_etsi020_port=PORTS.etsi020 if node.km_etsi020_port else 0,
            )
            for node in plan.nodes
        ),
        controller=replace(plan.controller, api_port=PORTS.controller_api),
        domains=tuple(
            replace(d, controller=replace(d.controller, api_port=PORTS.controller_api))
            for d in plan.domains
        ),
        agent_groups=(),
    )


def deployment_configs(
    configs: Mapping[str, dict[str, Any]],
    relay_hosts: Mapping[tuple[str, str], str] | None = None,
    *,
    tokens: Mapping[str, str] | None = None,
    interdomain_hosts: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """What a deployment changes in the twin's files: the agent's gRPC (plaintext) listens
    on loopback only and its KM, in the same network namespace, reaches it there; a KM
    reaches a neighbour's relay at `relay_hosts[(node, peer)]` when given; commits are
    fsynced (each node has its own disk); each controller's API, reachable on the network,
    asks for a bearer token (`tokens`: controller process -> its file, relative to the
    config folder; default TOKEN_FILE). A border KM's ETSI 020 server, listening on
    0.0.0.0, advertises `interdomain_hosts[node]` (its ack callback's host) and reaches its
    peer at `interdomain_hosts[peer]`."""
    relay_hosts = relay_hosts or {}
    interdomain_hosts = interdomain_hosts or {}
    tokens = tokens or {CONTROLLER: os.path.join("..", str(TOKEN_FILE))}
    changed = {name: dict(data) for name, data in configs.items()}
    grpc = f"{LOOPBACK}:{PORTS.agent_grpc}"
    for name, data in changed.items():
        if name.startswith(agent_name("")):
            data["listen"] = {**data["listen"], "grpc": grpc}
            data["durable"] = True
        elif name.startswith(km_name("")):
            data["agent"] = grpc
            data["peers"] = [
                {**peer, "relay": f"{relay_hosts[(data['node'], peer['node'])]}:{PORTS.relay}"}
                if (data["node"], peer["node"]) in relay_hosts
                else peer
                for peer in data["peers"]
            ]
            if data.get("interdomain") and data["node"] in interdomain_hosts:
                data["interdomain"] = _interdomain(
                    data["interdomain"], data["node"], interdomain_hosts
                )
    for name, token in tokens.items():
        changed[name]["api_token_file"] = token
        # a deployment keeps one (admin) token and no audit file (its config may be read-only)
        changed[name].pop("api_tokens", None)
        changed[name].pop("audit_log", None)
    return changed


def _interdomain(section: Mapping[str, Any], node: str, hosts: Mapping[str, str]) -> dict[str, Any]:
    """A border KM's 020 section in a deployment: advertised and peers at `hosts`."""
    port = PORTS.etsi020
    return {
        **section,
        "advertise": f"{hosts[node]}:{port}",
        "peers": [
            {**peer, "url": f"https://{hosts[peer['kme_id']]}:{port}/kmapi/v1"}
            if peer["kme_id"] in hosts
            else peer
            for peer in section["peers"]
        ],
    }


def _process(name: str, data: Mapping[str, Any], config_file: Path, state_dir: Path) -> Process:
    """The process's files, as its own part's loader reads them (so the file is checked)."""
    from agents import config as agent_config
    from controller import config as controller_config
    from km import config as km_config

    role = CONTROLLER if name == CONTROLLER else name.split("-", 1)[0]
    loaders = {
        "agent": agent_config.load,
        "km": km_config.load,
        "controller": controller_config.load,
    }
    try:
        loaded = loaders[role](config_file, env={})
    except ValueError as error:  # ConfigError: file, field, why
        raise ExportError(str(error)) from None
    files: dict[PurePosixPath, StateFile] = {}
    data_dir: PurePosixPath | None = None
    for name_of_field, path in paths_of(loaded):
        path = path.resolve()
        if not path.is_relative_to(state_dir):
            raise ExportError(f"{config_file}: {name_of_field}: {path} lies outside {state_dir}")
        relative = PurePosixPath(path.relative_to(state_dir).as_posix())
        if name_of_field == "data_dir":
            data_dir = relative
        else:
            files[relative] = StateFile(relative, path)
    return Process(
        name=name,
        role=role,
        node=str(data["node"]) if role != CONTROLLER else None,
        config=data,
        files=tuple(files[path] for path in sorted(files)),
        data_dir=data_dir,
        ports=_public_ports(role, border=bool(data.get("interdomain"))),
    )


def paths_of(value: Any, name: str = "") -> Iterator[tuple[str, Path]]:
    """(field name, path) of every path in a loaded config, but the config file's own."""
    if isinstance(value, Path):
        yield name, value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            if item.name != "file":
                yield from paths_of(getattr(value, item.name), item.name)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from paths_of(item, name)


def _public_ports(role: str, border: bool = False) -> dict[str, int]:
    if role == "agent":
        return {"netconf": PORTS.netconf, "restconf": PORTS.restconf}
    if role == "km":
        ports = {"etsi014": PORTS.etsi014, "etsi004": PORTS.etsi004, "relay": PORTS.relay}
        return {**ports, "etsi020": PORTS.etsi020} if border else ports
    return {"api": PORTS.controller_api}


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
