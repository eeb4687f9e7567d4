"""`STATE_DIR/endpoints.json`: what a user (or a script) needs to talk to a running twin.

The user-facing subset of the lab plan (docs/endpoints.md): per node the NETCONF access, the
key manager's ETSI 014/004 and relay addresses and the agent's gRPC address; per application
its node, certificate and key; the controller's URL; the lab CA. Paths, never secrets.
Addresses are the real ones: each node's own in a namespace lab (`lab up --hosts netns`),
whose `network` section then names the namespaces and the host's address on their bridge.
A twin of several domains adds `domains` (per domain its controller URL and token files,
CA, nodes, borders, admin password file), each node's `domain` and a border KM's ETSI 020
URL; the top-level `ca` and `controller` are then the first domain's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.hosts import Hosts
from lab.plan import LabPlan, controller_role_tokens, host_port

ENDPOINTS_VERSION = 1
ENDPOINTS_FILE = "endpoints.json"


class EndpointsError(ValueError):
    """An endpoints file that cannot be read; the message names the file and the field."""


@dataclass(frozen=True)
class NetconfEndpoint:
    host: str
    port: int
    username: str
    password_file: str  # the password itself stays in this 0600 file
    client_key: str  # SSH private key accepted by every agent
    host_key_pub: str  # the agents' SSH host public key (OpenSSH format)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def known_hosts_line(self, public_key: str | None = None) -> str:
        """An OpenSSH known_hosts line for this agent; reads `host_key_pub` unless given."""
        key = public_key if public_key is not None else Path(self.host_key_pub).read_text()
        fields = key.split()
        if len(fields) < 2:
            raise EndpointsError(f"{self.host_key_pub}: not an OpenSSH public key")
        host = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{host} {fields[0]} {fields[1]}"


@dataclass(frozen=True)
class KmEndpoint:
    etsi014_url: str  # HTTPS, mutual TLS
    etsi004_address: str  # gRPC, mutual TLS
    relay_address: str  # gRPC, mutual TLS, KM to KM
    cert: str  # the KM's certificate (server and client)
    key: str
    skip_url: str | None = None  # HTTPS, mutual TLS, Cisco SKIP (None: not served)
    etsi020_url: str | None = None  # a border KM's ETSI 020 KMS API (None: not a border)


@dataclass(frozen=True)
class NodeEndpoints:
    name: str
    qkdn_id: str
    location: str
    netconf: NetconfEndpoint
    km: KmEndpoint
    agent_grpc: str  # ETSI 004 module side, NodeLink, AgentControl
    restconf: str = ""  # https URL of the agent's RESTCONF face (HTTP Basic); "" if none
    domain: str = ""  # its domain in a twin of several ("" in a twin of one)


@dataclass(frozen=True)
class AppEndpoints:
    sae_id: str
    node: str
    cert: str  # SAE client certificate, CN = sae_id
    key: str
    ca: str  # trust anchor for the KM's server certificate
    km_etsi014_url: str  # the KM this application talks to
    km_etsi004_address: str
    km_skip_url: str | None = None  # the same KM's Cisco SKIP (None: not served)


@dataclass(frozen=True)
class ControllerEndpoint:
    url: str


@dataclass(frozen=True)
class DomainEndpoints:
    """One operator's part of a twin of several domains."""

    name: str
    ca: str  # the domain's CA: trust anchor of its KMs, agents and SAEs
    controller_url: str
    tokens: dict[str, str]  # API role (viewer, operator, admin) -> its token file (0600)
    nodes: tuple[str, ...]
    borders: dict[str, str]  # border node -> the domain it meets there
    admin_password_file: str  # the NACM admin account on the domain's own agents (0600)


@dataclass(frozen=True)
class MonitoringEndpoints:
    """Prometheus /metrics of every process, and Prometheus itself (`lab up --monitoring`)."""

    metrics: dict[str, str]  # process name -> its /metrics URL
    prometheus: str  # Prometheus's URL ("" without --monitoring)


@dataclass(frozen=True)
class NetworkEndpoints:
    """Where the twin's processes run: "local" (127.0.0.1) or "netns" (a namespace each)."""

    kind: str
    applications: str  # the host's own address towards the twin (applications run there)
    namespaces: dict[str, str]  # node name or "controller" -> network namespace


@dataclass(frozen=True)
class Endpoints:
    name: str
    state_dir: str
    topology_file: str
    ca: str
    controller: ControllerEndpoint
    nodes: tuple[NodeEndpoints, ...]
    apps: tuple[AppEndpoints, ...]
    network: NetworkEndpoints | None = None
    monitoring: MonitoringEndpoints | None = None
    domains: tuple[DomainEndpoints, ...] = ()  # empty: a twin of one domain

    def domain(self, name: str) -> DomainEndpoints:
        for domain in self.domains:
            if domain.name == name:
                return domain
        raise KeyError(f"no domain {name!r} in the endpoints")

    def node(self, name: str) -> NodeEndpoints:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in the endpoints")

    def app(self, sae_id: str) -> AppEndpoints:
        for app in self.apps:
            if app.sae_id == sae_id:
                return app
        raise KeyError(f"no application {sae_id!r} in the endpoints")

    def to_dict(self) -> dict[str, Any]:
        """JSON shape: nodes and apps keyed by name, so `jq .nodes.qnode1.km` works."""
        network = {} if self.network is None else {"network": asdict(self.network)}
        monitoring = {} if self.monitoring is None else {"monitoring": asdict(self.monitoring)}
        domains = {"domains": {d.name: _domain_fields(d) for d in self.domains}}
        return {
            "version": ENDPOINTS_VERSION,
            "name": self.name,
            "state_dir": self.state_dir,
            "topology_file": self.topology_file,
            "ca": self.ca,
            "controller": {"url": self.controller.url},
            "nodes": {
                n.name: {
                    "qkdn_id": n.qkdn_id,
                    "location": n.location,
                    "netconf": _fields(n.netconf),
                    "km": {k: v for k, v in _fields(n.km).items() if k != "etsi020_url" or v},
                    "agent_grpc": n.agent_grpc,
                    **({"restconf": n.restconf} if n.restconf else {}),
                    **({"domain": n.domain} if n.domain else {}),
                }
                for n in self.nodes
            },
            "apps": {
                a.sae_id: {k: v for k, v in _fields(a).items() if k != "sae_id"} for a in self.apps
            },
            **network,
            **monitoring,
            **(domains if self.domains else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @staticmethod
    def from_dict(data: object, source: str = ENDPOINTS_FILE) -> Endpoints:
        return _Decoder(source).endpoints(data)

    @staticmethod
    def load(path: Path) -> Endpoints:
        try:
            data = json.loads(path.read_text())
        except OSError as error:
            raise EndpointsError(f"{path}: cannot read: {error.strerror}") from None
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise EndpointsError(f"{path}: not JSON: {error}") from None
        return Endpoints.from_dict(data, str(path))


def _fields(value: NetconfEndpoint | KmEndpoint | AppEndpoints) -> dict[str, Any]:
    return asdict(value)


def _domain_fields(domain: DomainEndpoints) -> dict[str, Any]:
    return {
        "ca": domain.ca,
        "controller": {"url": domain.controller_url, "tokens": dict(domain.tokens)},
        "nodes": list(domain.nodes),
        "borders": dict(domain.borders),
        "admin_password_file": domain.admin_password_file,
    }


class _Decoder:
    """Reads the JSON shape back, naming the field when something is missing or mistyped."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> EndpointsError:
        return EndpointsError(f"{self.source}: {where}: {message}")

    def mapping(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, "must be an object")
        return value

    def get(self, data: dict[str, Any], key: str, where: str, kind: type) -> Any:
        at = f"{where}.{key}" if where else key
        if key not in data:
            raise self.fail(at, "missing")
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.fail(at, f"must be {kind.__name__}, not {type(value).__name__}")
        return value

    def endpoints(self, data: object) -> Endpoints:
        top = self.mapping(data, "(file)")
        version = top.get("version")
        if version != ENDPOINTS_VERSION:
            raise self.fail("version", f"{version!r} is not the supported {ENDPOINTS_VERSION}")
        controller = self.mapping(top.get("controller"), "controller")
        nodes = self.mapping(top.get("nodes"), "nodes")
        apps = self.mapping(top.get("apps"), "apps")
        return Endpoints(
            name=self.get(top, "name", "", str),
            state_dir=self.get(top, "state_dir", "", str),
            topology_file=self.get(top, "topology_file", "", str),
            ca=self.get(top, "ca", "", str),
            controller=ControllerEndpoint(url=self.get(controller, "url", "controller", str)),
            nodes=tuple(self.node(name, body) for name, body in nodes.items()),
            apps=tuple(self.app(sae_id, body) for sae_id, body in apps.items()),
            network=self.network(top["network"]) if "network" in top else None,
            monitoring=self.monitoring(top["monitoring"]) if "monitoring" in top else None,
            domains=tuple(
                self.domain(name, body)
                for name, body in self.mapping(top.get("domains", {}), "domains").items()
            ),
        )

    def domain(self, name: str, body: object) -> DomainEndpoints:
        where = f"domains.{name}"
        data = self.mapping(body, where)
        controller = self.mapping(data.get("controller"), f"{where}.controller")
        tokens = self.mapping(controller.get("tokens"), f"{where}.controller.tokens")
        borders = self.mapping(data.get("borders"), f"{where}.borders")
        nodes = self.get(data, "nodes", where, list)
        for index, value in enumerate(nodes):
            if not isinstance(value, str):
                raise self.fail(f"{where}.nodes[{index}]", "must be str")
        for key, value in {**tokens, **borders}.items():
            if not isinstance(value, str):
                raise self.fail(f"{where}: {key}", "must be str")
        return DomainEndpoints(
            name=name,
            ca=self.get(data, "ca", where, str),
            controller_url=self.get(controller, "url", f"{where}.controller", str),
            tokens=dict(tokens),
            nodes=tuple(nodes),
            borders=dict(borders),
            admin_password_file=self.get(data, "admin_password_file", where, str),
        )

    def monitoring(self, body: object) -> MonitoringEndpoints:
        data = self.mapping(body, "monitoring")
        metrics = self.mapping(data.get("metrics"), "monitoring.metrics")
        for process, url in metrics.items():
            if not isinstance(url, str):
                raise self.fail(f"monitoring.metrics.{process}", "must be str")
        return MonitoringEndpoints(
            metrics=dict(metrics), prometheus=self.get(data, "prometheus", "monitoring", str)
        )

    def network(self, body: object) -> NetworkEndpoints:
        data = self.mapping(body, "network")
        namespaces = self.mapping(data.get("namespaces"), "network.namespaces")
        for role, namespace in namespaces.items():
            if not isinstance(namespace, str):
                raise self.fail(f"network.namespaces.{role}", "must be str")
        return NetworkEndpoints(
            kind=self.get(data, "kind", "network", str),
            applications=self.get(data, "applications", "network", str),
            namespaces=dict(namespaces),
        )

    def node(self, name: str, body: object) -> NodeEndpoints:
        where = f"nodes.{name}"
        data = self.mapping(body, where)
        netconf = self.mapping(data.get("netconf"), f"{where}.netconf")
        km = self.mapping(data.get("km"), f"{where}.km")
        nw, kw = f"{where}.netconf", f"{where}.km"
        return NodeEndpoints(
            name=name,
            qkdn_id=self.get(data, "qkdn_id", where, str),
            location=self.get(data, "location", where, str),
            netconf=NetconfEndpoint(
                host=self.get(netconf, "host", nw, str),
                port=self.get(netconf, "port", nw, int),
                username=self.get(netconf, "username", nw, str),
                password_file=self.get(netconf, "password_file", nw, str),
                client_key=self.get(netconf, "client_key", nw, str),
                host_key_pub=self.get(netconf, "host_key_pub", nw, str),
            ),
            km=KmEndpoint(
                etsi014_url=self.get(km, "etsi014_url", kw, str),
                etsi004_address=self.get(km, "etsi004_address", kw, str),
                relay_address=self.get(km, "relay_address", kw, str),
                cert=self.get(km, "cert", kw, str),
                key=self.get(km, "key", kw, str),
                skip_url=self.get(km, "skip_url", kw, str) if km.get("skip_url") else None,
                etsi020_url=(
                    self.get(km, "etsi020_url", kw, str) if km.get("etsi020_url") else None
                ),
            ),
            agent_grpc=self.get(data, "agent_grpc", where, str),
            restconf=self.get(data, "restconf", where, str) if "restconf" in data else "",
            domain=self.get(data, "domain", where, str) if "domain" in data else "",
        )

    def app(self, sae_id: str, body: object) -> AppEndpoints:
        where = f"apps.{sae_id}"
        data = self.mapping(body, where)
        return AppEndpoints(
            sae_id=sae_id,
            node=self.get(data, "node", where, str),
            cert=self.get(data, "cert", where, str),
            key=self.get(data, "key", where, str),
            ca=self.get(data, "ca", where, str),
            km_etsi014_url=self.get(data, "km_etsi014_url", where, str),
            km_etsi004_address=self.get(data, "km_etsi004_address", where, str),
            km_skip_url=(
                self.get(data, "km_skip_url", where, str) if data.get("km_skip_url") else None
            ),
        )


def endpoints_from_plan(plan: LabPlan, hosts: Hosts | None = None) -> Endpoints:
    """The user-facing endpoints of a lab plan (pure: no file is read or written); `hosts`
    (where the processes run) adds the `network` section."""
    nodes = []
    for node in plan.nodes:
        credentials = plan.view_of_node(node.name).credentials  # its domain's own
        cert, key = plan.node_certs.get(node.name, _default_km_cert(plan, node.name))
        nodes.append(
            NodeEndpoints(
                name=node.name,
                qkdn_id=node.qkdn_id,
                location=node.location,
                netconf=NetconfEndpoint(
                    host=node.host,
                    port=node.netconf_port,
                    username=credentials.netconf_username,
                    password_file=credentials.password_file,
                    client_key=credentials.client_key,
                    host_key_pub=f"{credentials.host_key}.pub",
                ),
                km=KmEndpoint(
                    etsi014_url=node.km_etsi014_url,
                    etsi004_address=node.km_etsi004_address,
                    relay_address=node.km_relay_address,
                    cert=cert,
                    key=key,
                    skip_url=node.km_skip_url,
                    etsi020_url=node.km_etsi020_url or None,
                ),
                agent_grpc=node.agent_grpc_address,
                restconf=node.restconf_url,
                domain=node.domain if plan.domains else "",
            )
        )
    apps = tuple(
        AppEndpoints(
            sae_id=app.sae_id,
            node=app.node,
            cert=app.cert,
            key=app.key,
            ca=plan.view_of_node(app.node).credentials.ca_cert,  # its domain's CA
            km_etsi014_url=plan.node(app.node).km_etsi014_url,
            km_etsi004_address=plan.node(app.node).km_etsi004_address,
            km_skip_url=plan.node(app.node).km_skip_url,
        )
        for app in plan.apps
    )
    return Endpoints(
        name=plan.name,
        state_dir=plan.state_dir,
        topology_file=plan.topology_file,
        ca=plan.credentials.ca_cert,
        controller=ControllerEndpoint(url=plan.controller.url),
        nodes=tuple(nodes),
        apps=apps,
        network=None if hosts is None else _network(hosts),
        monitoring=_monitoring(plan) if plan.metrics_ports else None,
        domains=tuple(_domain(plan, d.name) for d in plan.domains),
    )


def _domain(plan: LabPlan, name: str) -> DomainEndpoints:
    own, view = plan.domain(name), plan.view(name)
    return DomainEndpoints(
        name=name,
        ca=own.ca_cert,
        controller_url=own.controller.url,
        tokens=controller_role_tokens(own.token_file),
        nodes=own.nodes,
        borders=dict(sorted(own.borders.items())),
        admin_password_file=view.credentials.admin_password_file,
    )


def _monitoring(plan: LabPlan) -> MonitoringEndpoints:
    """Each process's /metrics URL (by the process names `lab status` shows)."""
    from lab.launcher import agents_processes, km_processes

    urls = {
        name: _metrics_url(plan.controller_view(name).controller.host, plan.metrics_ports[name])
        for name in plan.controller_processes()
        if name in plan.metrics_ports
    }
    for prefix, groups in (("agent-", agents_processes(plan)), ("km-", km_processes(plan))):
        for process, nodes in groups:
            port = plan.metrics_ports.get(f"{prefix}{nodes[0]}")
            if port is not None:
                urls[process] = _metrics_url(plan.node(nodes[0]).host, port)
    prometheus = ""
    if plan.prometheus_port:
        prometheus = f"http://{host_port(plan.controller.host, plan.prometheus_port)}"
    return MonitoringEndpoints(urls, prometheus)


def _metrics_url(host: str, port: int) -> str:
    return f"http://{host_port(host, port)}/metrics"


def _network(hosts: Hosts) -> NetworkEndpoints:
    namespaces = {name: host.namespace for name, host in hosts.nodes.items() if host.namespace}
    if hosts.controller.namespace:
        namespaces["controller"] = hosts.controller.namespace
    for name, host in hosts.controllers.items():  # each domain's controller ("controller-A")
        if host.namespace:
            namespaces[name] = host.namespace
    return NetworkEndpoints(hosts.kind, hosts.applications, namespaces)


def _default_km_cert(plan: LabPlan, node: str) -> tuple[str, str]:
    """Where docs/architecture.md puts a KM's certificate when the plan does not say."""
    pki = Path(plan.state_dir) / "pki"
    return str(pki / f"km-{node}.pem"), str(pki / f"km-{node}.key")
