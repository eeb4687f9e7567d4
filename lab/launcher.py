"""Turns a topology into a running twin: plan, credentials, processes, readiness, shutdown.

`lab up` = make_plan + start_supervised: a supervisor (lab.supervisor) starts the processes,
restarts one that dies and keeps STATE_DIR/pids.json current; `lab down` = stop: the
supervisor stops them, or, if it is gone, this module stops the recorded ones itself. Only
processes the lab started are ever signalled, after checking that the PID still runs our
command line (a PID can be reused).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import select
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, TypeVar

from agents.access.users import hash_password
from common.config import ConfigError
from lab.configs import CONTROLLER, agent_name, km_name, write_process_configs
from lab.hosts import Host, Hosts, hosts_of
from lab.plan import (
    HOST,
    AppPlan,
    ControllerPlan,
    Credentials,
    DomainPlan,
    LabPlan,
    LinkPlan,
    NodePlan,
    Settings,
    controller_role_tokens,
    domain_admin_password_file,
    domain_ssh_dir,
    link_uuid,
    node_uuid,
    peer_token_file,
)
from lab.processes import (
    ManagedProcess as ManagedProcess,  # re-exported: tests and tools import them here
)
from lab.processes import (
    StopReport,
    log_path,
    log_tail,
    running_with,
    spawn,
    stop_processes,
)
from lab.processes import (
    is_ours as is_ours,
)
from lab.restarts import RestartPolicy
from lab.topology import Topology

PORTS_PER_NODE = 7
T = TypeVar("T")


class LabError(RuntimeError):
    """The twin could not be started or stopped; the message says which process and why."""

    @property
    def port_taken(self) -> bool:
        """A planned port was taken by someone else between planning and binding (other
        twins on a shared machine): a new plan, with other ports, may well start."""
        # Python's "Address already in use", asyncio's lowercase one, and our gRPC servers'
        # own words (gRPC only answers port 0)
        text = str(self).lower()
        return "address already in use" in text or "cannot listen on" in text


# ---------------------------------------------------------------- plan


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1, outside the kernel's ephemeral range
    and not in `avoid`.

    Outside, because the twin's own processes open outgoing connections while others are
    still starting: an ephemeral port handed to one of them could be a port planned for a
    server that has not bound it yet.
    """
    low, high = _ephemeral_range()
    avoided = frozenset(avoid)
    candidates = [p for p in range(20000, 65000) if not low <= p <= high and p not in avoided]
    random.Random().shuffle(candidates)  # spread, not secret: ~20x faster than SystemRandom
    ports: list[int] = []
    with ExitStack() as stack:
        for port in candidates:
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            ports.append(port)
    if len(ports) < count:
        raise LabError(f"only {len(ports)} free ports outside {low}-{high}, {count} needed")
    return ports


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ssh_credentials(state_dir: Path, ssh_dir: Path | None = None) -> tuple[Path, Path, Path]:
    """Host key, client key (with .pub) and NETCONF password, generated once per state dir
    in STATE_DIR/ssh (or `ssh_dir`: a domain's own, see lab.plan.domain_ssh_dir)."""
    import asyncssh

    ssh_dir = ssh_dir or state_dir / "ssh"
    host_key, client_key, password = (
        ssh_dir / "host_key",
        ssh_dir / "client_key",
        ssh_dir / "netconf_password",
    )
    for path in (host_key, client_key):
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            _write_secret(path, key.export_private_key())
            Path(f"{path}.pub").write_bytes(key.export_public_key())
    if not password.exists():
        _write_secret(password, secrets.token_urlsafe(18).encode())
    return host_key, client_key, password


def _admin_account(state_dir: Path, path: Path | None = None) -> tuple[Path, str]:
    """STATE_DIR/secrets/netconf-admin-password (0600; or `path`: a domain's own) and its
    scrypt hash (kept beside it), generated once per state dir: the operators' NACM admin
    account on every agent."""
    path = path or state_dir / "secrets" / "netconf-admin-password"
    hashed = path.with_suffix(".hash")
    if not path.exists() or not hashed.exists():
        password = secrets.token_urlsafe(18)
        _write_secret(path, password.encode())
        _write_secret(hashed, hash_password(password).encode())
    return path, hashed.read_text(encoding="utf-8").strip()


def _controller_token(state_dir: Path, name: str = "controller-token") -> Path:
    """STATE_DIR/secrets/controller-token (mode 0600): the bearer token of the controller's
    API, generated once per state dir (`name`: another controller's, in a multi-domain twin)."""
    path = state_dir / "secrets" / name
    for role_file in controller_role_tokens(str(path)).values():  # viewer, operator, admin
        if not Path(role_file).exists():
            _write_secret(Path(role_file), secrets.token_urlsafe(32).encode())
    return path


def plan_settings(topology: Topology) -> Settings:
    given = topology.settings
    return Settings(
        key_size_bits=given.key_size_bits,
        relay_mode=given.relay_mode,
        e2e_buffer=given.e2e_buffer,
        link_pool_max_bits=given.link_pool_bits,
        max_key_per_request=given.max_key_per_request,
        max_key_size_bits=given.max_key_size_bits,
        min_key_size_bits=given.min_key_size_bits,
    )


# One agents process serves about this many nodes before a second one pays off: a <get>
# costs the agents ~0.4 ms of CPU, so 50 agents polled at once need more than one core.
AGENTS_PER_PROCESS = 25


def agent_groups(names: Sequence[str], processes: int | None = None) -> tuple[tuple[str, ...], ...]:
    """Splits the nodes over agents processes, in order: `processes` of them, or by default
    one per AGENTS_PER_PROCESS nodes but no more than this machine has cores."""
    if processes is None:
        processes = min(os.cpu_count() or 1, -(-len(names) // AGENTS_PER_PROCESS))
    count = max(1, min(processes, len(names)))
    size, extra = divmod(len(names), count)
    groups, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        groups.append(tuple(names[start:end]))
        start = end
    return tuple(groups) if count > 1 else ()


def make_plan(
    topology: Topology,
    topology_file: Path,
    state_dir: Path,
    forced_paths: dict[str, tuple[str, ...]] | None = None,
    ca: tuple[Path, Path] | None = None,
    *,
    settings: Settings | None = None,
    with_pki: bool = True,
    agent_processes: int | None = None,
    hosts: Hosts | None = None,
    metrics: bool = True,
    monitoring: bool = False,
) -> LabPlan:
    """Resolves the topology into a plan: ids, free ports, seeds, SSH keys and the lab PKI
    (signed by `ca` = (certificate, key) of an operator's own CA when given; not made at all
    with `with_pki=False`, for tests that make their own). `settings` overrides the file's;
    `agent_processes` spreads the agents (default: see `agent_groups`); `hosts` places the
    nodes and the controller (default: all on 127.0.0.1; in namespaces, one agents process
    per node). `metrics` gives every process a /metrics port; `monitoring` (`lab up
    --monitoring`) adds a Prometheus that scrapes them (lab/monitoring.py)."""
    from lab.pki import create_domain_pki, create_lab_pki, load_ca

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if topology.domains and ca is not None:
        raise LabError(
            "a twin of several domains makes one CA per domain: --ca-cert is for one domain"
        )
    if hosts is not None and hosts.nodes:
        agent_processes = len(topology.nodes)  # a node's agent runs on the node's own host
    address = (hosts or Hosts("local")).node
    border_nodes = {node for site in topology.borders for node in (site.a, site.b)}
    controllers = max(1, len(topology.domains))
    # Node servers, border KMs' ETSI 020 servers and the APIs, then (at most) a metrics
    # port per process and Prometheus's.
    metric_ports = 2 * len(topology.nodes) + controllers + 1 if metrics or monitoring else 0
    ports = iter(
        free_ports(
            PORTS_PER_NODE * len(topology.nodes) + len(border_nodes) + controllers + metric_ports
        )
    )
    nodes = tuple(
        NodePlan(
            name=node.name,
            qkdn_id=node_uuid(node.name),
            location=node.location,
            netconf_port=next(ports),
            agent_grpc_port=next(ports),
            km_etsi014_port=next(ports),
            km_etsi004_port=next(ports),
            km_relay_port=next(ports),
            host=address(node.name).address,
            km_skip_port=next(ports),
            restconf_port=next(ports),
            domain=node.domain,
            km_etsi020_port=next(ports) if node.name in border_nodes else 0,
        )
        for node in topology.nodes
    )
    next_qkdi: dict[str, int] = {node.name: 1 for node in topology.nodes}
    links = []
    for spec in topology.links:
        qkdl_id = link_uuid(spec.a, spec.b)
        seed = state_dir / "secrets" / f"link-{qkdl_id}.seed"
        if not seed.exists():
            _write_secret(seed, secrets.token_bytes(32))
        links.append(
            LinkPlan(
                qkdl_id=qkdl_id,
                a=spec.a,
                b=spec.b,
                a_qkdi_id=next_qkdi[spec.a],
                b_qkdi_id=next_qkdi[spec.b],
                length_km=spec.length_km,
                extra_loss_db=spec.extra_loss_db,
                preset=spec.preset,
                skr_bps=spec.skr_bps,
                qber=spec.qber,
                seed_file=str(seed),
            )
        )
        next_qkdi[spec.a] += 1
        next_qkdi[spec.b] += 1
    pki_dir = state_dir / "pki"
    sae_ids = [app.sae_id for app in topology.apps]
    domains = _domain_plans(topology, state_dir, ports, hosts or Hosts("local"))
    if with_pki and domains:
        for domain in domains:
            create_domain_pki(
                state_dir,
                domain.name,
                domain.nodes,
                [
                    app.sae_id
                    for app in topology.apps
                    if topology.domain_of(app.node) == domain.name
                ],
                km_hosts={n: [address(n).address] for n in domain.nodes},
            )
    elif with_pki:
        own_ca = load_ca(*ca) if ca is not None else None
        create_lab_pki(
            state_dir,
            [n.name for n in topology.nodes],
            sae_ids,
            ca=own_ca,
            km_hosts={n.name: [address(n.name).address] for n in topology.nodes},
        )
    plan = LabPlan(
        name=topology.name,
        state_dir=str(state_dir),
        topology_file=str(topology_file),
        settings=settings or plan_settings(topology),
        nodes=nodes,
        links=tuple(links),
        apps=tuple(
            AppPlan(
                sae_id=app.sae_id,
                node=app.node,
                cert=str(pki_dir / f"sae-{app.sae_id}.pem"),
                key=str(pki_dir / f"sae-{app.sae_id}.key"),
                key_mode=app.key_mode,
            )
            for app in topology.apps
        ),
        credentials=(
            domains[0].credentials or _domain_credentials(state_dir, domains[0].name)
            if domains  # each operator its own; the plan's own are the first domain's
            else _shared_credentials(state_dir, ca)
        ),
        controller=domains[0].controller
        if domains
        else ControllerPlan(
            host=(hosts or Hosts("local")).controller.address,
            api_port=next(ports),
            cert=str(pki_dir / "controller.pem"),
            key=str(pki_dir / "controller.key"),
        ),
        node_certs={
            n.name: (str(pki_dir / f"km-{n.name}.pem"), str(pki_dir / f"km-{n.name}.key"))
            for n in topology.nodes
        },
        forced_paths=dict(forced_paths or {}),
        agent_groups=(
            tuple(d.nodes for d in domains)  # one agents process per operator
            if domains and agent_processes is None
            else agent_groups([n.name for n in topology.nodes], agent_processes)
        ),
        agent_certs={
            n.name: (str(pki_dir / f"agent-{n.name}.pem"), str(pki_dir / f"agent-{n.name}.key"))
            for n in topology.nodes
        },
        operator_cert=(str(pki_dir / "operator.pem"), str(pki_dir / "operator.key")),
        controller_token_file=domains[0].token_file
        if domains
        else str(_controller_token(state_dir)),
        domains=domains,
        border_sites=tuple((site.a, site.b) for site in topology.borders),
    )
    if domains:
        plan = replace(
            plan,
            credentials=plan.view(domains[0].name).credentials,
            operator_cert=domains[0].operator_cert,
        )
    if not (metrics or monitoring):
        return plan
    return replace(
        plan,
        metrics_ports=metrics_ports(plan, ports),
        prometheus_port=next(ports) if monitoring else 0,
    )


def _domain_plans(
    topology: Topology, state_dir: Path, ports: Iterator[int], hosts: Hosts
) -> tuple[DomainPlan, ...]:
    """Each domain's CA and certificate paths, controller port and tokens (written here:
    the operator token files of its API and a peer token per ordered pair of domains: the
    origin of a request reserves in every domain on its path, neighbour or not)."""
    pki_dir, secrets_dir = state_dir / "pki", state_dir / "secrets"
    partner = {s.a: s.b for s in topology.borders} | {s.b: s.a for s in topology.borders}
    plans = []
    for domain in topology.domains:
        nodes = tuple(n.name for n in topology.nodes if n.domain == domain.name)
        borders = {n: topology.domain_of(partner[n]) for n in nodes if n in partner}
        for peer in (d.name for d in topology.domains if d.name != domain.name):
            token = Path(peer_token_file(secrets_dir, domain.name, peer))
            if not token.exists():
                _write_secret(token, secrets.token_urlsafe(32).encode())
        name = domain.name
        plans.append(
            DomainPlan(
                name=name,
                nodes=nodes,
                trusts=domain.trusts,
                ca_cert=str(pki_dir / f"ca-{name}.pem"),
                ca_key=str(pki_dir / f"ca-{name}.key"),
                controller=ControllerPlan(
                    host=hosts.controller_of(f"controller-{name}").address,  # its own namespace
                    api_port=next(ports),
                    cert=str(pki_dir / f"controller-{name}.pem"),
                    key=str(pki_dir / f"controller-{name}.key"),
                ),
                token_file=str(_controller_token(state_dir, f"controller-{name}-token")),
                operator_cert=(
                    str(pki_dir / f"operator-{name}.pem"),
                    str(pki_dir / f"operator-{name}.key"),
                ),
                borders=borders,
                description=domain.description,
                credentials=_domain_credentials(state_dir, name),
            )
        )
    return tuple(plans)


def _shared_credentials(state_dir: Path, ca: tuple[Path, Path] | None) -> Credentials:
    """The NETCONF SSH keys, password, admin account and CA of a twin of one domain."""
    pki_dir = state_dir / "pki"
    return _credentials(
        _ssh_credentials(state_dir),
        _admin_account(state_dir),
        pki_dir / "ca.pem",
        ca[1] if ca is not None else pki_dir / "ca.key",
    )


def _domain_credentials(state_dir: Path, domain: str) -> Credentials:
    """Domain `domain`'s own NETCONF SSH keys (STATE_DIR/ssh/<domain>/), password, operators'
    admin account and CA: no other domain's agents accept its controller's key."""
    pki_dir = state_dir / "pki"
    return _credentials(
        _ssh_credentials(state_dir, domain_ssh_dir(state_dir, domain)),
        _admin_account(state_dir, domain_admin_password_file(state_dir, domain)),
        pki_dir / f"ca-{domain}.pem",
        pki_dir / f"ca-{domain}.key",
    )


def _credentials(
    ssh: tuple[Path, Path, Path], admin: tuple[Path, str], ca_cert: Path, ca_key: Path
) -> Credentials:
    host_key, client_key, password = ssh
    return Credentials(
        netconf_username="qkdsdn",
        password_file=str(password),
        client_key=str(client_key),
        host_key=str(host_key),
        ca_cert=str(ca_cert),
        ca_key=str(ca_key),
        admin_username="admin",
        admin_password_file=str(admin[0]),
        admin_password_hash=admin[1],
    )


def replan_ports(plan: LabPlan) -> LabPlan:
    """The plan with a new free port for every port it uses, none of the old ones (nothing
    else changes: ids, secrets and certificates do not depend on ports)."""
    used = plan.ports()
    return plan.with_ports(dict(zip(used, free_ports(len(used), avoid=used), strict=True)))


def start_with_free_ports(
    plan: LabPlan,
    start_plan: Callable[[LabPlan], T],
    attempts: int = 3,
    say: Callable[[str], None] | None = None,
) -> tuple[LabPlan, T]:
    """`start_plan(plan)`; when a planned port was taken by another process between
    planning and binding (LabError.port_taken: the twin was stopped again), with new ports
    (`replan_ports`), `attempts` times in all. Returns the plan that started and what
    `start_plan` returned: the caller must use that plan (its ports may differ)."""
    for attempt in range(1, attempts + 1):
        try:
            return plan, start_plan(plan)
        except LabError as error:
            if not error.port_taken or attempt == attempts:
                raise
            if say is not None:
                say(f"a port was taken meanwhile; planning again ({attempt}/{attempts})")
            plan = replan_ports(plan)
    raise AssertionError("unreachable")


def metrics_ports(plan: LabPlan, ports: Iterator[int]) -> dict[str, int]:
    """A /metrics port per process, shared by the configs of the nodes it hosts."""
    found = {name: next(ports) for name in plan.controller_processes()}
    for make, groups in ((agent_name, agents_processes(plan)), (km_name, km_processes(plan))):
        for _, nodes in groups:
            port = next(ports)
            found.update({make(node): port for node in nodes})
    return found


# ---------------------------------------------------------------- processes


def _cli(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "lab.cli", *args)


def process_commands(plan: LabPlan) -> list[tuple[str, tuple[str, ...]]]:
    """What `lab up` starts, in start order: agents first, then key managers, then controller.

    Writes each process's configuration file (lab/configs.py) under STATE_DIR/config first:
    the processes read nothing else."""
    files = {
        name: str(path) for name, path in write_process_configs(plan, plan.addresses()).items()
    }
    commands: list[tuple[str, tuple[str, ...]]] = []
    for name, group in agents_processes(plan):
        hosted = [argument for node in group for argument in ("--config", files[agent_name(node)])]
        commands.append((name, _cli("agent", "run", *hosted)))
    for name, group in km_processes(plan):
        hosted = [argument for node in group for argument in ("--config", files[km_name(node)])]
        commands.append((name, _cli("km", "run", *hosted)))
    for name in plan.controller_processes():  # "controller", or one per domain
        commands.append((name, _cli("controller", "run", "--config", files[name])))
    if plan.prometheus_port:
        from lab import monitoring

        try:
            binary = monitoring.prometheus_binary()
            config = monitoring.write_scrape_config(
                plan, agents_processes(plan), km_processes(plan)
            )
        except (monitoring.MonitoringError, ConfigError) as error:
            raise LabError(f"prometheus: {error}") from None
        commands.append((monitoring.PROCESS, monitoring.prometheus_argv(plan, config, binary)))
    return commands


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def _supervisor_file(state_dir: Path) -> Path:
    return state_dir / "supervisor.json"


SIGKILLED = "SIGKILLed: SIGTERM did not end it"  # the reason of a process stopped the hard way


@dataclass(frozen=True)
class ProcessRecord:
    """One line of STATE_DIR/pids.json: a process of the twin and how it fares."""

    process: ManagedProcess
    state: str = "running"  # running, starting, restarting, failed, stopped (ChildState)
    restarts: int = 0
    last_exit: int | None = None
    reason: str = ""


def _write_json(path: Path, data: object) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def record(state_dir: Path, records: Sequence[ProcessRecord]) -> None:
    _write_json(
        _pid_file(state_dir),
        [
            {
                **asdict(r.process),
                "state": r.state,
                "restarts": r.restarts,
                "last_exit": r.last_exit,
                "reason": r.reason,
            }
            for r in records
        ],
    )


def recorded_status(state_dir: Path) -> list[ProcessRecord]:
    path = _pid_file(state_dir)
    if not path.exists():
        return []
    return [
        ProcessRecord(
            ManagedProcess(p["name"], int(p["pid"]), tuple(p["argv"]), p["log"]),
            state=p.get("state", "running"),
            restarts=int(p.get("restarts", 0)),
            last_exit=p.get("last_exit"),
            reason=p.get("reason", ""),
        )
        for p in json.loads(path.read_text())
    ]


def recorded_processes(state_dir: Path) -> list[ManagedProcess]:
    return [r.process for r in recorded_status(state_dir)]


def recorded_supervisor(state_dir: Path) -> ManagedProcess | None:
    path = _supervisor_file(state_dir)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return ManagedProcess(data["name"], int(data["pid"]), tuple(data["argv"]), data["log"])


def supervisor_running(state_dir: Path) -> ManagedProcess | None:
    """The twin's supervisor if it is still alive (and still ours)."""
    supervisor = recorded_supervisor(state_dir)
    return supervisor if supervisor is not None and is_ours(supervisor) else None


def port_open(address: tuple[str, int]) -> bool:
    """Something accepts TCP connections at `address`."""
    return _port_open(address)


def _port_open(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(address) == 0


def agents_processes(plan: LabPlan) -> list[tuple[str, tuple[str, ...]]]:
    """(process name, its nodes): "agents" for all of them, or "agents-1", "agents-2"..."""
    groups = plan.hosting_groups()
    if len(groups) == 1:
        return [("agents", groups[0])]
    return [(f"agents-{index}", group) for index, group in enumerate(groups, 1)]


def is_agents(name: str) -> bool:
    """An agents process: "agents", or "agents-N" when the agents are spread."""
    return name == "agents" or (name.startswith("agents-") and name[7:].isdigit())


# Up to this many nodes, each key manager has a process of its own ("km-<node>"); above,
# they share processes of KMS_PER_PROCESS each ("kms-1", "kms-2", ...): a KM process costs
# ~80 MiB before it serves anything, so 100 of them would need 8 GB.
KMS_PER_PROCESS = 25


def km_processes(plan: LabPlan) -> list[tuple[str, tuple[str, ...]]]:
    """(process name, its nodes) of the key managers, in start order."""
    names = [node.name for node in plan.nodes]
    one_host = len({node.host for node in plan.nodes}) <= 1
    if len(names) <= KMS_PER_PROCESS or not one_host:
        return [(f"km-{name}", (name,)) for name in names]
    return [
        (f"kms-{index}", tuple(names[start : start + KMS_PER_PROCESS]))
        for index, start in enumerate(range(0, len(names), KMS_PER_PROCESS), 1)
    ]


def is_kms(name: str) -> bool:
    """A process hosting several key managers: "kms-N"."""
    return name.startswith("kms-") and name[4:].isdigit()


def km_nodes(plan: LabPlan, name: str) -> tuple[str, ...]:
    """The nodes whose key managers process `name` ("km-<node>" or "kms-N") hosts."""
    if is_kms(name):
        return dict(km_processes(plan))[name]
    return (name.removeprefix("km-"),)


def readiness_ports(plan: LabPlan, name: str) -> list[tuple[str, int]]:
    """(address, port) of every server of process `name`."""
    if is_agents(name):
        hosted = [plan.node(n) for n in dict(agents_processes(plan))[name]]
        return [(n.host, p) for n in hosted for p in (n.netconf_port, n.agent_grpc_port)]
    if is_controller(name):
        controller = plan.controller_view(name).controller
        return [(controller.host, controller.api_port)]
    if name == "prometheus":
        return [(plan.controller.host, plan.prometheus_port)]
    nodes = [plan.node(n) for n in km_nodes(plan, name)]
    return [
        (node.host, p)
        for node in nodes
        for p in (
            node.km_etsi014_port,
            node.km_etsi004_port,
            node.km_relay_port,
            node.km_skip_port,
            node.km_etsi020_port,  # a border KM's ETSI 020 server
        )
        if p
    ]


def is_controller(name: str) -> bool:
    """A controller process: "controller", or "controller-<domain>" in a multi-domain twin."""
    return name == CONTROLLER or name.startswith(f"{CONTROLLER}-")


def spawn_on(
    hosts: Hosts, plan: LabPlan, name: str, argv: Sequence[str], *, new_session: bool
) -> subprocess.Popen[bytes]:
    """Starts process `name` on its host; the PID is argv's own (`ip netns exec` execs it),
    and once running its command line is `argv`, which `is_ours` checks."""
    host = process_host(plan, hosts, name)
    return spawn(name, host.command(argv), Path(plan.state_dir), new_session=new_session)


def process_host(plan: LabPlan, hosts: Hosts, name: str) -> Host:
    """Where process `name` runs: its node's host (an agents process: its nodes' one host)."""
    if is_controller(name) or name == "prometheus":
        return hosts.controller_of(name)  # each domain's controller on its own host
    if is_agents(name):
        placed = {hosts.node(node) for node in dict(agents_processes(plan))[name]}
        if len(placed) != 1:
            raise LabError(f"{name} serves nodes on {len(placed)} hosts: one agents process a host")
        return placed.pop()
    placed = {hosts.node(node) for node in km_nodes(plan, name)}
    if len(placed) != 1:
        raise LabError(f"{name} serves key managers on {len(placed)} hosts: one process a host")
    return placed.pop()


def wait_ready(
    plan: LabPlan, started: Sequence[tuple[ManagedProcess, subprocess.Popen[bytes]]], timeout: float
) -> None:
    """Waits until every process listens on all its ports; fails fast if one exits."""
    deadline = time.monotonic() + timeout
    pending = {proc.name: readiness_ports(plan, proc.name) for proc, _ in started}
    while pending:
        for proc, popen in started:
            if popen.poll() is not None:
                raise LabError(
                    f"{proc.name} exited with code {popen.returncode}; log {proc.log}:\n"
                    + log_tail(proc.log)
                )
        for name in list(pending):
            pending[name] = [a for a in pending[name] if not _port_open(a)]
            if not pending[name]:
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")
        time.sleep(0.05)


def discovery_pending(plan: LabPlan, topology: dict[str, object]) -> list[str]:
    """What the controller's `GET /topology` answer still lacks of the plan: nodes not
    available, and the PHYS links it does not know yet (as "links: N of M"). Pure."""
    devices = topology.get("devices")
    links = topology.get("links")
    available = {
        d.get("name")
        for d in (devices if isinstance(devices, list) else [])
        if isinstance(d, dict) and d.get("available")
    }
    missing = [n.name for n in plan.nodes if n.name not in available]
    known = {
        entry.get("qkdl_id")
        for entry in (links if isinstance(links, list) else [])
        if isinstance(entry, dict)
    }
    phys = [link.qkdl_id for link in plan.links]
    found = sum(1 for qkdl_id in phys if qkdl_id in known)
    if found < len(phys):
        missing.append(f"links: {found} of {len(phys)}")
    return missing


def viewer_token(plan: LabPlan) -> str:
    """The controller API's viewer token of the twin ("" when the plan has none)."""
    if not plan.controller_token_file:
        return ""
    path = Path(controller_role_tokens(plan.controller_token_file)["viewer"])
    return path.read_text(encoding="utf-8").strip() if path.exists() else ""


def wait_discovered(plan: LabPlan, timeout: float, process: subprocess.Popen[bytes]) -> None:
    """Waits until the controller has discovered every node and PHYS link of the plan (its
    `GET /topology`), so that the first request after `lab up` finds a complete topology."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(f"{plan.controller.url}/topology")
    token = viewer_token(plan)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    pending = ["the controller's answer"]
    while True:
        if process.poll() is not None:
            raise LabError(f"controller exited with code {process.returncode} during discovery")
        try:
            with urllib.request.urlopen(request, timeout=5.0) as reply:
                pending = discovery_pending(plan, json.loads(reply.read()))
        except (OSError, ValueError) as exc:
            pending = [f"the controller's answer ({exc})"]
        if not pending:
            return
        if time.monotonic() > deadline:
            shown = ", ".join(pending[:8]) + (" ..." if len(pending) > 8 else "")
            raise LabError(f"the controller has not discovered after {timeout:.0f} s: {shown}")
        time.sleep(0.2)


def views_pending(plan: LabPlan, domain: str, view: dict[str, object]) -> list[str]:
    """The SAEs of other domains that domain `domain`'s controller (its `GET
    /interdomain/view` answer) cannot reach yet, though a border route leads to them. Pure."""
    reach = view.get("reach")
    known = set(reach) if isinstance(reach, dict) else set()
    return [
        app.sae_id
        for app in plan.apps
        if (other := plan.node(app.node).domain) != domain
        and plan.domain_route(domain, other)
        and app.sae_id not in known
    ]


def wait_views(
    plan: LabPlan, timeout: float, processes: dict[str, subprocess.Popen[bytes]]
) -> None:
    """Waits until every domain's controller has learned, from its peers' abstract views,
    every SAE of the other domains it can reach: before that, a request across domains
    would be refused (no route yet)."""
    deadline = time.monotonic() + timeout
    for domain in plan.domains:
        view = plan.view(domain.name)
        request = urllib.request.Request(f"{domain.controller.url}/interdomain/view")
        request.add_header("Authorization", f"Bearer {viewer_token(view)}")
        while True:
            process = processes.get(domain.process)
            if process is not None and process.poll() is not None:
                raise LabError(f"{domain.process} exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(request, timeout=5.0) as reply:
                    pending = views_pending(plan, domain.name, json.loads(reply.read()))
            except (OSError, ValueError) as exc:
                pending = [f"its answer ({exc})"]
            if not pending:
                break
            if time.monotonic() > deadline:
                shown = ", ".join(pending[:8])
                raise LabError(
                    f"{domain.process} has not learned the other domains after "
                    f"{timeout:.0f} s: {shown}"
                )
            time.sleep(0.2)


def wait_listening(plan: LabPlan, process: ManagedProcess, timeout: float) -> None:
    """Waits until a process that is not our child (restarted) listens on all its ports."""
    deadline = time.monotonic() + timeout
    pending = readiness_ports(plan, process.name)
    while pending:
        if not is_ours(process):
            raise LabError(
                f"{process.name} (pid {process.pid}) exited; log {process.log}:\n"
                + log_tail(process.log)
            )
        pending = [p for p in pending if not _port_open(p)]
        if pending and time.monotonic() > deadline:
            raise LabError(f"{process.name} not ready after {timeout:.0f} s")
        if pending:
            time.sleep(0.05)


def launch(
    plan: LabPlan,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
    names: Sequence[str] | None = None,
    *,
    new_session: bool = True,
    hosts: Hosts | None = None,
) -> list[tuple[ManagedProcess, subprocess.Popen[bytes]]]:
    """Starts the processes of the plan (as children of the caller), each on its host
    (default: the hosts the state directory records, see lab.hosts), recording each in
    pids.json, and waits until all listen. On failure or interruption stops them all."""
    state_dir = Path(plan.state_dir)
    deadline = time.monotonic() + timeout
    plan.save(state_dir / "plan.json")
    placed = hosts if hosts is not None else hosts_of(state_dir)
    started: list[tuple[ManagedProcess, subprocess.Popen[bytes]]] = []
    commands = process_commands(plan)
    try:
        for position, (name, argv) in enumerate(commands):
            if names is not None and name not in names:
                continue
            popen = spawn_on(placed, plan, name, argv, new_session=new_session)
            proc = ManagedProcess(name, popen.pid, argv, str(log_path(state_dir, name)))
            started.append((proc, popen))
            record(state_dir, [ProcessRecord(p) for p, _ in started])
            # Agents first (all of them started at once): key managers and the controller
            # connect to them at start.
            last_agents = is_agents(name) and not (
                position + 1 < len(commands) and is_agents(commands[position + 1][0])
            )
            if last_agents:
                wait_ready(plan, [(p, o) for p, o in started if is_agents(p.name)], timeout)
            elif is_controller(name):
                wait_ready(plan, [(proc, popen)], timeout)
            if progress:
                progress(name)
        wait_ready(plan, started, timeout)
        for proc, popen in started:  # each controller has discovered its own domain
            if is_controller(proc.name):
                view = plan.controller_view(proc.name)
                wait_discovered(view, max(0.0, deadline - time.monotonic()), popen)
        controllers = {p.name: o for p, o in started if is_controller(p.name)}
        if plan.domains and len(controllers) == len(plan.domains):  # their views converge
            wait_views(plan, max(0.0, deadline - time.monotonic()), controllers)
    except BaseException:
        stop_processes([p for p, _ in started])
        _pid_file(state_dir).unlink(missing_ok=True)
        raise
    return started


def start(
    plan: LabPlan,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
    names: Sequence[str] | None = None,
    hosts: Hosts | None = None,
) -> list[ManagedProcess]:
    """Starts the twin without a supervisor (its processes are the caller's children and
    nothing restarts them) and waits until all listen. On failure stops them all."""
    return [p for p, _ in launch(plan, timeout, progress, names, hosts=hosts)]


def start_supervised(
    plan: LabPlan,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
    policy: RestartPolicy | None = None,
) -> ManagedProcess:
    """`lab up`: starts the supervisor, which starts the twin and restarts what dies; returns
    once every process listens. A failed start leaves nothing running (LabError with the log)."""
    state_dir = Path(plan.state_dir)
    running = supervisor_running(state_dir)
    if running is not None:
        raise LabError(f"a twin already runs in {state_dir} (supervisor pid {running.pid})")
    plan.save(state_dir / "plan.json")
    read_end, write_end = os.pipe()
    argv = _cli(
        "lab", "supervise", "--state-dir", str(state_dir),
        "--timeout", f"{timeout:g}", "--ready-fd", str(write_end),
    )  # fmt: skip
    if policy is not None:
        argv += ("--restart-limit", str(policy.limit), "--restart-window", f"{policy.window_s:g}")
    try:
        popen = spawn("supervisor", argv, state_dir, new_session=True, pass_fds=(write_end,))
    finally:
        os.close(write_end)
    supervisor = ManagedProcess(
        "supervisor", popen.pid, argv, str(log_path(state_dir, "supervisor"))
    )
    _write_json(_supervisor_file(state_dir), asdict(supervisor))
    try:
        with os.fdopen(read_end, "r") as messages:
            failure = _follow_startup(messages, timeout + 30.0, progress, supervisor.log)
        if failure is None:
            return supervisor
        popen.wait(timeout=30)
        raise LabError(failure)
    except BaseException as error:
        stop(state_dir)
        if isinstance(error, LabError):
            raise
        if isinstance(error, (OSError, subprocess.TimeoutExpired)):
            raise LabError(f"supervisor: {error}") from error
        raise


def _follow_startup(
    messages: IO[str], timeout: float, progress: Callable[[str], None] | None, log: str
) -> str | None:
    """Reads the supervisor's startup messages: None once ready, else why it failed."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([messages], [], [], left)[0]:
            return f"the supervisor did not report within {timeout:.0f} s"
        line = messages.readline()
        if not line:
            return f"the supervisor exited during the start; log {log}:\n" + log_tail(log)
        message = json.loads(line)
        if "started" in message and progress:
            progress(str(message["started"]))
        elif "ready" in message:
            return None
        elif "failed" in message:
            return str(message["failed"])


def stop(state_dir: Path, grace: float = 10.0) -> StopReport:
    """`lab down`: asks the supervisor to stop the twin (SIGTERM) and waits for it; if it is
    gone or does not finish in time, stops the recorded processes still ours itself.
    Restarted processes are stopped too (the supervisor records every new PID)."""
    recorded = recorded_status(state_dir)
    stopped = [r.process.name for r in recorded if is_ours(r.process)]
    killed: list[str] = []
    supervisor = recorded_supervisor(state_dir)
    if supervisor is not None and is_ours(supervisor):
        # Its three waves take at most 3 x (grace + 5 s), SIGKILLs included.
        if stop_processes([supervisor], grace=3 * (grace + 5.0) + 5.0).killed:
            killed.append("supervisor")
        final = recorded_status(state_dir)
        killed += [r.process.name for r in final if r.reason == SIGKILLED]
        recorded += final
    # The supervisor is gone (crashed, or never was): whatever still runs a recorded
    # command line is stopped here, restarted processes included.
    direct = stop_processes(running_with({r.process.argv: r.process.name for r in recorded}), grace)
    _pid_file(state_dir).unlink(missing_ok=True)
    _supervisor_file(state_dir).unlink(missing_ok=True)
    return StopReport(
        stopped=stopped + [n for n in direct.stopped if n not in stopped],
        killed=killed + direct.killed,
    )


def restart_unsupervised(state_dir: Path, name: str) -> ManagedProcess:
    """Restarts one process of a twin that has no supervisor: stops it if it runs, starts its
    recorded command again and records the new PID, so that `lab down` stops it."""
    records = recorded_status(state_dir)
    found = [r for r in records if r.process.name == name]
    if not found:
        known = ", ".join(r.process.name for r in records) or "none"
        raise LabError(f"no process {name!r} in {state_dir}; known: {known}")
    old = found[0]
    stop_processes([old.process])
    plan = LabPlan.load(state_dir / "plan.json")
    popen = spawn_on(hosts_of(state_dir), plan, name, old.process.argv, new_session=True)
    new = replace(old.process, pid=popen.pid)
    fresh = replace(old, process=new, state="running", restarts=old.restarts + 1, reason="")
    record(state_dir, [fresh if r is old else r for r in records])
    return new


@contextmanager
def running_lab(
    plan: LabPlan,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
    hosts: Hosts | None = None,
) -> Iterator[list[ManagedProcess]]:
    """The twin for the duration of a `with` block; stopped on exit, error or Ctrl-C.

    Unsupervised on purpose: a scenario or test watches a fixed set of processes, and a
    death is a failure for it to see, not one for a supervisor to hide by a restart."""
    processes = start(plan, timeout=timeout, progress=progress, hosts=hosts)
    try:
        yield processes
    finally:
        stop(Path(plan.state_dir))
