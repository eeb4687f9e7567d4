"""The resolved lab plan: one topology file turned into everything the twin's processes need.

`lab up` writes it to `STATE_DIR/plan.json` as the lab's own record and turns it into each
process's configuration file (lab/configs.py); the processes never read the plan itself.
The user-facing subset is `endpoints.json` (see `lab/endpoints.py` and docs/endpoints.md).
Identifiers are derived from names (uuid5), so a node keeps its `qkdn_id` across runs.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field, replace
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


def peer_token_file(secrets_dir: str | Path, sender: str, receiver: str) -> str:
    """The bearer token domain `sender`'s controller presents to `receiver`'s (its `peer`
    role token for `sender`), mode 0600, one per ordered pair of neighbouring domains."""
    return str(Path(secrets_dir) / f"peer-token-{sender}-to-{receiver}")


def domain_ssh_dir(state_dir: str | Path, domain: str) -> Path:
    """Where domain `domain`'s NETCONF SSH material lives: its agents' host key, the client
    key only its controller holds (with .pub, the key its agents accept) and the password:
    STATE_DIR/ssh/<domain>/ (a twin of one domain keeps STATE_DIR/ssh/)."""
    return Path(state_dir) / "ssh" / domain


def domain_admin_password_file(state_dir: str | Path, domain: str) -> Path:
    """Domain `domain`'s operator admin password on its own agents (mode 0600, its scrypt
    hash beside it as .hash): STATE_DIR/secrets/netconf-admin-password-<domain>."""
    return Path(state_dir) / "secrets" / f"netconf-admin-password-{domain}"


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
    domain: str = ""  # the node's domain ("" in a twin of one domain)
    km_etsi020_port: int = 0  # HTTPS, mutual TLS, ETSI 020 KMS API of a border KM; 0: none

    @property
    def km_etsi020_url(self) -> str:
        """https://host:port/kmapi/v1 of a border KM's ETSI 020 API ("" when not a border)."""
        if not self.km_etsi020_port:
            return ""
        return f"https://{host_port(self.host, self.km_etsi020_port)}/kmapi/v1"

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


# The NodePlan fields that are TCP ports (0: not served; LabPlan.with_ports moves each).
_NODE_PORTS = (
    "netconf_port",
    "agent_grpc_port",
    "km_etsi014_port",
    "km_etsi004_port",
    "km_relay_port",
    "km_skip_port",
    "restconf_port",
    "km_etsi020_port",
)


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
class DomainPlan:
    """One operator's part of a multi-domain twin: its CA, its controller, its tokens."""

    name: str
    nodes: tuple[str, ...]
    trusts: tuple[str, ...]  # peer domains whose CA this domain's border KMs allow
    ca_cert: str  # the domain's CA: signs every certificate of the domain
    ca_key: str
    controller: ControllerPlan
    token_file: str  # operator token of the domain controller's API (-viewer, -admin beside)
    operator_cert: tuple[str, str]  # the lab operator's certificate from this domain's CA
    borders: dict[str, str] = field(default_factory=dict)  # border node -> the peer domain
    description: str = ""
    # The domain's own NETCONF SSH keys, password and admin account (its CA in ca_cert);
    # None: the plan's shared `credentials` (a plan written before domains had their own).
    credentials: Credentials | None = None

    @property
    def process(self) -> str:
        """The name of its controller process: "controller-<domain>"."""
        return f"controller-{self.name}"


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
    # Several operators (docs/cross-domain.md): each domain's CA, controller and tokens;
    # empty: one domain, described by `credentials`, `controller` and `controller_token_file`.
    domains: tuple[DomainPlan, ...] = ()
    border_sites: tuple[tuple[str, str], ...] = ()  # the two nodes hosted at each border site

    def domain(self, name: str) -> DomainPlan:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(f"no domain {name!r} in the lab plan")

    def controller_processes(self) -> tuple[str, ...]:
        """ "controller", or "controller-<domain>" for each domain."""
        return tuple(d.process for d in self.domains) or ("controller",)

    def controller_view(self, process: str) -> LabPlan:
        """The plan as the controller process `process` sees its domain (see `view`)."""
        for domain in self.domains:
            if domain.process == process:
                return self.view(domain.name)
        if process == "controller":
            return self
        raise KeyError(f"no controller process {process!r} in the lab plan")

    def border_partner(self, node: str) -> str | None:
        """The other domain's node at `node`'s border site, or None."""
        for a, b in self.border_sites:
            if node in (a, b):
                return b if node == a else a
        return None

    def domain_route(self, start: str, goal: str) -> tuple[str, ...]:
        """The domains from `start` to `goal` over border sites, fewest first (ties: by
        name); () when `goal` cannot be reached."""
        neighbours: dict[str, set[str]] = {d.name: set() for d in self.domains}
        for a, b in self.border_sites:
            da, db = self.node(a).domain, self.node(b).domain
            neighbours[da].add(db)
            neighbours[db].add(da)
        came: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            here = queue.popleft()
            for there in sorted(neighbours.get(here, ())):
                if there not in came:
                    came[there] = here
                    queue.append(there)
        if goal not in came:
            return ()
        route = [goal]
        while (previous := came[route[-1]]) is not None:
            route.append(previous)
        return tuple(reversed(route))

    def border_toward(self, domain: str, goal: str) -> str | None:
        """`domain`'s border node toward domain `goal` (the first by name if several)."""
        route = self.domain_route(domain, goal)
        if len(route) < 2:
            return None
        candidates = sorted(
            node for node, peer in self.domain(domain).borders.items() if peer == route[1]
        )
        return candidates[0] if candidates else None

    def view(self, domain: str) -> LabPlan:
        """Domain `domain` alone, as a plan of one domain: its nodes, links and applications,
        its CA in `credentials`, its controller, token and operator certificate. What one
        operator's processes are configured from (lab/configs.py)."""
        own = self.domain(domain)
        nodes = frozenset(own.nodes)
        ports = dict(self.metrics_ports)
        if own.process in ports:
            ports["controller"] = ports[own.process]
        return replace(
            self,
            nodes=tuple(n for n in self.nodes if n.name in nodes),
            links=tuple(link for link in self.links if link.a in nodes),
            apps=tuple(app for app in self.apps if app.node in nodes),
            credentials=replace(
                own.credentials or self.credentials, ca_cert=own.ca_cert, ca_key=own.ca_key
            ),
            controller=own.controller,
            controller_token_file=own.token_file,
            operator_cert=own.operator_cert,
            forced_paths={
                pair: path for pair, path in self.forced_paths.items() if nodes.issuperset(path)
            },
            agent_groups=tuple(
                kept
                for group in self.agent_groups
                if (kept := tuple(n for n in group if n in nodes))
            ),
            metrics_ports=ports,
            domains=(),
            border_sites=(),
        )

    def view_of_node(self, node: str) -> LabPlan:
        """The view of `node`'s domain (the plan itself in a twin of one domain)."""
        domain = self.node(node).domain
        return self.view(domain) if self.domains and domain else self

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in the lab plan")

    def hosting_groups(self) -> tuple[tuple[str, ...], ...]:
        """The nodes of each agents process, in start order."""
        return self.agent_groups or (tuple(node.name for node in self.nodes),)

    def addresses(self) -> dict[str, str]:
        """Node name -> its host's address, "controller" -> the controller's (the first
        domain's) and each domain's controller process ("controller-A") -> its own."""
        return {
            **{node.name: node.host for node in self.nodes},
            "controller": self.controller.host,
            **{domain.process: domain.controller.host for domain in self.domains},
        }

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

    def ports(self) -> tuple[int, ...]:
        """Every TCP port the plan gives a server, each once, in order (a /metrics port is
        shared by the configs of one process)."""
        found = [
            port
            for node in self.nodes
            for name in _NODE_PORTS
            if (port := int(getattr(node, name)))
        ]
        found += [self.controller.api_port, *(d.controller.api_port for d in self.domains)]
        found += [*self.metrics_ports.values(), self.prometheus_port]
        return tuple(dict.fromkeys(p for p in found if p))

    def with_ports(self, moved: dict[int, int]) -> LabPlan:
        """The same plan with port `p` replaced by `moved[p]` wherever it is used (ports not
        in `moved` stay). Pure: what `lab up` does when a planned port was taken."""

        def port(value: int) -> int:
            return moved.get(value, value)

        def controller(plan: ControllerPlan) -> ControllerPlan:
            return replace(plan, api_port=port(plan.api_port))

        return replace(
            self,
            nodes=tuple(
                replace(
                    node,
                    netconf_port=port(node.netconf_port),
                    agent_grpc_port=port(node.agent_grpc_port),
                    km_etsi014_port=port(node.km_etsi014_port),
                    km_etsi004_port=port(node.km_etsi004_port),
                    km_relay_port=port(node.km_relay_port),
                    km_skip_port=port(node.km_skip_port),
                    restconf_port=port(node.restconf_port),
                    km_etsi020_port=port(node.km_etsi020_port),
                )
                for node in self.nodes
            ),
            controller=controller(self.controller),
            domains=tuple(replace(d, controller=controller(d.controller)) for d in self.domains),
            metrics_ports={name: port(value) for name, value in self.metrics_ports.items()},
            prometheus_port=port(self.prometheus_port),
        )

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
            domains=tuple(_domain_plan(d) for d in data.get("domains", [])),
            border_sites=tuple((str(a), str(b)) for a, b in data.get("border_sites", [])),
        )

    @staticmethod
    def load(path: Path) -> LabPlan:
        return LabPlan.from_dict(json.loads(path.read_text()))


def _pair(value: Any) -> tuple[str, str]:
    return (str(value[0]), str(value[1]))


def _domain_plan(data: dict[str, Any]) -> DomainPlan:
    return DomainPlan(
        name=data["name"],
        nodes=tuple(data["nodes"]),
        trusts=tuple(data["trusts"]),
        ca_cert=data["ca_cert"],
        ca_key=data["ca_key"],
        controller=ControllerPlan(**data["controller"]),
        token_file=data["token_file"],
        operator_cert=_pair(data["operator_cert"]),
        borders=dict(data.get("borders", {})),
        description=data.get("description", ""),
        credentials=Credentials(**data["credentials"]) if data.get("credentials") else None,
    )
