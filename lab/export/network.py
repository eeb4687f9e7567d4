"""Plans an exported network: per process its config file, the files it reads and its ports.

Every container sees the lab's state directory layout under CONTAINER_ROOT (config/, pki/,
ssh/, secrets/, agents/<node>/, km/<node>/), so the per-process files keep the paths relative
to their own folder that the local twin uses. Addresses are the names an engine gives a node
(Kubernetes Service DNS names, containerlab node names); the ports are fixed, well known.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from lab.plan import LabPlan
from lab.topology import load_topology

CONTAINER_ROOT = PurePosixPath("/var/lib/qkdsdn")
TOKEN_FILE = PurePosixPath("secrets/controller-token")


@dataclass(frozen=True)
class Ports:
    """The ports every exported process listens on (the same in every container)."""

    netconf: int = 8300
    agent_grpc: int = 8301  # loopback only: the node's KM shares the agent's network namespace
    etsi014: int = 8302
    etsi004: int = 8303
    relay: int = 8304
    controller_api: int = 8500


PORTS = Ports()


@dataclass(frozen=True)
class Hosts:
    """How the others reach one node: the controller its NETCONF, applications its key
    manager (ETSI 014/004), peer key managers its relay; `sans` go in its KM certificate."""

    netconf: str
    kme: str
    relay: str
    sans: tuple[str, ...]


@dataclass(frozen=True)
class StateFile:
    """A file a process reads: where it sits in the state layout and where it is here."""

    path: PurePosixPath  # relative to the state directory, e.g. pki/km-qnode1.pem
    source: Path
    secret: bool


@dataclass(frozen=True)
class Process:
    name: str  # agent-qnode1, km-qnode1, controller
    role: str  # agent, km or controller: the `qkdsdn` command group
    node: str | None
    config: Mapping[str, Any]
    files: tuple[StateFile, ...]  # read-only inputs, the config file not included
    data_dir: PurePosixPath | None  # writable, relative to the state directory
    ports: Mapping[str, int]  # reachable from outside the process's network namespace

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


class ExportError(Exception):
    """The network cannot be exported as asked (names, files); nothing was written."""


def plan_export(
    topology_file: Path,
    state_dir: Path,
    hosts: Callable[[str], Hosts],
    *,
    ca: tuple[Path, Path] | None = None,
) -> ExportedNetwork:
    """Resolves the topology with fixed ports and `hosts` addresses, makes (or reuses) the
    secrets under `state_dir` (lab PKI signed by `ca` when given, SSH keys, seeds, the
    controller's API token) and writes every process's config file to `state_dir/config`."""
    from lab.launcher import make_plan
    from lab.pki import create_lab_pki, load_ca

    topology = load_topology(topology_file)
    state_dir = state_dir.resolve()
    plan = make_plan(topology, topology_file, state_dir, ca=ca, with_pki=False)
    plan = replace(
        plan,
        nodes=tuple(
            replace(
                node,
                netconf_port=PORTS.netconf,
                agent_grpc_port=PORTS.agent_grpc,
                km_etsi014_port=PORTS.etsi014,
                km_etsi004_port=PORTS.etsi004,
                km_relay_port=PORTS.relay,
            )
            for node in plan.nodes
        ),
        controller=replace(plan.controller, api_port=PORTS.controller_api),
        agent_groups=(),
    )
    addresses = {node.name: hosts(node.name) for node in plan.nodes}
    own_ca = load_ca(*ca) if ca is not None else None
    create_lab_pki(
        state_dir,
        [node.name for node in plan.nodes],
        [app.sae_id for app in plan.apps],
        ca=own_ca,
        km_hosts={name: address.sans for name, address in addresses.items()},
    )
    _agent_certificates(state_dir, plan, own_ca)
    _controller_token(state_dir)
    configs = spec_configs(plan, addresses)
    processes = tuple(_process(name, data, state_dir) for name, data in configs.items())
    _write_configs(state_dir, processes)
    return ExportedNetwork(name=plan.name, plan=plan, processes=processes)


# ---------------------------------------------------------------- files of each process

# Fields of the per-process files that name a file to read (docs/configuration.md).
_FILE_FIELDS = frozenset(
    {
        "cert",
        "key",
        "ca",
        "password_file",
        "authorized_keys_file",
        "host_key",
        "seed_file",
        "client_key",
        "api_token_file",
    }
)
_FILE_FIELDS_OF = {"km": _FILE_FIELDS | {"policy"}}  # the controller's policy is a path policy
_PUBLIC_SUFFIXES = (".pem", ".pub", ".yaml")


def _paths_in(
    data: Any, fields: frozenset[str], where: str = ""
) -> Iterator[tuple[str, str]]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            if key in fields and isinstance(value, str):
                yield here, value
            else:
                yield from _paths_in(value, fields, here)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _paths_in(item, fields, f"{where}[{index}]")


def _process(name: str, config: Mapping[str, Any], state_dir: Path) -> Process:
    config_dir = state_dir / "config"
    role = name.split("-", 1)[0]
    files: dict[PurePosixPath, StateFile] = {}
    for where, value in _paths_in(config, _FILE_FIELDS_OF.get(role, _FILE_FIELDS)):
        source = (config_dir / value).resolve()
        if not source.is_relative_to(state_dir):
            raise ExportError(f"{name}: {where}: {value} lies outside the state directory")
        if not source.is_file():
            raise ExportError(f"{name}: {where}: {source} does not exist")
        relative = PurePosixPath(source.relative_to(state_dir).as_posix())
        secret = not relative.name.endswith(_PUBLIC_SUFFIXES) or relative.name == "ca.key"
        files[relative] = StateFile(relative, source, secret)
    data_dir = config.get("data_dir")
    node = config.get("node") if role != "controller" else None
    return Process(
        name=name,
        role=role,
        node=str(node) if node is not None else None,
        config=config,
        files=tuple(files[path] for path in sorted(files)),
        data_dir=(
            PurePosixPath((config_dir / str(data_dir)).resolve().relative_to(state_dir).as_posix())
            if data_dir is not None
            else None
        ),
        ports=_public_ports(role),
    )


def _public_ports(role: str) -> dict[str, int]:
    if role == "agent":
        return {"netconf": PORTS.netconf}
    if role == "km":
        return {"etsi014": PORTS.etsi014, "etsi004": PORTS.etsi004, "relay": PORTS.relay}
    return {"api": PORTS.controller_api}


def _write_configs(state_dir: Path, processes: tuple[Process, ...]) -> None:
    import yaml

    config_dir = state_dir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    for process in processes:
        text = yaml.safe_dump(dict(process.config), sort_keys=False)
        (state_dir / process.config_path).write_text(text)


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _controller_token(state_dir: Path) -> None:
    path = state_dir / TOKEN_FILE
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(24).encode())


def _agent_certificates(state_dir: Path, plan: LabPlan, own_ca: Any) -> None:
    """The agents' gRPC identity (pki/agent-<node>.pem), signed by the same CA."""
    from lab.pki import CertPaths, issue_certificate, load_ca

    pki = state_dir / "pki"
    ca = own_ca if own_ca is not None else load_ca(pki / "ca.pem", pki / "ca.key")
    for node in plan.nodes:
        stem = f"agent-{node.name}"
        issue_certificate(
            ca,
            node.name,
            CertPaths(pki / f"{stem}.pem", pki / f"{stem}.key"),
            server=True,
            client=True,
            reuse=True,
        )


# ---------------------------------------------------------------- temporary config builder


def _rel(path: str | Path, state_dir: Path) -> str:
    return os.path.relpath(Path(path), state_dir / "config")


def spec_configs(plan: LabPlan, hosts: Mapping[str, Hosts]) -> dict[str, dict[str, Any]]:
    """The per-process files of docs/configuration.md for an exported network.

    TEMPORARY: follows the spec until lab/configs.py (branch `configs`) lands; then its
    `process_configs` replaces this function."""
    state_dir = Path(plan.state_dir)
    pki = state_dir / "pki"
    creds = plan.credentials
    ids = {node.name: node.qkdn_id for node in plan.nodes}
    configs: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        host = hosts[node.name]
        links = plan.links_of(node.name)
        configs[f"agent-{node.name}"] = {
            "node": node.name,
            "qkdn_id": node.qkdn_id,
            "location": node.location,
            "listen": {
                "netconf": f"0.0.0.0:{PORTS.netconf}",
                "grpc": f"127.0.0.1:{PORTS.agent_grpc}",
            },
            "netconf": {
                "username": creds.netconf_username,
                "password_file": _rel(creds.password_file, state_dir),
                "authorized_keys_file": _rel(f"{creds.client_key}.pub", state_dir),
                "host_key": _rel(creds.host_key, state_dir),
            },
            "tls": {
                "cert": _rel(pki / f"agent-{node.name}.pem", state_dir),
                "key": _rel(pki / f"agent-{node.name}.key", state_dir),
                "ca": _rel(creds.ca_cert, state_dir),
            },
            "data_dir": f"../agents/{node.name}",
            "durable": True,
            "perf_interval_s": 1.0,
            "key_manager": {
                "etsi014_url": f"https://{host.kme}:{PORTS.etsi014}",
                "relay": f"{host.relay}:{PORTS.relay}",
            },
            "links": [
                {
                    "qkdl_id": link.qkdl_id,
                    "local_qkdi_id": link.qkdi_at(node.name),
                    "peer": {
                        "node": link.other_end(node.name),
                        "qkdn_id": ids[link.other_end(node.name)],
                        "qkdi_id": link.qkdi_at(link.other_end(node.name)),
                    },
                    "length_km": link.length_km,
                    "extra_loss_db": link.extra_loss_db,
                    "preset": link.preset,
                    "skr_bps": link.skr_bps,
                    "qber": link.qber,
                    "seed_file": _rel(link.seed_file, state_dir),
                }
                for link in links
            ],
        }
        cert, key = plan.node_certs[node.name]
        configs[f"km-{node.name}"] = {
            "node": node.name,
            "qkdn_id": node.qkdn_id,
            "listen": {
                "etsi014": f"0.0.0.0:{PORTS.etsi014}",
                "etsi004": f"0.0.0.0:{PORTS.etsi004}",
                "relay": f"0.0.0.0:{PORTS.relay}",
            },
            "agent": f"127.0.0.1:{PORTS.agent_grpc}",
            "peers": [
                {
                    "node": link.other_end(node.name),
                    "qkdn_id": ids[link.other_end(node.name)],
                    "relay": f"{hosts[link.other_end(node.name)].relay}:{PORTS.relay}",
                }
                for link in links
            ],
            "tls": {
                "cert": _rel(cert, state_dir),
                "key": _rel(key, state_dir),
                "ca": _rel(creds.ca_cert, state_dir),
            },
            "data_dir": f"../km/{node.name}",
            "policy": None,
            "applications": {app.sae_id: app.node for app in plan.apps},
            "nodes": dict(ids),
            "settings": {
                "key_size_bits": plan.settings.key_size_bits,
                "relay_mode": plan.settings.relay_mode,
                "e2e_buffer": plan.settings.e2e_buffer,
                "link_pool_max_bits": plan.settings.link_pool_max_bits,
                "max_key_per_request": plan.settings.max_key_per_request,
                "max_key_size_bits": plan.settings.max_key_size_bits,
                "min_key_size_bits": plan.settings.min_key_size_bits,
            },
        }
    configs["controller"] = {
        "listen": {"api": f"0.0.0.0:{PORTS.controller_api}"},
        "nodes": [
            {
                "name": node.name,
                "qkdn_id": node.qkdn_id,
                "netconf": f"{hosts[node.name].netconf}:{PORTS.netconf}",
            }
            for node in plan.nodes
        ],
        "netconf": {
            "username": creds.netconf_username,
            "password_file": _rel(creds.password_file, state_dir),
            "client_key": _rel(creds.client_key, state_dir),
        },
        "api_token_file": _rel(state_dir / TOKEN_FILE, state_dir),
        "policy": "fewest-hops",
        "forced_paths": {pair: list(path) for pair, path in plan.forced_paths.items()},
        "allow_preemption": False,
    }
    return configs
