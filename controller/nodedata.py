"""Reads a node's `qkd_node` data tree (the XML of a NETCONF <get>/<get-config>) into values.

Pure: text in, frozen values out. Unknown elements are ignored so that newer agents with extra
leaves do not break the controller.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from controller.errors import NodeDataError
from controller.model import DeviceId, LinkId, LinkStatus
from controller.names import QKD_NS, SDN_NS, identity_name, q


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
class VirtLink:
    qkdl_id: LinkId
    local: DeviceId  # source node of the association
    remote: DeviceId  # destination node
    prev_hop: DeviceId | None
    next_hops: tuple[DeviceId, ...]
    bandwidth: int


@dataclass(frozen=True)
class AppEntry:
    app_id: str
    app_type: str  # CLIENT or INTERNAL
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


@dataclass(frozen=True)
class NodeData:
    qkdn_id: DeviceId
    location: str
    interfaces: tuple[int, ...]
    phys_links: tuple[LinkHalf, ...]
    virt_links: tuple[VirtLink, ...]
    apps: tuple[AppEntry, ...]


def _text(parent: ET.Element | None, tag: str, ns: str = QKD_NS) -> str:
    if parent is None:
        return ""
    found = parent.find(q(tag, ns))
    return (found.text or "").strip() if found is not None else ""


def _int(parent: ET.Element | None, tag: str, ns: str = QKD_NS) -> int:
    text = _text(parent, tag, ns)
    try:
        return int(text) if text else 0
    except ValueError:
        raise NodeDataError(f"{tag} is not an integer: {text!r}") from None


def _texts(parent: ET.Element, tag: str, ns: str = QKD_NS) -> tuple[str, ...]:
    return tuple((e.text or "").strip() for e in parent.findall(q(tag, ns)))


def find_qkd_node(xml: str) -> ET.Element:
    """The qkd_node element of a reply (<rpc-reply><data>…), a <config> or a bare tree."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise NodeDataError(f"node data is not XML: {error}") from None
    if root.tag == q("qkd_node"):
        return root
    found = root.find(f".//{q('qkd_node')}")
    if found is None:
        raise NodeDataError("no qkd_node in the node's data")
    return found


def _link_status(text: str) -> LinkStatus:
    name = identity_name(text)
    try:
        return LinkStatus(name) if name else LinkStatus.ACTIVE
    except ValueError:
        raise NodeDataError(f"unknown qkdl_status {text!r}") from None


def _qber(link: ET.Element) -> float | None:
    for perf in link.findall(f"{q('qkdl_performance')}/{q('phys_perf')}"):
        if identity_name(_text(perf, "perf_type")) == "QBER":
            value = _text(perf, "value")
            return float(value) if value else None
    return None


def _phys(link: ET.Element, node_id: DeviceId) -> LinkHalf:
    perf = link.find(q("qkdl_performance"))
    local = _text(link.find(q("qkdl_local")), "qkdn_id") or node_id
    return LinkHalf(
        qkdl_id=_text(link, "qkdl_id"),
        local=local,
        remote=_text(link.find(q("qkdl_remote")), "qkdn_id"),
        status=_link_status(_text(link, "qkdl_status")),
        enabled=_text(link, "qkdl_enable") != "false",
        skr=_int(perf, "skr"),
        eskr=_int(perf, "eskr"),
        expected_consumption=_int(perf, "expected_consumption"),
        qber=_qber(link),
    )


def _virt(link: ET.Element) -> VirtLink:
    prev = _text(link, "virt_prev_hop")
    return VirtLink(
        qkdl_id=_text(link, "qkdl_id"),
        local=_text(link.find(q("qkdl_local")), "qkdn_id"),
        remote=_text(link.find(q("qkdl_remote")), "qkdn_id"),
        prev_hop=prev or None,
        next_hops=_texts(link, "virt_next_hop"),
        bandwidth=_int(link, "virt_bandwidth"),
    )


def _app(app: ET.Element) -> AppEntry:
    qos = app.find(q("app_qos"))
    admission = app.find(q("admission", SDN_NS))
    return AppEntry(
        app_id=_text(app, "app_id"),
        app_type=identity_name(_text(app, "app_type")),
        server_app_id=_text(app, "server_app_id"),
        client_app_ids=_texts(app, "client_app_id"),
        priority=_int(app, "app_priority"),
        min_bandwidth=_int(qos, "min_bandwidth"),
        max_bandwidth=_int(qos, "max_bandwidth"),
        jitter=_int(qos, "jitter"),
        ttl=_int(qos, "ttl"),
        backing=_texts(app, "backing_qkdl_id"),
        local_qkdn_id=_text(app, "local_qkdn_id"),
        remote_qkdn_id=_text(app, "remote_qkdn_id"),
        admission_state=_text(admission, "state", SDN_NS) or None
        if admission is not None
        else None,
        admission_reason=_text(admission, "reason", SDN_NS),
        admission_path=_texts(admission, "path", SDN_NS) if admission is not None else (),
    )


def parse_node(xml: str) -> NodeData:
    """The node's own view: id, interfaces, PHYS link halves, VIRT links and applications."""
    node = find_qkd_node(xml)
    qkdn_id = _text(node, "qkdn_id")
    if not qkdn_id:
        raise NodeDataError("qkd_node has no qkdn_id")
    phys: list[LinkHalf] = []
    virt: list[VirtLink] = []
    for link in node.findall(f"{q('qkd_links')}/{q('qkd_link')}"):
        if identity_name(_text(link, "qkdl_type")) == "VIRT":
            virt.append(_virt(link))
        else:
            phys.append(_phys(link, qkdn_id))
    return NodeData(
        qkdn_id=qkdn_id,
        location=_text(node, "qkdn_location_id"),
        interfaces=tuple(
            _int(i, "qkdi_id") for i in node.findall(f"{q('qkd_interfaces')}/{q('qkd_interface')}")
        ),
        phys_links=tuple(phys),
        virt_links=tuple(virt),
        apps=tuple(_app(a) for a in node.findall(f"{q('qkd_applications')}/{q('qkd_app')}")),
    )
