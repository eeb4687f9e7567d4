"""The resolved lab plan: one topology file turned into everything the twin's processes need.

`lab up` writes it to `STATE_DIR/plan.json` as the lab's own record and turns it into each
process's configuration file (lab/configs.py); the processes never read the plan itself.
The user-facing subset is `endpoints.json` (see `lab/endpoints.py` and docs/endpoints.md).
Identifiers are derived from names (uuid5), so a node keeps its `qkdn_id` across runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.ids import QKDSDN_NAMESPACE, link_uuid, node_uuid

__all__ = ["QKDSDN_NAMESPACE", "link_uuid", "node_uuid"]

HOST = "127.0.0.1"


def controller_role_tokens(token_file: str) -> dict[str, str]:
    """The controller API's token file of each role, beside the operator's `token_file`
    (the CLI's default): `<file>-viewer`, `<file>`, `<file>-admin`."""
    return {
        "viewer": f"{token_file}-viewer",
        "operator": token_file,
        "admin": f"{token_file}-admin",
    }


def host_port(host: str, port: int) -> str:
    """ "host:port", with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


@dataclass(frozen=True)
class NodePlan:
    name: str
    qkdn_id: str
    location: str
    netconf_port: int
    agent_grpc_port: int  # ETSI 004 (module side), NodeLink and AgentControl services
    km_etsi014_port: int  # HTTPS, mutual TLS
    km_etsi004_port: int  # gRPC, mutual TLS, for applications
    km_relay_port: int  # gRPC, mutual TLS, KM to KM
    host: str = HOST  # the node's address (its own network namespace in a netns lab)
    km_skip_port: int = 0  # HTTPS, mutual TLS, Cisco SKIP for applications (0: none)
    restconf_port: int = 0  # RESTCONF over HTTPS on the agent; 0: not served

    @property
    def restconf_url(self) -> str:
        """https://host:port of the agent's RESTCONF face ("" when it is not served)."""
        return f"https://{host_port(self.host, self.restconf_port)}" if self.restconf_port else ""

    @property
    def netconf_address(self) -> str:
        return host_port(self.host, self.netconf_port)

    @property
    def agent_grpc_address(self) -> str:
        return host_port(self.host, self.agent_grpc_port)

    @property
    def km_etsi014_url(self) -> str:
        return f"https://{host_port(self.host, self.km_etsi014_port)}"

    @property
    def km_skip_url(self) -> str | None:
        return f"https://{host_port(self.host, self.km_skip_port)}" if self.km_skip_port else None

    @property
    def km_etsi004_address(self) -> str:
        return host_port(self.host, self.km_etsi004_port)

    @property
    def km_relay_address(self) -> str:
        return host_port(self.host, self.km_relay_port)


@dataclass(frozen=True)
class LinkPlan:
    """A physical QKD link: a pair of modules, one at each end."""

    qkdl_id: str
    a: str  # node name
    b: str  # node name
    a_qkdi_id: int  # interface of the module at node a
    b_qkdi_id: int
    length_km: float
    extra_loss_db: float
    preset: str  # a key of agents.emulator.physics.PRESETS
    skr_bps: float | None  # explicit rate: overrides the physical model
    qber: float | None  # explicit QBER: overrides the physical model
    seed_file: str  # 32 random bytes shared by both modules: their key stream derives from it

    def other_end(self, node: str) -> str:
        return self.b if node == self.a else self.a

    def qkdi_at(self, node: str) -> int:
        return self.a_qkdi_id if node == self.a else self.b_qkdi_id


@dataclass(frozen=True)
class AppPlan:
    sae_id: str
    node: str
    cert: str
    key: str
    key_mode: str | None = None  # written into the KMs' access policy (lab/configs.py)


@dataclass(frozen=True)
class Credentials:
    netconf_username: str
    password_file: str  # NETCONF password, mode 0600
    client_key: str  # SSH private key accepted by every agent
    host_key: str  # SSH host key of the agents
    ca_cert: str  # lab CA: signs every KM, SAE and controller certificate
    ca_key: str
    # The operators' NACM admin account on every agent (netconf_username is the
    # controller's own account, NACM group "controller"); "" when not generated.
    admin_username: str = ""
    admin_password_file: str = ""  # mode 0600
    admin_password_hash: str = ""  # scrypt hash the agents check the password against


@dataclass(frozen=True)
class ControllerPlan:
    api_port: int
    cert: str  # client certificate of the controller (unused by NETCONF, kept for KM calls)
    key: str
    host: str = HOST  # the controller's address (its own network namespace in a netns lab)

    @property
    def url(self) -> str:
        return f"http://{host_port(self.host, self.api_port)}"


@dataclass(frozen=True)
class Settings:
    key_size_bits: int = 256
    relay_mode: str = "aes-gcm"  # or "otp"
    e2e_buffer: int = 3  # end-to-end keys relayed ahead per association
    link_pool_max_bits: int = 1_000_000
    max_key_per_request: int = 128
    max_key_size_bits: int = 1024
    min_key_size_bits: int = 64


@dataclass(frozen=True)
class LabPlan:
    name: str
    state_dir: str
    topology_file: str
    settings: Settings
    nodes: tuple[NodePlan, ...]
    links: tuple[LinkPlan, ...]
    apps: tuple[AppPlan, ...]
    credentials: Credentials
    controller: ControllerPlan
    node_certs: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (cert, key)
    forced_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "app1>app2" -> nodes
    # Nodes hosted together, one agents process per group; empty: one process for all.
    agent_groups: tuple[tuple[str, ...], ...] = ()
    # Server certificate of each node's agent gRPC (mutual TLS, urn:qkdsdn:agent:<node>).
    agent_certs: dict[str, tuple[str, str]] = field(default_factory=dict)  # node -> (cert, key)
    # Client certificate of the lab's operator (urn:qkdsdn:operator:lab): fault injection.
    operator_cert: tuple[str, str] = ("", "")
    # Bearer token that the controller's API requires for every state-changing call (0600).
    controller_token_file: str = ""
    # Prometheus /metrics port of each process config ("agent-<node>", "km-<node>",
    # "controller"); the configs of one process share its port. Empty: no metrics.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    prometheus_port: int = 0  # `lab up --monitoring`: where Prometheus listens (0: none)

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in the lab plan")

    def hosting_groups(self) -> tuple[tuple[str, ...], ...]:
        """The nodes of each agents process, in start order."""
        return self.agent_groups or (tuple(node.name for node in self.nodes),)

    def addresses(self) -> dict[str, str]:
        """Node name -> its host's address, and "controller" -> the controller's."""
        return {**{node.name: node.host for node in self.nodes}, "controller": self.controller.host}

    def node_by_id(self, qkdn_id: str) -> NodePlan:
        for node in self.nodes:
            if node.qkdn_id == qkdn_id:
                return node
        raise KeyError(f"no node with qkdn_id {qkdn_id} in the lab plan")

    def links_of(self, node: str) -> tuple[LinkPlan, ...]:
        return tuple(link for link in self.links if node in (link.a, link.b))

    def app(self, sae_id: str) -> AppPlan:
        for app in self.apps:
            if app.sae_id == sae_id:
                return app
        raise KeyError(f"no application {sae_id!r} in the lab plan")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> LabPlan:
        return LabPlan(
            name=data["name"],
            state_dir=data["state_dir"],
            topology_file=data["topology_file"],
            settings=Settings(**data["settings"]),
            nodes=tuple(NodePlan(**n) for n in data["nodes"]),
            links=tuple(LinkPlan(**link) for link in data["links"]),
            apps=tuple(AppPlan(**a) for a in data["apps"]),
            credentials=Credentials(**data["credentials"]),
            controller=ControllerPlan(**data["controller"]),
            node_certs={k: (v[0], v[1]) for k, v in data.get("node_certs", {}).items()},
            forced_paths={k: tuple(v) for k, v in data.get("forced_paths", {}).items()},
            agent_groups=tuple(tuple(group) for group in data.get("agent_groups", [])),
            agent_certs={k: (v[0], v[1]) for k, v in data.get("agent_certs", {}).items()},
            operator_cert=_pair(data.get("operator_cert", ("", ""))),
            controller_token_file=data.get("controller_token_file", ""),
            metrics_ports={k: int(v) for k, v in data.get("metrics_ports", {}).items()},
            prometheus_port=int(data.get("prometheus_port", 0)),
        )

    @staticmethod
    def load(path: Path) -> LabPlan:
        return LabPlan.from_dict(json.loads(path.read_text()))


def _pair(value: Any) -> tuple[str, str]:
    return (str(value[0]), str(value[1]))
