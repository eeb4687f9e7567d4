"""Fault injection into a running twin through each agent's AgentControl service.

`kill` SIGKILLs one of the twin's processes by name (a crash; the supervisor restarts it).
A fibre fault concerns both ends of a link: it is applied at both agents, so that both
modules stop (or resume) producing key together. A partition cuts a node's classical network
instead (a twin started with `--hosts netns`: the node's veth goes down), see `partition`.
The calls present the lab's operator certificate (urn:qkdsdn:operator:lab): the agents
refuse AgentControl to anyone else.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc

from common.protos import control_pb2, control_pb2_grpc
from common.roles import TlsMaterial
from lab.plan import LabPlan, LinkPlan
from lab.processes import is_ours

KINDS = ("cut", "restore", "eavesdrop", "stop-node")
NETWORK_KINDS = ("partition", "heal")  # a node's classical network, in a namespace lab
PROCESS_KINDS = ("kill",)  # a process of the twin, by the name `lab status` shows


class FaultError(RuntimeError):
    """The fault could not be injected; the message says why."""


def find_link(plan: LabPlan, target: str) -> LinkPlan:
    """The link named `A-B` (either order)."""
    a, sep, b = target.partition("-")
    if not sep:
        raise FaultError(f"{target!r}: a link is written NODE-NODE, e.g. qnode1-qnode2")
    for link in plan.links:
        if {link.a, link.b} == {a, b}:
            return link
    known = ", ".join(f"{link.a}-{link.b}" for link in plan.links)
    raise FaultError(f"no link {target!r} in the twin; links: {known}")


def operator_credentials(plan: LabPlan) -> grpc.ChannelCredentials:
    """The lab operator's client certificate, trusting agents signed by the lab CA."""
    cert, key = plan.operator_cert
    if not cert:
        raise FaultError("the lab plan has no operator certificate: run `qkdsdn lab up` again")
    try:
        tls = TlsMaterial.from_files(cert, key, plan.credentials.ca_cert)
    except OSError as error:
        raise FaultError(f"cannot read the operator certificate: {error}") from None
    return grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)


def _call(
    plan: LabPlan, address: str, method: str, request: object, timeout: float = 5.0
) -> object:
    with grpc.secure_channel(address, operator_credentials(plan)) as channel:
        stub = control_pb2_grpc.AgentControlStub(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as error:
            raise FaultError(
                f"{method} at {address}: {error.code().name} {error.details()}"
            ) from None


def inject(plan: LabPlan, kind: str, target: str, fraction: float = 0.25) -> str:
    """Applies one fault; returns a one-line description of the new state."""
    if kind == "stop-node":
        node = plan.node(target) if target in {n.name for n in plan.nodes} else None
        if node is None:
            raise FaultError(f"no node {target!r} in the twin")
        plan = plan.view_of_node(node.name)  # the operator certificate of the node's domain
        reply = _call(plan, node.agent_grpc_address, "StopNode", control_pb2.StopNodeRequest())
        return str(getattr(reply, "message", "stopped"))
    link = find_link(plan, target)
    plan = plan.view_of_node(link.a)  # a link stays within a domain
    if kind in ("cut", "restore"):
        request: object = control_pb2.SetLinkRequest(qkdl_id=link.qkdl_id, up=kind == "restore")
        method = "SetLink"
    elif kind == "eavesdrop":
        if not 0.0 <= fraction <= 1.0:
            raise FaultError(f"--fraction {fraction}: must be between 0 and 1")
        request = control_pb2.SetEavesdropperRequest(qkdl_id=link.qkdl_id, fraction=fraction)
        method = "SetEavesdropper"
    else:
        raise FaultError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
    states = []
    for end in (link.a, link.b):
        reply = _call(plan, plan.node(end).agent_grpc_address, method, request)
        state = reply.link  # type: ignore[attr-defined]
        states.append(f"{end}: {state.status} skr={state.skr_bps:.0f} bit/s qber={state.qber:.3f}")
    return "; ".join(states)


def kill_process(state_dir: Path, name: str) -> str:
    """SIGKILLs process `name` of a running twin (as `lab status` names it, e.g. km-b_a):
    a crash, with no chance to clean up. The supervisor, if any, restarts it."""
    from lab.launcher import recorded_status

    records = {r.process.name: r.process for r in recorded_status(state_dir)}
    process = records.get(name)
    if process is None:
        known = ", ".join(records) or "none"
        raise FaultError(f"no process {name!r} in {state_dir}; known: {known}")
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        raise FaultError(f"{name} (pid {process.pid}) is not running") from None
    try:  # opened, then checked: a reused PID is never signalled
        if not is_ours(process):
            raise FaultError(f"{name} (pid {process.pid}) is not running")
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
    return f"{name} (pid {process.pid}) killed with SIGKILL"


def partition(state_dir: Path, node: str, cut: bool) -> str:
    """Cuts (or heals) a node's classical network: nothing reaches its agent and key manager
    and nothing leaves them, while its QKD links keep producing key."""
    from lab import netns

    try:
        plan = netns.recorded(state_dir)
        if plan is None:
            raise FaultError(
                f"{state_dir} holds no namespace lab: a partition needs a twin started with "
                "`qkdsdn lab up FILE --hosts netns`"
            )
        return netns.set_partition(plan, node, cut)
    except netns.NetnsError as error:
        raise FaultError(str(error)) from None
