"""The ETSI GS QKD 015 notifications a node raises, as the inner XML element.

Pure builders: `NetconfServer.publish` wraps the element in an RFC 5277 <notification>.
Identityrefs are written with a declared prefix, as interoperable XML does.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

ETSI_NS = "urn:etsi:qkd:yang:etsi-qkd-node"
TYPES_NS = "urn:etsi:qkd:yang:etsi-qkd-node-types"
TYPES_PREFIX = "etsi-qkdn-types"
QKDSDN_NS = "urn:qkdsdn:yang:qkdsdn-node"


class Severity(enum.Enum):
    MAJOR = "MAJOR"
    MINOR = "MINOR"


@dataclass(frozen=True)
class Performance:
    expected_consumption: int
    skr: int
    eskr: int
    qber: float | None = None  # phys_perf QBER; None for a VIRT link


@dataclass(frozen=True)
class AppRequest:
    """What an `sdqkdn_application_new` carries (from the key manager's registration)."""

    server_app_id: str
    client_app_ids: tuple[str, ...]
    local_qkdn_id: str
    remote_qkdn_id: str
    app_type: str = "CLIENT"
    app_priority: int = 0
    min_bandwidth: int = 0
    max_bandwidth: int = 0
    jitter: int = 0
    ttl: int = 0
    key_mode: str = ""  # qkdsdn-node key-mode asked by the key manager; "": the model default


def _element(name: str) -> etree._Element:
    nsmap: Any = {None: ETSI_NS, TYPES_PREFIX: TYPES_NS}  # lxml's stubs reject the None key
    return etree.Element(f"{{{ETSI_NS}}}{name}", nsmap=nsmap)


def _leaf(parent: etree._Element, name: str, value: object, ns: str = ETSI_NS) -> None:
    etree.SubElement(parent, f"{{{ns}}}{name}").text = str(value)


def _identity(parent: etree._Element, name: str, identity: str) -> None:
    _leaf(parent, name, f"{TYPES_PREFIX}:{identity}")


def _child(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{ETSI_NS}}}{name}")


def _text(root: etree._Element) -> str:
    return etree.tostring(root, encoding="unicode")


def link_down(qkdl_id: str, reason: str) -> str:
    root = _element("sdqkdn_link_down")
    link = _child(root, "qkd_link")
    _leaf(link, "qkdl_id", qkdl_id)
    _leaf(link, "reason", reason)
    return _text(root)


def _performance(parent: etree._Element, perf: Performance, with_phys: bool) -> None:
    node = _child(parent, "performance")
    _leaf(node, "expected_consumption", perf.expected_consumption)
    _leaf(node, "skr", perf.skr)
    _leaf(node, "eskr", perf.eskr)
    if with_phys and perf.qber is not None:
        entry = _child(node, "phys_perf")
        _identity(entry, "perf_type", "QBER")
        _leaf(entry, "value", f"{perf.qber:.3f}")


def link_perf_update(qkdl_id: str, perf: Performance) -> str:
    root = _element("sdqkdn_link_perf_update")
    link = _child(root, "qkd_link")
    _leaf(link, "qkdl_id", qkdl_id)
    _performance(link, perf, with_phys=True)
    return _text(root)


def link_overloaded(qkdl_id: str, perf: Performance) -> str:
    root = _element("sdqkdn_link_overloaded")
    link = _child(root, "qkd_link")
    _leaf(link, "qkdl_id", qkdl_id)
    _performance(link, perf, with_phys=False)
    return _text(root)


def application_new(app: AppRequest) -> str:
    root = _element("sdqkdn_application_new")
    body = _child(root, "qkd_application")
    _identity(body, "app_type", app.app_type)
    _leaf(body, "server_app_id", app.server_app_id)
    for client in app.client_app_ids:
        _leaf(body, "client_app_id", client)
    _leaf(body, "app_priority", app.app_priority)
    _leaf(body, "local_qkdn_id", app.local_qkdn_id)
    qos = _child(body, "app_qos")
    _leaf(qos, "max_bandwidth", app.max_bandwidth)
    _leaf(qos, "min_bandwidth", app.min_bandwidth)
    _leaf(qos, "jitter", app.jitter)
    _leaf(qos, "ttl", app.ttl)
    remote = etree.SubElement(body, f"{{{QKDSDN_NS}}}remote_qkdn_id", nsmap={"qkdsdn": QKDSDN_NS})
    remote.text = app.remote_qkdn_id
    if app.key_mode:
        etree.SubElement(body, f"{{{QKDSDN_NS}}}key_mode").text = app.key_mode
    return _text(root)


def link_alarm(
    kind: str, qkdl_id: str, status: str, message: str, severity: Severity = Severity.MAJOR
) -> str:
    """`alarm` (something needs attention) or `event` (something happened) about a link."""
    if kind not in ("alarm", "event"):
        raise ValueError(f"kind must be alarm or event, not {kind!r}")
    root = _element(kind)
    link = _child(root, "link")
    _leaf(link, "qkdl_id", qkdl_id)
    _identity(link, "qkdl_status", status)
    _leaf(link, "message", message)
    _identity(link, "severity", severity.value)
    return _text(root)


def names_of(xml_events: Sequence[str]) -> list[str]:
    """Local names of notification elements (for logs and tests)."""
    return [etree.QName(etree.fromstring(x.encode())).localname for x in xml_events]
