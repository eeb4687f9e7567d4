"""Turns a topology into a running twin: plan, credentials, processes, readiness, shutdown.

`lab up` = make_plan + start; `lab down` = stop the processes recorded in STATE_DIR/pids.json.
Only processes this launcher started are ever signalled, by PID, after checking that the PID
still runs our command line (a PID can be reused).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from lab.plan import (
    HOST,
    AppPlan,
    ControllerPlan,
    Credentials,
    LabPlan,
    LinkPlan,
    NodePlan,
    Settings,
    link_uuid,
    node_uuid,
)
from lab.topology import Topology

PORTS_PER_NODE = 5


class LabError(RuntimeError):
    """The twin could not be started or stopped; the message says which process and why."""


@dataclass(frozen=True)
class ManagedProcess:
    name: str  # "agents", "km-qnode1", "controller"
    pid: int
    argv: tuple[str, ...]
    log: str


# ---------------------------------------------------------------- plan


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1, outside the kernel's ephemeral range.

    Outside, because the twin's own processes open outgoing connections while others are
    still starting: an ephemeral port handed to one of them could be a port planned for a
    server that has not bound it yet.
    """
    low, high = _ephemeral_range()
    candidates = [p for p in range(20000, 65000) if not low <= p <= high]
    rng = secrets.SystemRandom()
    rng.shuffle(candidates)
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


def _ssh_credentials(state_dir: Path) -> tuple[Path, Path, Path]:
    """Host key, client key (with .pub) and NETCONF password, generated once per state dir."""
    import asyncssh

    ssh_dir = state_dir / "ssh"
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


def _controller_token(state_dir: Path) -> Path:
    """STATE_DIR/secrets/controller-token (mode 0600): the bearer token of the controller's
    API, generated once per state dir."""
    path = state_dir / "secrets" / "controller-token"
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(32).encode())
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
) -> LabPlan:
    """Resolves the topology into a plan: ids, free ports, seeds, SSH keys and the lab PKI
    (signed by `ca` = (certificate, key) of an operator's own CA when given; not made at all
    with `with_pki=False`, for tests that make their own). `settings` overrides the file's;
    `agent_processes` spreads the agents (default: see `agent_groups`)."""
    from lab.pki import create_lab_pki, load_ca

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    ports = iter(free_ports(PORTS_PER_NODE * len(topology.nodes) + 1))
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
    host_key, client_key, password = _ssh_credentials(state_dir)
    pki_dir = state_dir / "pki"
    sae_ids = [app.sae_id for app in topology.apps]
    if with_pki:
        own_ca = load_ca(*ca) if ca is not None else None
        create_lab_pki(state_dir, [n.name for n in topology.nodes], sae_ids, ca=own_ca)
    return LabPlan(
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
            )
            for app in topology.apps
        ),
        credentials=Credentials(
            netconf_username="qkdsdn",
            password_file=str(password),
            client_key=str(client_key),
            host_key=str(host_key),
            ca_cert=str(pki_dir / "ca.pem"),
            ca_key=str(ca[1] if ca is not None else pki_dir / "ca.key"),
        ),
        controller=ControllerPlan(
            api_port=next(ports),
            cert=str(pki_dir / "controller.pem"),
            key=str(pki_dir / "controller.key"),
        ),
        node_certs={
            n.name: (str(pki_dir / f"km-{n.name}.pem"), str(pki_dir / f"km-{n.name}.key"))
            for n in topology.nodes
        },
        forced_paths=dict(forced_paths or {}),
        agent_groups=agent_groups([n.name for n in topology.nodes], agent_processes),
        agent_certs={
            n.name: (str(pki_dir / f"agent-{n.name}.pem"), str(pki_dir / f"agent-{n.name}.key"))
            for n in topology.nodes
        },
        operator_cert=(str(pki_dir / "operator.pem"), str(pki_dir / "operator.key")),
        controller_token_file=str(_controller_token(state_dir)),
    )


# ---------------------------------------------------------------- processes


def _cli(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "lab.cli", *args)


def process_commands(plan: LabPlan) -> list[tuple[str, tuple[str, ...]]]:
    """What `lab up` starts, in start order: agents first, then key managers, then controller."""
    plan_file = str(Path(plan.state_dir) / "plan.json")
    # The twin's nodes share one host: an fsync per commit (0.7 ms on a VM disk, on the
    # agents' event loop) would guard against a power loss that stops the whole twin anyway;
    # rewritten in place, running still survives an agent restart or crash.
    agents = ("agent", "run", "--plan", plan_file, "--no-fsync")
    commands: list[tuple[str, tuple[str, ...]]] = []
    spread = len(plan.hosting_groups()) > 1
    for name, group in agents_processes(plan):
        hosted = [argument for node in group for argument in ("--node", node)] if spread else []
        commands.append((name, _cli(*agents, *hosted)))
    for node in plan.nodes:
        commands.append(
            (f"km-{node.name}", _cli("km", "run", "--plan", plan_file, "--node", node.name))
        )
    commands.append(("controller", _cli("controller", "run", "--plan", plan_file)))
    return commands


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "pids.json"


def _record(state_dir: Path, processes: Sequence[ManagedProcess]) -> None:
    data = [p.__dict__ for p in processes]
    tmp = _pid_file(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(_pid_file(state_dir))


def recorded_processes(state_dir: Path) -> list[ManagedProcess]:
    path = _pid_file(state_dir)
    if not path.exists():
        return []
    return [
        ManagedProcess(p["name"], int(p["pid"]), tuple(p["argv"]), p["log"])
        for p in json.loads(path.read_text())
    ]


def is_ours(process: ManagedProcess) -> bool:
    """True while the PID still runs the command line we started (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [c.decode(errors="replace") for c in cmdline if c] == list(process.argv)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def agents_processes(plan: LabPlan) -> list[tuple[str, tuple[str, ...]]]:
    """(process name, its nodes): "agents" for all of them, or "agents-1", "agents-2"..."""
    groups = plan.hosting_groups()
    if len(groups) == 1:
        return [("agents", groups[0])]
    return [(f"agents-{index}", group) for index, group in enumerate(groups, 1)]


def is_agents(name: str) -> bool:
    """An agents process: "agents", or "agents-N" when the agents are spread."""
    return name == "agents" or (name.startswith("agents-") and name[7:].isdigit())


def readiness_ports(plan: LabPlan, name: str) -> list[int]:
    if is_agents(name):
        hosted = dict(agents_processes(plan))[name]
        return [
            p for n in hosted for p in (plan.node(n).netconf_port, plan.node(n).agent_grpc_port)
        ]
    if name == "controller":
        return [plan.controller.api_port]
    node = plan.node(name.removeprefix("km-"))
    return [node.km_etsi014_port, node.km_etsi004_port, node.km_relay_port]


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
                    + _log_tail(proc.log)
                )
        for name in list(pending):
            pending[name] = [p for p in pending[name] if not _port_open(p)]
            if not pending[name]:
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(f"not ready after {timeout:.0f} s: {', '.join(sorted(pending))}")
        time.sleep(0.05)


def start(
    plan: LabPlan,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
    names: Sequence[str] | None = None,
) -> list[ManagedProcess]:
    """Starts the processes of the plan and waits until all listen. On failure stops them all."""
    state_dir = Path(plan.state_dir)
    for folder in ("logs", "trace"):
        (state_dir / folder).mkdir(parents=True, exist_ok=True)
    plan.save(state_dir / "plan.json")
    started: list[tuple[ManagedProcess, subprocess.Popen[bytes]]] = []
    commands = process_commands(plan)
    try:
        for position, (name, argv) in enumerate(commands):
            if names is not None and name not in names:
                continue
            log = state_dir / "logs" / f"{name}.log"
            env = dict(os.environ, QKDSDN_TRACE_FILE=str(state_dir / "trace" / f"{name}.jsonl"))
            with open(log, "ab") as log_handle:
                popen = subprocess.Popen(
                    argv,
                    stdout=log_handle,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # Ctrl-C of the user reaches us, not the twin
                )
            proc = ManagedProcess(name, popen.pid, argv, str(log))
            started.append((proc, popen))
            _record(state_dir, [p for p, _ in started])
            # Agents first (all of them started at once): key managers and the controller
            # connect to them at start.
            last_agents = is_agents(name) and not (
                position + 1 < len(commands) and is_agents(commands[position + 1][0])
            )
            if last_agents:
                wait_ready(plan, [(p, o) for p, o in started if is_agents(p.name)], timeout)
            elif name == "controller":
                wait_ready(plan, [(proc, popen)], timeout)
            if progress:
                progress(name)
        wait_ready(plan, started, timeout)
    except BaseException:
        stop(state_dir)
        raise
    return [p for p, _ in started]


def stop(state_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stops the recorded processes (controller first), SIGTERM then SIGKILL; returns their names."""
    processes = [p for p in reversed(recorded_processes(state_dir)) if is_ours(p)]
    # In waves, reverse start order: the controller leaves first (so it does not see the
    # nodes die and start re-routing), then the key managers, then the agents.
    waves = [
        [p for p in processes if p.name == "controller"],
        [p for p in processes if p.name.startswith("km-")],
        [p for p in processes if p.name != "controller" and not p.name.startswith("km-")],
    ]
    deadline = time.monotonic() + timeout
    for wave in waves:
        for proc in wave:
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        for proc in wave:
            while is_ours(proc) and time.monotonic() < deadline:
                _reap(proc.pid)
                time.sleep(0.02)
            if is_ours(proc):
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            _reap(proc.pid)
    _pid_file(state_dir).unlink(missing_ok=True)
    return [p.name for p in processes]


def _reap(pid: int) -> None:
    """Collects a child of ours that has exited, so it does not linger as a zombie."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@contextmanager
def running_lab(
    plan: LabPlan, timeout: float = 60.0, progress: Callable[[str], None] | None = None
) -> Iterator[list[ManagedProcess]]:
    """The twin for the duration of a `with` block; stopped on exit, error or Ctrl-C."""
    processes = start(plan, timeout=timeout, progress=progress)
    try:
        yield processes
    finally:
        stop(Path(plan.state_dir))
