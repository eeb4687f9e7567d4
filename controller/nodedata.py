"""Reads a node's `qkd_node` data tree (the XML of a NETCONF <get>/<get-config>) into values.

Pure: text in, frozen values out, read through the generated model (yang.model). Unknown
elements are ignored so that newer agents with extra leaves do not break the controller;
a known leaf with a wrong value is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.errors import NodeDataError
from controller.model import DeviceId, LinkId, LinkStatus
from yang.model import KeyMode, ModelError, PhysPerfTypes, QkdApp, QkdLink, QkdNode, View
from yang.virt_link import VirtLink, is_virt

__all__ = ["AppEntry", "LinkHalf", "NodeData", "VirtLink", "parse_node"]


@dataclass(frozen=True)
class LinkHalf:
    """A PHYS link as one of its ends reports it."""

    qkdl_id: LinkId
    local: DeviceId
    remote: DeviceId
    status: LinkStatus
    enabled: bool
    skr: int
    eskr: int
    expected_consumption: int
    qber: float | None


@dataclass(frozen=True)
class AppEntry:
    app_id: str
    app_type: str  # CLIENT or INTERNAL ("" when unset)
    server_app_id: str
    client_app_ids: tuple[str, ...]
    priority: int
    min_bandwidth: int
    max_bandwidth: int
    jitter: int
    ttl: int
    backing: tuple[LinkId, ...]
    local_qkdn_id: DeviceId
    remote_qkdn_id: DeviceId
    admission_state: str | None  # our augment: pending/admitted/rejected/failed
    admission_reason: str
    admission_path: tuple[DeviceId, ...]
    # 015 app_statistics: key bits the node's key manager handed to the app's SAEs (the
    # latest interval's; None when the node reports none) and our relay/buffer augment.
    consumed_bits: int | None = None
    relay_buffer: int | None = None
    key_mode: KeyMode = KeyMode.QKD_PREFERRED  # our augment (its default when unset)


@dataclass(frozen=True)
class NodeData:
    qkdn_id: DeviceId
    location: str
    interfaces: tuple[int, ...]
    phys_links: tuple[LinkHalf, ...]
    virt_links: tuple[VirtLink, ...]
    apps: tuple[AppEntry, ...]
    km_relay_address: str = ""  # qkdsdn:key_manager/relay_address ("" when the node gives none)


def _qber(link: QkdLink) -> float | None:
    for perf in link.qkdl_performance.phys_perf:
        if perf.perf_type is PhysPerfTypes.QBER:
            return None if perf.value is None else float(perf.value)
    return None


def _phys(link: QkdLink, node_id: DeviceId) -> LinkHalf:
    perf = link.qkdl_performance
    status = link.qkdl_status
    return LinkHalf(
        qkdl_id=link.qkdl_id,
        local=link.qkdl_local.qkdn_id or node_id,
        remote=link.qkdl_remote.qkdn_id or "",
        status=LinkStatus.ACTIVE if status is None else LinkStatus(status.value),
        enabled=link.qkdl_enable_or_default,
        skr=perf.skr or 0,
        eskr=perf.eskr or 0,
        expected_consumption=perf.expected_consumption or 0,
        qber=_qber(link),
    )


def _app(app: QkdApp) -> AppEntry:
    qos = app.app_qos
    admission = app.admission
    return AppEntry(
        app_id=app.app_id,
        app_type="" if app.app_type is None else app.app_type.value,
        server_app_id=app.server_app_id or "",
        client_app_ids=app.client_app_id,
        priority=app.app_priority or 0,
        min_bandwidth=qos.min_bandwidth or 0,
        max_bandwidth=qos.max_bandwidth or 0,
        jitter=qos.jitter or 0,
        ttl=qos.ttl or 0,
        backing=app.backing_qkdl_id,
        local_qkdn_id=app.local_qkdn_id or "",
        remote_qkdn_id=app.remote_qkdn_id or "",
        admission_state=None if admission.state is None else admission.state.value,
        admission_reason=admission.reason or "",
        admission_path=admission.path,
        consumed_bits=_consumed(app),
        relay_buffer=app.relay.buffer,
        key_mode=app.key_mode_or_default,
    )


def _consumed(app: QkdApp) -> int | None:
    """consumed_bits of the latest statistics entry (by end_time), if any."""
    entries = [s for s in app.app_statistics.statistics if s.consumed_bits is not None]
    if not entries:
        return None
    return max(entries, key=lambda s: s.end_time).consumed_bits


def parse_node(xml: str) -> NodeData:
    """The node's own view: id, interfaces, PHYS link halves, VIRT links and applications.

    Read through the controller's view of the model: what `node_data` reads, with every
    check; the parts it never reads (capabilities, statistics...) are not parsed."""
    try:
        node = QkdNode.from_xml(xml, ignore_unknown=True, view=View.CONTROLLER)
    except ModelError as exc:
        raise NodeDataError(f"node data: {exc}") from None
    return node_data(node)


def node_data(node: QkdNode) -> NodeData:
    """The controller's values of a node's tree."""
    phys: list[LinkHalf] = []
    virt: list[VirtLink] = []
    for link in node.qkd_links.qkd_link:
        if is_virt(link):
            virt.append(VirtLink.of(link))
        else:
            phys.append(_phys(link, node.qkdn_id))
    return NodeData(
        qkdn_id=node.qkdn_id,
        location=node.qkdn_location_id_or_default,
        interfaces=tuple(i.qkdi_id for i in node.qkd_interfaces.qkd_interface),
        phys_links=tuple(phys),
        virt_links=tuple(virt),
        apps=tuple(_app(a) for a in node.qkd_applications.qkd_app),
        km_relay_address=node.key_manager.relay_address or "",
    )
