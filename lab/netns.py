"""Network namespaces for the twin: one per node and one for the controller, bridged with the host.

Pure part: `plan_namespaces` turns node names, a per-state-directory tag and the networks
already in use into a `NetnsPlan` (subnet, bridge, one namespace, veth and address per node and
per controller: one, or one per domain, "controller-<domain>"; one address for the host). I/O part (iproute2 `ip`, run as root):
`create` records the plan in STATE_DIR/netns.json *before* making anything, so that `teardown`
can remove every namespace, veth and bridge of the lab even after `lab up` crashed half-way;
`teardown` is idempotent. `exec_argv` wraps a command to run inside a namespace (`ip netns
exec` execs the program, so the PID it reports is the program's own). `set_partition` cuts or
heals a node's classical network by taking its veth down or up.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NETNS_FILE = "netns.json"
NETNS_VERSION = 1
# Where the twin's subnets are taken from: the first block of the right size not in use.
DEFAULT_POOL = ipaddress.IPv4Network("10.77.0.0/16")
CONTROLLER = "sdn-controller"  # role of the controller's namespace: no node name has a "-"
DOMAIN_CONTROLLER = "controller-"  # + domain name: a domain controller's role (its process name)
INNER_INTERFACE = "eth0"  # the node's end of its veth, inside its namespace
IFNAMSIZ = 15  # Linux interface names: at most 15 characters
TAG_LENGTH = 6
# Serialises subnet choice and bridge creation between labs started at the same time.
ROUTE_TYPES = {"local", "broadcast", "unreachable", "blackhole", "prohibit", "throw", "unicast"}
LOCK_FILE = Path("/run/lock/qkdsdn-netns.lock")


class NetnsError(RuntimeError):
    """Namespaces could not be planned, made or removed; the message says what and why."""


@dataclass(frozen=True)
class Slot:
    """One namespace of the lab: a node's (agent and key manager) or a controller's."""

    role: str  # node name, CONTROLLER, or "controller-<domain>" in a twin of several domains
    namespace: str
    veth: str  # the host's end of the veth pair, enslaved to the bridge
    address: str  # IPv4 address inside the namespace, on INNER_INTERFACE


@dataclass(frozen=True)
class NetnsPlan:
    tag: str  # short, per state directory: prefixes every name so two labs never collide
    subnet: str  # e.g. "10.77.0.0/24"
    bridge: str
    host_address: str  # the host's address on the bridge (applications run there)
    slots: tuple[Slot, ...]  # the controller(s) first, then the nodes in topology order

    @property
    def prefix_length(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    def slot(self, role: str) -> Slot:
        for slot in self.slots:
            if slot.role == role:
                return slot
        raise KeyError(f"no namespace for {role!r} in the lab")

    @property
    def controller(self) -> Slot:
        """The controller's slot; in a twin of several domains, the first domain's."""
        return self.controllers[0]

    @property
    def controllers(self) -> tuple[Slot, ...]:
        return tuple(slot for slot in self.slots if is_controller_role(slot.role))

    @property
    def nodes(self) -> tuple[Slot, ...]:
        return tuple(slot for slot in self.slots if not is_controller_role(slot.role))

    def address_of(self, role: str) -> str:
        return self.slot(role).address

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": NETNS_VERSION,
            "tag": self.tag,
            "subnet": self.subnet,
            "bridge": self.bridge,
            "host_address": self.host_address,
            "slots": [slot.__dict__ for slot in self.slots],
        }

    @staticmethod
    def from_dict(data: dict[str, Any], source: str = NETNS_FILE) -> NetnsPlan:
        try:
            if data["version"] != NETNS_VERSION:
                raise NetnsError(f"{source}: version {data['version']!r} is not {NETNS_VERSION}")
            return NetnsPlan(
                tag=str(data["tag"]),
                subnet=str(data["subnet"]),
                bridge=str(data["bridge"]),
                host_address=str(data["host_address"]),
                slots=tuple(
                    Slot(str(s["role"]), str(s["namespace"]), str(s["veth"]), str(s["address"]))
                    for s in data["slots"]
                ),
            )
        except (KeyError, TypeError) as error:
            raise NetnsError(f"{source}: not a namespace record: missing {error}") from None


# ---------------------------------------------------------------- pure plan


def is_controller_role(role: str) -> bool:
    """A controller's slot (no node name has a "-", so none can look like one)."""
    return role == CONTROLLER or role.startswith(DOMAIN_CONTROLLER)


def domain_controllers(domains: Sequence[str]) -> tuple[str, ...]:
    """The controller roles of a twin: one per domain ("controller-A", ...), or the one
    CONTROLLER when it has no domains."""
    return tuple(f"{DOMAIN_CONTROLLER}{name}" for name in domains) or (CONTROLLER,)


def lab_tag(state_dir: Path) -> str:
    """ "q" and 5 hex digits of the state directory's absolute path: stable for one lab,
    different for two labs on one host."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()
    return "q" + digest[: TAG_LENGTH - 1]


def prefix_for(count: int) -> int:
    """The longest prefix (at most /24) whose block holds `count` addresses besides the
    network and broadcast addresses."""
    prefix = 24
    while prefix > 0 and 2 ** (32 - prefix) - 2 < count:
        prefix -= 1
    return prefix


def free_subnet(
    count: int,
    in_use: Iterable[ipaddress.IPv4Network],
    pool: ipaddress.IPv4Network = DEFAULT_POOL,
) -> ipaddress.IPv4Network:
    """The first block of `pool` with room for `count` hosts that overlaps no network in use."""
    prefix = prefix_for(count)
    if prefix < pool.prefixlen:
        raise NetnsError(f"{count} addresses do not fit in {pool}")
    used = list(in_use)
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise NetnsError(f"no free /{prefix} left in {pool}: every block overlaps a network in use")


def plan_namespaces(
    nodes: Sequence[str],
    tag: str,
    in_use: Iterable[ipaddress.IPv4Network] = (),
    pool: ipaddress.IPv4Network = DEFAULT_POOL,
    controllers: Sequence[str] = (CONTROLLER,),
) -> NetnsPlan:
    """Names and addresses for a lab of `nodes`: host .1, the controller .2 (or one per
    domain, `controllers` = `domain_controllers(...)`, from .2 on), then the nodes."""
    if len(set(nodes)) != len(nodes):
        raise NetnsError("node names must be unique")
    if not controllers or len(set(controllers)) != len(controllers):
        raise NetnsError("at least one controller, each named once")
    for role in (*controllers, *nodes):
        if is_controller_role(role) != (role in controllers):
            raise NetnsError(
                f"{role!r}: a controller's role is {CONTROLLER} or controller-<domain>"
            )
    if not tag.isalnum() or len(tag) > TAG_LENGTH:
        raise NetnsError(f"tag {tag!r}: at most {TAG_LENGTH} letters and digits")
    subnet = free_subnet(len(nodes) + len(controllers) + 1, in_use, pool)
    hosts = subnet.hosts()
    host_address = str(next(hosts))
    roles = (*controllers, *nodes)
    slots = tuple(
        Slot(
            role=role,
            namespace=f"{tag}-{role}",
            veth=f"{tag}v{index}",
            address=str(next(hosts)),
        )
        for index, role in enumerate(roles)
    )
    plan = NetnsPlan(
        tag=tag, subnet=str(subnet), bridge=f"{tag}br", host_address=host_address, slots=slots
    )
    for name in (plan.bridge, *(slot.veth for slot in slots)):
        if len(name) > IFNAMSIZ:  # cannot happen with TAG_LENGTH 6 and < 10**8 nodes
            raise NetnsError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return plan


# ---------------------------------------------------------------- I/O with iproute2


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(("ip", *args), capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise NetnsError("`ip` (iproute2) is not installed") from None
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def unavailable() -> str | None:
    """Why this machine cannot run a namespace lab, or None when it can (root, iproute2, and
    `ip netns add` really works: containers without CAP_SYS_ADMIN refuse it)."""
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add` as uid 0)"
    probe = f"qprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    try:
        link = _ip("link", "add", f"{probe}b", "type", "bridge", check=False)
        if link.returncode != 0:
            return f"`ip link add ... type bridge` fails here: {link.stderr.strip()}"
        _ip("link", "del", f"{probe}b", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def networks_in_use() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of the host's addresses and routes (a twin's subnet avoids them)."""
    networks: list[ipaddress.IPv4Network] = []
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            with suppress(ValueError):
                address = fields[fields.index("inet") + 1]
                networks.append(ipaddress.IPv4Interface(address).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        destination = fields[1] if fields[0] in ROUTE_TYPES and len(fields) > 1 else fields[0]
        if destination != "default":
            with suppress(ValueError):
                networks.append(ipaddress.IPv4Network(destination, strict=False))
    return networks


def existing_namespaces() -> set[str]:
    # `ip netns list` prints "NAME" or "NAME (id: N)"
    return {line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()}


def existing_links() -> set[str]:
    names = set()
    for line in _ip("-o", "link", "show").stdout.splitlines():
        fields = line.split(":", 2)
        if len(fields) >= 2:
            names.add(fields[1].strip().split("@")[0])
    return names


@contextmanager
def _host_lock() -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _record_file(state_dir: Path) -> Path:
    return state_dir / NETNS_FILE


def recorded(state_dir: Path) -> NetnsPlan | None:
    """The namespaces recorded for this state directory (made, or about to be made)."""
    path = _record_file(state_dir)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as error:
        raise NetnsError(f"{path}: not JSON: {error}") from None
    if not isinstance(data, dict):
        raise NetnsError(f"{path}: not a namespace record")
    return NetnsPlan.from_dict(data, str(path))


def _record(state_dir: Path, plan: NetnsPlan) -> None:
    path = _record_file(state_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    tmp.replace(path)


def create(
    state_dir: Path, nodes: Sequence[str], controllers: Sequence[str] = (CONTROLLER,)
) -> NetnsPlan:
    """Makes the bridge (with the host's address), and per node and per controller a
    namespace with loopback up and a veth on the bridge carrying its address.

    The plan is written to STATE_DIR/netns.json first; on any failure everything made so far
    is removed again and NetnsError says which `ip` command failed and why.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if recorded(state_dir) is not None:
        raise NetnsError(
            f"{state_dir / NETNS_FILE} exists: this lab's namespaces are up or were left by a "
            "crash; run `qkdsdn lab down` first"
        )
    with _host_lock():
        plan = plan_namespaces(
            nodes, lab_tag(state_dir), networks_in_use(), controllers=controllers
        )
        _record(state_dir, plan)
        try:
            _make(plan)
        except BaseException:
            teardown(state_dir)
            raise
    return plan


def _make(plan: NetnsPlan) -> None:
    prefix = plan.prefix_length
    _ip("link", "add", plan.bridge, "type", "bridge")
    _ip("addr", "add", f"{plan.host_address}/{prefix}", "dev", plan.bridge)
    _ip("link", "set", plan.bridge, "up")
    for slot in plan.slots:
        _ip("netns", "add", slot.namespace)
        _ip("-n", slot.namespace, "link", "set", "lo", "up")
        _ip(
            "link", "add", slot.veth, "type", "veth",
            "peer", "name", INNER_INTERFACE, "netns", slot.namespace,
        )  # fmt: skip
        _ip("link", "set", slot.veth, "master", plan.bridge)
        _ip("link", "set", slot.veth, "up")
        _ip("-n", slot.namespace, "addr", "add", f"{slot.address}/{prefix}", "dev", INNER_INTERFACE)
        _ip("-n", slot.namespace, "link", "set", INNER_INTERFACE, "up")


def namespace_pids(namespace: str) -> list[int]:
    """PIDs of the processes running in `namespace` (none when it does not exist)."""
    done = _ip("netns", "pids", namespace, check=False)
    return [int(word) for word in done.stdout.split() if word.isdigit()]


def teardown(state_dir: Path) -> list[str]:
    """Removes every veth, namespace and the bridge recorded for this state directory and
    kills what still runs inside those namespaces (only this lab's processes can be there).
    Idempotent: what no longer exists is skipped; returns what was removed. The record is
    deleted only when nothing of it is left."""
    state_dir = state_dir.resolve()
    plan = recorded(state_dir)
    if plan is None:
        return []
    removed: list[str] = []
    namespaces = existing_namespaces()
    for slot in plan.slots:
        if slot.namespace in namespaces:
            for pid in namespace_pids(slot.namespace):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    links = existing_links()
    for name in [slot.veth for slot in plan.slots]:
        if name in links and _ip("link", "del", name, check=False).returncode == 0:
            removed.append(name)  # its peer inside the namespace goes with it
    for slot in plan.slots:
        if slot.namespace not in namespaces:
            continue
        if _ip("netns", "del", slot.namespace, check=False).returncode == 0:
            removed.append(slot.namespace)
    if plan.bridge in links and _ip("link", "del", plan.bridge, check=False).returncode == 0:
        removed.append(plan.bridge)
    left = leftovers(plan)
    if left:
        raise NetnsError(f"could not remove {', '.join(left)}; {_record_file(state_dir)} kept")
    _record_file(state_dir).unlink(missing_ok=True)
    return removed


def leftovers(plan: NetnsPlan) -> list[str]:
    """The namespaces and interfaces of `plan` that exist on this host."""
    namespaces, links = existing_namespaces(), existing_links()
    return [slot.namespace for slot in plan.slots if slot.namespace in namespaces] + [
        name for name in (plan.bridge, *(s.veth for s in plan.slots)) if name in links
    ]


def exec_argv(namespace: str, argv: Sequence[str]) -> tuple[str, ...]:
    """`argv` run inside `namespace`; `ip netns exec` execs it, so the PID stays the program's."""
    return ("ip", "netns", "exec", namespace, *argv)


def set_partition(plan: NetnsPlan, node: str, cut: bool) -> str:
    """Cuts (`cut=True`) or heals a node's classical network: its veth on the bridge goes down
    or up, so nothing reaches the node's namespace and nothing leaves it."""
    try:
        slot = plan.slot(node)
    except KeyError:
        known = ", ".join(slot.role for slot in plan.nodes)
        raise NetnsError(f"no node {node!r} in the namespace lab; nodes: {known}") from None
    _ip("link", "set", slot.veth, "down" if cut else "up")
    return f"{node} ({slot.address}): classical network {'cut' if cut else 'restored'}"


def is_partitioned(plan: NetnsPlan, node: str) -> bool:
    """True when the node's veth is administratively down."""
    done = _ip("-o", "link", "show", plan.slot(node).veth)
    flags = done.stdout.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in done.stdout else []
    return "UP" not in flags
