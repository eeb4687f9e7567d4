"""A VIRT link of a node's tree, the one way the controller and the key managers see it."""

from __future__ import annotations

from dataclasses import dataclass

from yang.model import QkdLink, QkdLinkTypes, QkdNode


@dataclass(frozen=True)
class VirtLink:
    """A key association's hop at this node: where keys come from and go to."""

    qkdl_id: str
    local: str  # source node of the association ("" when unset)
    remote: str  # destination node ("" when unset)
    prev_hop: str | None  # None at the source
    next_hops: tuple[str, ...]  # empty at the destination
    bandwidth: int  # virt_bandwidth, 0 when unset
    # qkdsdn:hop_key_manager: (qkdn_id, relay host:port) of the hops' key managers, as the
    # controller wrote them; empty when it wrote none.
    hop_relays: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, link: QkdLink) -> VirtLink:
        # Positional, and no generator for the usual empty hop list: read once per link on
        # every push of the running configuration.
        hops = link.hop_key_manager
        return cls(
            link.qkdl_id,
            link.qkdl_local.qkdn_id or "",
            link.qkdl_remote.qkdn_id or "",
            link.virt_prev_hop,
            link.virt_next_hop,
            link.virt_bandwidth or 0,
            tuple((h.qkdn_id, h.relay_address) for h in hops if h.relay_address) if hops else (),
        )


def is_virt(link: QkdLink) -> bool:
    return link.qkdl_type is QkdLinkTypes.VIRT


def virt_links(node: QkdNode) -> tuple[VirtLink, ...]:
    """The node's VIRT links, in the tree's order."""
    return tuple(VirtLink.of(link) for link in node.qkd_links.qkd_link if is_virt(link))
