"""Where the twin's processes run: on this machine's loopback, or each node in its own namespace.

A `Host` says which address a process listens and is reached at, and how to run a program
there (an argv prefix: none locally, `ip netns exec NS` in a namespace lab). `Hosts` maps the
lab's nodes and its controller (or each domain's, "controller-<domain>") to their hosts; `hosts_of(state_dir)` reads which kind a
twin was started with (STATE_DIR/netns.json present: namespaces).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab import netns
from lab.plan import HOST

KINDS = ("local", "netns")
CONTROLLER = "controller"  # the controller's key in `Hosts.addresses()` (as lab.configs has it)


@dataclass(frozen=True)
class Host:
    address: str  # where the process listens and where the others reach it
    wrapper: tuple[str, ...] = ()  # runs a program on this host: (*wrapper, *argv)
    namespace: str | None = None

    def command(self, argv: Sequence[str]) -> tuple[str, ...]:
        return (*self.wrapper, *argv)


LOCAL = Host(HOST)


@dataclass(frozen=True)
class Hosts:
    kind: str  # one of KINDS
    nodes: Mapping[str, Host] = field(default_factory=dict)  # node name -> host; else LOCAL
    controller: Host = LOCAL
    applications: str = HOST  # the address the host's applications (SAEs) connect from
    # Each domain's controller process ("controller-A") -> its host, in a twin of several
    # domains (`controller` is then the first domain's); empty: one controller.
    controllers: Mapping[str, Host] = field(default_factory=dict)

    def node(self, name: str) -> Host:
        return self.nodes.get(name, LOCAL)

    def controller_of(self, process: str) -> Host:
        """The host of controller process `process` ("controller", or "controller-<domain>")."""
        return self.controllers.get(process, self.controller)

    def addresses(self) -> dict[str, str]:
        """Node name (and "controller", and each "controller-<domain>") -> address: what the
        plan and the configs need."""
        return {
            **{name: host.address for name, host in self.nodes.items()},
            CONTROLLER: self.controller.address,
            **{name: host.address for name, host in self.controllers.items()},
        }


def local() -> Hosts:
    return Hosts("local")


def from_netns(plan: netns.NetnsPlan) -> Hosts:
    def host(slot: netns.Slot) -> Host:
        return Host(slot.address, netns.exec_argv(slot.namespace, ()), slot.namespace)

    return Hosts(
        "netns",
        nodes={slot.role: host(slot) for slot in plan.nodes},
        controller=host(plan.controller),
        applications=plan.host_address,
        controllers={
            slot.role: host(slot) for slot in plan.controllers if slot.role != netns.CONTROLLER
        },
    )


def hosts_of(state_dir: Path) -> Hosts:
    """The hosts of the twin in `state_dir`: its namespaces if it has any, else local."""
    plan = netns.recorded(state_dir)
    return local() if plan is None else from_netns(plan)


def make_hosts(
    kind: str, state_dir: Path, nodes: Sequence[str], domains: Sequence[str] = ()
) -> Hosts:
    """The hosts of a new twin: "local" makes nothing; "netns" creates a namespace per node
    and one for the controller, or one per domain's controller when `domains` names them
    (removed again by `remove_hosts`)."""
    if kind == "local":
        return local()
    if kind == "netns":
        return from_netns(netns.create(state_dir, nodes, netns.domain_controllers(domains)))
    raise ValueError(f"hosts {kind!r}: known kinds are {', '.join(KINDS)}")


def remove_hosts(state_dir: Path) -> list[str]:
    """Removes whatever `make_hosts` made for `state_dir` (nothing for a local twin)."""
    return netns.teardown(state_dir)


@contextmanager
def hosts_for(
    kind: str, state_dir: Path, nodes: Sequence[str], domains: Sequence[str] = ()
) -> Iterator[Hosts]:
    """The hosts of a twin for the duration of a `with` block."""
    hosts = make_hosts(kind, state_dir, nodes, domains)
    try:
        yield hosts
    finally:
        remove_hosts(state_dir)
