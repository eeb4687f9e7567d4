"""The lab plan turned into each process's own configuration file (agent, km, controller).

`process_configs(plan)` is pure: process name ("agent-<node>", "km-<node>", "controller")
-> the YAML data of its file, with paths relative to the folder the files go to
(STATE_DIR/config by default). `hosts` gives a node's address (a network-namespace lab, a
cluster's service names); `listen` overrides the host the servers bind (e.g. "0.0.0.0" in a
container) while the others still reach them at `hosts`. `write_process_configs` writes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from common.config import Address
from lab.plan import LabPlan, LinkPlan, NodePlan

DEFAULT_HOST = "127.0.0.1"
CONTROLLER = "controller"


def config_dir(plan: LabPlan) -> Path:
    return Path(plan.state_dir) / "config"


def agent_name(node: str) -> str:
    return f"agent-{node}"


def km_name(node: str) -> str:
    return f"km-{node}"


def process_configs(
    plan: LabPlan,
    hosts: Mapping[str, str] | None = None,
    *,
    listen: str | None = None,
    folder: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Every process's configuration data, by process name (see the module docstring).

    `hosts`: node name (or "controller") -> host; a missing name is 127.0.0.1."""
    hosts = dict(hosts or {})
    place = _Place(plan, hosts, listen, folder or config_dir(plan))
    configs: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        configs[agent_name(node.name)] = _agent(plan, node, place)
    for node in plan.nodes:
        configs[km_name(node.name)] = _km(plan, node, place)
    configs[CONTROLLER] = _controller(plan, place)
    return configs


def write_process_configs(
    plan: LabPlan, hosts: Mapping[str, str] | None = None, *, listen: str | None = None
) -> dict[str, Path]:
    """Writes STATE_DIR/config/<name>.yaml for every process; returns name -> file."""
    folder = config_dir(plan)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, data in process_configs(plan, hosts, listen=listen, folder=folder).items():
        path = folder / f"{name}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        tmp.replace(path)
        written[name] = path
    return written


class _Place:
    """Addresses and relative paths for one set of files."""

    def __init__(
        self, plan: LabPlan, hosts: Mapping[str, str], listen: str | None, folder: Path
    ) -> None:
        self.plan = plan
        self.hosts = hosts
        self.listen = listen
        self.folder = folder

    def host(self, name: str) -> str:
        return self.hosts.get(name, DEFAULT_HOST)

    def address(self, name: str, port: int) -> str:
        """Where others reach `name`'s server on `port`."""
        return str(Address(_bare(self.host(name)), port))

    def bind(self, name: str, port: int) -> str:
        """Where `name`'s server on `port` listens."""
        return str(Address(_bare(self.listen or self.host(name)), port))

    def path(self, path: str | Path) -> str:
        return os.path.relpath(Path(path), self.folder)


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _metrics(plan: LabPlan, config: str, host: str, place: _Place) -> dict[str, str]:
    """The `metrics` listen field of config `config` when the plan gives it a port."""
    port = plan.metrics_ports.get(config)
    return {} if port is None else {"metrics": place.bind(host, port)}


def _agent(plan: LabPlan, node: NodePlan, place: _Place) -> dict[str, Any]:
    creds = plan.credentials
    state = Path(plan.state_dir)
    name = node.name
    return {
        "node": name,
        "qkdn_id": node.qkdn_id,
        "location": node.location,
        "listen": {
            "netconf": place.bind(name, node.netconf_port),
            "grpc": place.bind(name, node.agent_grpc_port),
            **_metrics(plan, agent_name(name), name, place),
        },
        "netconf": {
            "username": creds.netconf_username,
            "password_file": place.path(creds.password_file),
            "authorized_keys_file": place.path(f"{creds.client_key}.pub"),
            "host_key": place.path(creds.host_key),
        },
        # gRPC takes mutual TLS: who may call what is agents/grpc_auth.py's rule.
        "tls": {
            "cert": place.path(plan.agent_certs[name][0]),
            "key": place.path(plan.agent_certs[name][1]),
            "ca": place.path(creds.ca_cert),
        },
        "data_dir": place.path(state / "agents" / name),
        # The twin's nodes share one host: an fsync per commit (0.7 ms on a VM disk, on the
        # agents' event loop) would guard against a power loss that stops the whole twin
        # anyway; rewritten in place, running still survives an agent restart or crash.
        "durable": False,
        "perf_interval_s": 10.0,
        "key_manager": {
            "etsi014_url": f"https://{place.address(name, node.km_etsi014_port)}",
            "etsi004": place.address(name, node.km_etsi004_port),
            "relay": place.address(name, node.km_relay_port),
        },
        "links": [_agent_link(plan, link, name, place) for link in plan.links_of(name)],
        "module": {
            "key_size_bits": plan.settings.key_size_bits,
            "link_pool_max_bits": plan.settings.link_pool_max_bits,
        },
    }


def _agent_link(plan: LabPlan, link: LinkPlan, name: str, place: _Place) -> dict[str, Any]:
    peer = link.other_end(name)
    return {
        "qkdl_id": link.qkdl_id,
        "local_qkdi_id": link.qkdi_at(name),
        "peer": {"node": peer, "qkdn_id": plan.node(peer).qkdn_id, "qkdi_id": link.qkdi_at(peer)},
        "role": "transmitter" if name == link.a else "receiver",
        "length_km": link.length_km,
        "extra_loss_db": link.extra_loss_db,
        "preset": link.preset,
        "skr_bps": link.skr_bps,
        "qber": link.qber,
        "seed_file": place.path(link.seed_file),
    }


def _km(plan: LabPlan, node: NodePlan, place: _Place) -> dict[str, Any]:
    state = Path(plan.state_dir)
    name = node.name
    cert, key = plan.node_certs.get(
        name, (str(state / "pki" / f"km-{name}.pem"), str(state / "pki" / f"km-{name}.key"))
    )
    settings = plan.settings
    return {
        "node": name,
        "qkdn_id": node.qkdn_id,
        "listen": {
            "etsi014": place.bind(name, node.km_etsi014_port),
            "etsi004": place.bind(name, node.km_etsi004_port),
            "relay": place.bind(name, node.km_relay_port),
            **_metrics(plan, km_name(name), name, place),
        },
        "agent": place.address(name, node.agent_grpc_port),
        "peers": [
            {
                "node": peer.name,
                "qkdn_id": peer.qkdn_id,
                "relay": place.address(peer.name, peer.km_relay_port),
                "qkdl_id": link.qkdl_id,
            }
            for link in plan.links_of(name)
            for peer in [plan.node(link.other_end(name))]
        ],
        "tls": {
            "cert": place.path(cert),
            "key": place.path(key),
            "ca": place.path(plan.credentials.ca_cert),
        },
        "data_dir": place.path(state / "km" / name),
        "policy": None,
        "applications": {app.sae_id: app.node for app in plan.apps},
        "nodes": {n.name: n.qkdn_id for n in plan.nodes},
        "settings": {
            "key_size_bits": settings.key_size_bits,
            "relay_mode": settings.relay_mode,
            "e2e_buffer": settings.e2e_buffer,
            "link_pool_max_bits": settings.link_pool_max_bits,
            "max_key_per_request": settings.max_key_per_request,
            "max_key_size_bits": settings.max_key_size_bits,
            "min_key_size_bits": settings.min_key_size_bits,
        },
    }


def _controller(plan: LabPlan, place: _Place) -> dict[str, Any]:
    creds = plan.credentials
    return {
        "listen": {
            "api": place.bind(CONTROLLER, plan.controller.api_port),
            **_metrics(plan, CONTROLLER, CONTROLLER, place),
        },
        "nodes": [
            {
                "name": node.name,
                "qkdn_id": node.qkdn_id,
                "netconf": place.address(node.name, node.netconf_port),
            }
            for node in plan.nodes
        ],
        "netconf": {
            "username": creds.netconf_username,
            "password_file": place.path(creds.password_file),
            "client_key": place.path(creds.client_key),
            "known_host_key": place.path(f"{creds.host_key}.pub"),
        },
        "tls": {
            "cert": place.path(plan.controller.cert),
            "key": place.path(plan.controller.key),
            "ca": place.path(creds.ca_cert),
        },
        "api_token_file": (
            place.path(plan.controller_token_file) if plan.controller_token_file else None
        ),
        "policy": "fewest-hops",
        "forced_paths": {pair: list(path) for pair, path in plan.forced_paths.items()},
        "allow_preemption": False,
        "relay": {"mode": plan.settings.relay_mode, "e2e_buffer": plan.settings.e2e_buffer},
        "poll_interval_s": 5.0,
    }


def controller_url(plan: LabPlan, hosts: Mapping[str, str] | None = None) -> str:
    """The controller API's URL as the lab's own commands reach it."""
    host = (hosts or {}).get(CONTROLLER, DEFAULT_HOST)
    return f"http://{Address(_bare(host), plan.controller.api_port)}"
