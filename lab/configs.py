"""The lab plan turned into each process's own configuration file (agent, km, controller).

`process_configs(plan)` is pure: process name ("agent-<node>", "km-<node>", "controller")
-> the YAML data of its file, with paths relative to the folder the files go to
(STATE_DIR/config by default). `hosts` gives a node's address (a network-namespace lab, a
cluster's service names); `listen` overrides the host the servers bind (e.g. "0.0.0.0" in a
container) while the others still reach them at `hosts`. `write_process_configs` writes them.
`peer_relays=False` (or QKDSDN_LAB_PEER_RELAYS=learn for `lab up`) leaves the peers' relay
addresses out of the key managers' files: they learn them from the network instead.
A twin of several domains (docs/cross-domain.md) is configured domain by domain from the
plan's view of each: its CA, its controller ("controller-<domain>", with a `domain`
section), its border KMs' `interdomain` section; a foreign SAE maps to the border toward it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from common.config import Address
from lab.pki import OPERATOR
from lab.plan import LabPlan, LinkPlan, NodePlan, controller_role_tokens, peer_token_file

DEFAULT_HOST = "127.0.0.1"
CONTROLLER = "controller"
# QKDSDN_LAB_PEER_RELAYS: "config" (default) writes each KM's peers' relay addresses in its
# file; "learn" leaves them out (the KMs learn them from the controller's installs).
PEER_RELAYS_ENV = "QKDSDN_LAB_PEER_RELAYS"
PEER_RELAYS_CHOICES = ("config", "learn")


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
    peer_relays: bool = True,
) -> dict[str, dict[str, Any]]:
    """Every process's configuration data, by process name (see the module docstring).

    `hosts`: node name (or "controller") -> host; a missing name is 127.0.0.1.
    `peer_relays=False`: the key managers' peers carry no relay address (learned)."""
    hosts = dict(hosts or {})
    if plan.domains:
        return _domain_configs(plan, hosts, listen, folder or config_dir(plan), peer_relays)
    place = _Place(plan, hosts, listen, folder or config_dir(plan), peer_relays)
    configs: dict[str, dict[str, Any]] = {}
    for node in plan.nodes:
        configs[agent_name(node.name)] = _agent(plan, node, place)
    for node in plan.nodes:
        configs[km_name(node.name)] = _km(plan, node, place)
    configs[CONTROLLER] = _controller(plan, place)
    return configs


# The `interdomain` and `domain` sections' timers (docs/cross-domain.md).
ACK_TIMEOUT_S = 5.0
RESERVATION_TTL_S = 10.0
PEER_TIMEOUT_S = 3.0


def _domain_configs(
    plan: LabPlan, hosts: dict[str, str], listen: str | None, folder: Path, peer_relays: bool
) -> dict[str, dict[str, Any]]:
    """Every process's configuration in a twin of several domains, domain by domain."""
    configs: dict[str, dict[str, Any]] = {}
    for domain in plan.domains:
        view = plan.view(domain.name)
        # "controller" is this domain's own (its host: hosts[domain.process] when given)
        own = {**hosts, CONTROLLER: hosts.get(domain.process, hosts.get(CONTROLLER, DEFAULT_HOST))}
        place = _Place(view, own, listen, folder, peer_relays)
        policy = (
            place.path(domain_policy_file(plan, domain.name))
            if domain_policy_data(plan, domain.name) is not None
            else None
        )
        for node in view.nodes:
            configs[agent_name(node.name)] = _agent(view, node, place)
        for node in view.nodes:
            km = _km(view, node, place)
            km["applications"] = foreign_applications(plan, domain.name) | km["applications"]
            if node.name in domain.borders:
                km["interdomain"] = _interdomain(plan, node, place)
            km["policy"] = policy  # the domain's own file, never another's
            configs[km_name(node.name)] = km
        controller = _controller(view, place)
        audit = Path(plan.state_dir) / domain.process / "audit.jsonl"
        controller["audit_log"] = place.path(audit)  # each operator's own
        controller["domain"] = _domain_section(plan, domain.name, place)
        configs[domain.process] = controller
    return configs


def foreign_applications(plan: LabPlan, domain: str) -> dict[str, str]:
    """Every SAE of another domain -> `domain`'s border node toward that domain (on the
    border KM itself, the border node is itself); SAEs no border leads to are left out."""
    mapped: dict[str, str] = {}
    for app in plan.apps:
        other = plan.node(app.node).domain
        border = plan.border_toward(domain, other) if other != domain else None
        if border is not None:
            mapped[app.sae_id] = border
    return mapped


def _interdomain(plan: LabPlan, node: NodePlan, place: _Place) -> dict[str, Any]:
    """A border KM's ETSI 020 section: its listen address, the peer domains' CAs its
    operator allows, the co-located KM of the other domain and the SAEs reached through it."""
    domain = plan.domain(node.domain)
    partner = plan.node(plan.border_partner(node.name) or "")
    reached = sorted(  # with several sites toward one domain, each border reaches them all
        sae
        for sae, border in foreign_applications(plan, domain.name).items()
        if domain.borders.get(border) == domain.borders.get(node.name)
    )
    return {
        "domain": domain.name,
        "listen": place.bind(node.name, node.km_etsi020_port),
        "trusted_cas": [place.path(plan.domain(peer).ca_cert) for peer in domain.trusts],
        "peers": [
            {
                "domain": partner.domain,
                "kme_id": partner.name,
                "url": f"https://{place.address(partner.name, partner.km_etsi020_port)}/kmapi/v1",
                "saes": reached,
                "ca": place.path(plan.domain(partner.domain).ca_cert),  # the peer's own CA
            }
        ],
        "ack_timeout_s": ACK_TIMEOUT_S,
    }


def _domain_section(plan: LabPlan, name: str, place: _Place) -> dict[str, Any]:
    """A domain controller's `domain` section: its border nodes and its peer controllers,
    each with the token to send and the token to accept. Every other domain is a peer, not
    only the neighbours: the origin of a request reserves in each domain on its path."""
    domain = plan.domain(name)
    secrets_dir = Path(domain.token_file).parent
    peers = []
    for peer in sorted(d.name for d in plan.domains if d.name != name):
        other = plan.domain(peer)
        host = place.hosts.get(other.process, place.host(CONTROLLER))  # its own host if given
        peers.append(
            {
                "name": peer,
                "url": f"http://{Address(_bare(host), other.controller.api_port)}",
                "token_file": place.path(peer_token_file(secrets_dir, name, peer)),
                "accept_token_file": place.path(peer_token_file(secrets_dir, peer, name)),
                "allow_saes": ["*"],
            }
        )
    return {
        "name": name,
        "borders": dict(sorted(domain.borders.items())),
        # the other domain's node at each border site (several sites toward one domain)
        "partners": {b: plan.border_partner(b) for b in sorted(domain.borders)},
        # its own SAEs and the node serving each (what its abstract view announces)
        "saes": {app.sae_id: app.node for app in plan.apps if app.node in domain.nodes},
        "peers": peers,
        "reservation_ttl_s": RESERVATION_TTL_S,
        "peer_timeout_s": PEER_TIMEOUT_S,
    }


def write_process_configs(
    plan: LabPlan,
    hosts: Mapping[str, str] | None = None,
    *,
    listen: str | None = None,
    peer_relays: bool | None = None,
) -> dict[str, Path]:
    """Writes STATE_DIR/config/<name>.yaml for every process; returns name -> file.
    `peer_relays=None`: as QKDSDN_LAB_PEER_RELAYS says (default: written)."""
    if peer_relays is None:
        peer_relays = peer_relays_from_env(os.environ)
    folder = config_dir(plan)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    configs = process_configs(plan, hosts, listen=listen, folder=folder, peer_relays=peer_relays)
    for name, data in configs.items():
        path = folder / f"{name}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        tmp.replace(path)
        written[name] = path
    policies = (
        {domain_policy_file(plan, d.name): domain_policy_data(plan, d.name) for d in plan.domains}
        if plan.domains
        else {policy_file(plan): policy_data(plan)}
    )
    for path, policy in policies.items():
        if policy is not None:
            path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return written


def peer_relays_from_env(env: Mapping[str, str]) -> bool:
    """Whether QKDSDN_LAB_PEER_RELAYS asks for the peers' relay addresses in the KM files;
    ValueError naming the variable for a value other than config or learn."""
    value = env.get(PEER_RELAYS_ENV, "config").strip().lower() or "config"
    if value not in PEER_RELAYS_CHOICES:
        raise ValueError(
            f"{PEER_RELAYS_ENV}={value!r}: must be one of {', '.join(PEER_RELAYS_CHOICES)}"
        )
    return value == "config"


def policy_file(plan: LabPlan) -> Path:
    return config_dir(plan) / "access-policy.yaml"


def policy_data(plan: LabPlan) -> dict[str, Any] | None:
    """The access policy every KM of the twin shares when an application has a key mode:
    every SAE may get keys toward every other, each with its mode (km/access.py)."""
    if all(app.key_mode is None for app in plan.apps):
        return None
    saes: dict[str, Any] = {}
    for app in plan.apps:
        saes[app.sae_id] = {"peers": "*"} | ({"key_mode": app.key_mode} if app.key_mode else {})
    return {"saes": saes}


def domain_policy_file(plan: LabPlan, domain: str) -> Path:
    """Domain `domain`'s access policy, read by its key managers only:
    STATE_DIR/config/access-policy-<domain>.yaml."""
    return config_dir(plan) / f"access-policy-{domain}.yaml"


def domain_policy_data(plan: LabPlan, domain: str) -> dict[str, Any] | None:
    """Domain `domain`'s access policy (km/access.py) when an application has a key mode:
    its own SAEs, and the foreign SAEs its borders lead to (what its operator allows: every
    SAE reachable, each with the key mode its own domain gives it); an SAE of a domain no
    border leads to is not in it. None when no application has a key mode."""
    if all(app.key_mode is None for app in plan.apps):
        return None
    reached = foreign_applications(plan, domain)
    saes: dict[str, Any] = {}
    for app in plan.apps:
        if plan.node(app.node).domain == domain or app.sae_id in reached:
            saes[app.sae_id] = {"peers": "*"} | ({"key_mode": app.key_mode} if app.key_mode else {})
    return {"saes": saes}


class _Place:
    """Addresses and relative paths for one set of files."""

    def __init__(
        self,
        plan: LabPlan,
        hosts: Mapping[str, str],
        listen: str | None,
        folder: Path,
        peer_relays: bool = True,
    ) -> None:
        self.plan = plan
        self.hosts = hosts
        self.listen = listen
        self.folder = folder
        self.peer_relays = peer_relays

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
            **({"restconf": place.bind(name, node.restconf_port)} if node.restconf_port else {}),
            **_metrics(plan, agent_name(name), name, place),
        },
        "netconf": {
            "username": creds.netconf_username,
            "password_file": place.path(creds.password_file),
            "authorized_keys_file": place.path(f"{creds.client_key}.pub"),
            "host_key": place.path(creds.host_key),
            # NACM: the controller's own account, and the operators' admin account.
            "group": "controller",
            "users": (
                [
                    {
                        "name": creds.admin_username,
                        "group": "admin",
                        "password_hash": creds.admin_password_hash,
                    }
                ]
                if creds.admin_password_hash
                else []
            ),
            # RESTCONF: the lab's operator certificate logs in as that admin account.
            "cert_to_name": (
                [{"san": OPERATOR.uri, "user": creds.admin_username}]
                if creds.admin_password_hash
                else []
            ),
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
            **({"skip": place.bind(name, node.km_skip_port)} if node.km_skip_port else {}),
            **_metrics(plan, km_name(name), name, place),
        },
        "agent": place.address(name, node.agent_grpc_port),
        "peers": [
            {
                "node": peer.name,
                "qkdn_id": peer.qkdn_id,
                **(
                    {"relay": place.address(peer.name, peer.km_relay_port)}
                    if place.peer_relays
                    else {}
                ),
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
        "policy": place.path(policy_file(plan)) if policy_data(plan) is not None else None,
        "applications": {app.sae_id: app.node for app in plan.apps},
        "nodes": {n.name: n.qkdn_id for n in plan.nodes},
        # the far ends of post-quantum exchanges (neighbours are reached through `peers`)
        "key_managers": _far_key_managers(plan, name, place),
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


def _far_key_managers(plan: LabPlan, name: str, place: _Place) -> dict[str, str]:
    neighbours = {link.other_end(name) for link in plan.links_of(name)}
    return {
        other.name: place.address(other.name, other.km_relay_port)
        for other in plan.nodes
        if other.name != name and other.name not in neighbours
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
        **_api_tokens(plan, place),
        "audit_log": place.path(Path(plan.state_dir) / "controller" / "audit.jsonl"),
        "policy": "fewest-hops",
        "forced_paths": {pair: list(path) for pair, path in plan.forced_paths.items()},
        "allow_preemption": False,
        "relay": {"mode": plan.settings.relay_mode, "e2e_buffer": plan.settings.e2e_buffer},
        "poll_interval_s": 5.0,
    }


def _api_tokens(plan: LabPlan, place: _Place) -> dict[str, Any]:
    """One token file per API role, when the lab made them (api_token_file is the operator's)."""
    if not plan.controller_token_file:
        return {}
    files = controller_role_tokens(plan.controller_token_file)
    if not all(Path(path).exists() for path in files.values()):
        return {}
    return {"api_tokens": {role: place.path(path) for role, path in files.items()}}


def controller_url(plan: LabPlan, hosts: Mapping[str, str] | None = None) -> str:
    """The controller API's URL as the lab's own commands reach it."""
    host = (hosts or {}).get(CONTROLLER, DEFAULT_HOST)
    return f"http://{Address(_bare(host), plan.controller.api_port)}"
