"""What the emulated hardware refuses in a new configuration (pure: the tree and the node's fibres)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from agents.config import AgentLink
from yang.model import QkdLink, QkdLinkTypes, QkdNode

PHYS = QkdLinkTypes.PHYS
VIRT = QkdLinkTypes.VIRT


def veto(
    tree: QkdNode,
    qkdn_id: str,
    fibres: Mapping[str, AgentLink],
    neighbours: Mapping[str, str],
) -> str | None:
    """The first reason to refuse `tree` for node `qkdn_id` with PHYS links `fibres` (by
    qkdl_id) to `neighbours` (qkdn_id -> qkdl_id); None accepts."""
    return next(_problems(tree, qkdn_id, fibres, neighbours), None)


def _problems(
    tree: QkdNode, qkdn_id: str, fibres: Mapping[str, AgentLink], neighbours: Mapping[str, str]
) -> Iterator[str]:
    if tree.qkdn_id != qkdn_id:
        yield f"qkdn_id is fixed to {qkdn_id}"
    yield from _interface_problems(tree, fibres)
    links = {link.qkdl_id: link for link in tree.qkd_links.qkd_link}
    yield from _link_problems(links, qkdn_id, fibres, neighbours)
    for app in tree.qkd_applications.qkd_app:
        for backing in app.backing_qkdl_id:
            if backing not in links:
                yield f"qkd_app {app.app_id}: backing link {backing} is not configured"


def _interface_problems(tree: QkdNode, fibres: Mapping[str, AgentLink]) -> Iterator[str]:
    present = {iface.qkdi_id for iface in tree.qkd_interfaces.qkd_interface}
    ours = {link.local_qkdi_id: qkdl_id for qkdl_id, link in fibres.items()}
    for qkdi_id in sorted(i for i in present if i not in ours):
        yield f"qkd_interface {qkdi_id}: this node has no such QKD module"
    for qkdi_id, qkdl_id in sorted(ours.items()):
        if qkdi_id not in present:
            yield f"qkd_interface {qkdi_id} is the module of PHYS link {qkdl_id}: it cannot be removed"


def _link_problems(
    links: Mapping[str, QkdLink],
    qkdn_id: str,
    fibres: Mapping[str, AgentLink],
    neighbours: Mapping[str, str],
) -> Iterator[str]:
    for qkdl_id in fibres:
        if qkdl_id not in links:
            yield f"PHYS link {qkdl_id} cannot be removed (set qkdl_enable to false instead)"
    for qkdl_id, link in links.items():
        kind = link.qkdl_type
        if qkdl_id in fibres:
            yield from _phys_problems(link, qkdn_id, fibres[qkdl_id])
        elif kind is PHYS:
            yield f"PHYS link {qkdl_id}: no fibre of this node has that id"
        elif kind is VIRT:
            yield from _virt_problems(link, qkdn_id, neighbours)
        else:
            yield f"qkd_link {qkdl_id}: qkdl_type must be VIRT for a link this node does not own"


def _phys_problems(link: QkdLink, qkdn_id: str, fibre: AgentLink) -> Iterator[str]:
    qkdl_id, kind = link.qkdl_id, link.qkdl_type
    if kind not in (None, PHYS):
        yield f"qkd_link {qkdl_id} is a PHYS link of this node, not {_identity(kind)}"
    expected = (
        ("qkdl_local", link.qkdl_local, qkdn_id, fibre.local_qkdi_id),
        ("qkdl_remote", link.qkdl_remote, fibre.peer.qkdn_id, fibre.peer.qkdi_id),
    )
    for end, given, node_id, qkdi_id in expected:
        given_node = node_id if given.qkdn_id is None else given.qkdn_id
        given_qkdi = qkdi_id if given.qkdi_id is None else given.qkdi_id
        if given_node != node_id or given_qkdi != qkdi_id:
            yield f"PHYS link {qkdl_id}: {end} is fixed to node {node_id} interface {qkdi_id}"


def _virt_problems(link: QkdLink, qkdn_id: str, neighbours: Mapping[str, str]) -> Iterator[str]:
    qkdl_id = link.qkdl_id
    hops = [("virt_prev_hop", link.virt_prev_hop)] if link.virt_prev_hop is not None else []
    hops += [("virt_next_hop", hop) for hop in link.virt_next_hop]
    for leaf, hop in hops:
        if hop == qkdn_id:
            yield f"VIRT link {qkdl_id}: {leaf} {hop} is this node itself"
        elif hop not in neighbours:
            yield f"VIRT link {qkdl_id}: {leaf} {hop} is not a neighbour (no PHYS link to it)"


def _identity(kind: QkdLinkTypes | None) -> str:
    return f"etsi-qkd-node-types:{kind.value}" if kind is not None else "unset"
