"""ETSI 015 notifications (RFC 5277 envelopes) into typed values (pure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from controller.errors import NodeDataError
from controller.model import LinkStatus, QoS
from controller.names import NOTIF_NS, QKD_NS, SDN_NS, identity_name, q
from yang.model import KeyMode


@dataclass(frozen=True)
class ApplicationNew:
    server_app_id: str
    client_app_ids: tuple[str, ...]
    local_qkdn_id: str
    remote_qkdn_id: str
    qos: QoS
    key_mode: KeyMode = KeyMode.QKD_PREFERRED  # qkdsdn-node:key_mode (its default when absent)


@dataclass(frozen=True)
class LinkDown:
    qkdl_id: str
    reason: str


@dataclass(frozen=True)
class LinkPerf:
    qkdl_id: str
    skr: int
    eskr: int
    expected_consumption: int
    qber: float | None


@dataclass(frozen=True)
class LinkStatusEvent:
    """`event`/`alarm` about a link: carries its new status."""

    qkdl_id: str
    status: LinkStatus
    message: str


@dataclass(frozen=True)
class AppQosUpdate:
    app_id: str
    qos: QoS


@dataclass(frozen=True)
class AppDisconnected:
    app_id: str


@dataclass(frozen=True)
class Other:
    name: str


Notification = (
    ApplicationNew | LinkDown | LinkPerf | LinkStatusEvent | AppQosUpdate | AppDisconnected | Other
)


def _t(parent: ET.Element | None, tag: str, ns: str = QKD_NS) -> str:
    if parent is None:
        return ""
    found = parent.find(q(tag, ns))
    return (found.text or "").strip() if found is not None else ""


def _i(parent: ET.Element | None, tag: str) -> int:
    text = _t(parent, tag)
    try:
        return int(text) if text else 0
    except ValueError:
        raise NodeDataError(f"notification leaf {tag} is not an integer: {text!r}") from None


def _qber(perf: ET.Element | None) -> float | None:
    if perf is None:
        return None
    for entry in perf.findall(q("phys_perf")):
        if identity_name(_t(entry, "perf_type")) == "QBER":
            return float(_t(entry, "value") or "nan")
    return None


def _app_qos(app: ET.Element | None, name: str) -> QoS:
    qos = app.find(q("app_qos")) if app is not None else None
    try:
        return QoS(
            min_bandwidth=_i(qos, "min_bandwidth"),
            max_bandwidth=_i(qos, "max_bandwidth"),
            priority=_i(app, "app_priority"),
            ttl=_i(qos, "ttl"),
            jitter=_i(qos, "jitter"),
        )
    except ValueError as error:
        raise NodeDataError(f"{name}: {error}") from None


def _key_mode(app: ET.Element | None, name: str) -> KeyMode:
    text = _t(app, "key_mode", SDN_NS)
    if not text:
        return KeyMode.QKD_PREFERRED
    try:
        return KeyMode(text)
    except ValueError:
        known = ", ".join(mode.value for mode in KeyMode)
        raise NodeDataError(f"{name}: key_mode {text!r} is not one of {known}") from None


def parse_notification(xml: str) -> Notification:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise NodeDataError(f"notification is not XML: {error}") from None
    body = [c for c in root if c.tag != q("eventTime", NOTIF_NS)]
    if root.tag != q("notification", NOTIF_NS) or not body:
        raise NodeDataError("not an RFC 5277 notification")
    event = body[0]
    name = event.tag.rpartition("}")[2]
    if event.tag in (q("sdqkdn_application_new"), q("sdqkdn_application_qos_update")):
        app = event.find(q("qkd_application"))
        app_qos = _app_qos(app, name)
        if event.tag == q("sdqkdn_application_qos_update"):
            return AppQosUpdate(_t(app, "app_id"), app_qos)
        return ApplicationNew(
            server_app_id=_t(app, "server_app_id"),
            client_app_ids=tuple(
                (e.text or "").strip()
                for e in (app if app is not None else [])
                if e.tag == q("client_app_id")
            ),
            local_qkdn_id=_t(app, "local_qkdn_id"),
            remote_qkdn_id=_t(app, "remote_qkdn_id", SDN_NS),
            qos=app_qos,
            key_mode=_key_mode(app, name),
        )
    if event.tag == q("sdqkdn_link_down"):
        link = event.find(q("qkd_link"))
        return LinkDown(_t(link, "qkdl_id"), _t(link, "reason"))
    if event.tag in (q("sdqkdn_link_perf_update"), q("sdqkdn_link_overloaded")):
        link = event.find(q("qkd_link"))
        perf = link.find(q("performance")) if link is not None else None
        return LinkPerf(
            _t(link, "qkdl_id"),
            skr=_i(perf, "skr"),
            eskr=_i(perf, "eskr"),
            expected_consumption=_i(perf, "expected_consumption"),
            qber=_qber(perf),
        )
    if event.tag in (q("event"), q("alarm")):
        link = event.find(q("link"))
        status = identity_name(_t(link, "qkdl_status"))
        if link is not None and status in LinkStatus.__members__:
            return LinkStatusEvent(_t(link, "qkdl_id"), LinkStatus(status), _t(link, "message"))
    if event.tag == q("sdqkdn_application_disconnected"):
        return AppDisconnected(_t(event.find(q("qkd_application")), "app_id"))
    return Other(name)
