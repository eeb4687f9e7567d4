"""The operational (config false) leaves of a node's tree, read from the emulated hardware.

Pure but for the clock and the modules' counters: the configured tree comes in through the
typed model (`yang.model.QkdNode`), the state goes out as RFC 7951 JSON for the datastore.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.emulator.channel import LinkStatus
from agents.emulator.hardware import NodeHardware, NodeStatus, combined_status
from agents.emulator.qkd_module import ModuleStats, QkdModule
from agents.initial_config import QKD_NODE, decimal3, identity
from agents.node.consumption import ConsumptionLedger
from agents.node.events import u32
from yang.model import QkdApp, QkdLink, QkdLinkTypes, QkdNode

PHYS = identity("PHYS")


@dataclass(frozen=True)
class AppRecord:
    """When an application appeared here and how many bits the key manager had delivered to
    its SAEs by then (its statistics count from there)."""

    created: str
    delivered_baseline: int = 0


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def links_by_id(tree: QkdNode) -> dict[str, QkdLink]:
    return {link.qkdl_id: link for link in tree.qkd_links.qkd_link}


def hop_modules(hardware: NodeHardware, link: QkdLink | None) -> list[QkdModule]:
    """The modules of the PHYS links a VIRT link's hops go over."""
    if link is None:
        return []
    hops = [link.virt_prev_hop] if link.virt_prev_hop is not None else []
    return hardware.hop_modules([*hops, *link.virt_next_hop])


def expected_consumption(tree: QkdNode, qkdl_id: str, peer_qkdn_id: str) -> int:
    """bit/s the configuration plans to draw from PHYS link `qkdl_id` to `peer_qkdn_id`.

    The `virt_bandwidth` of every VIRT link that crosses it (its previous or next hop is
    the peer of this link) plus the bandwidth of apps backed by this link directly.
    """
    total = 0
    for virt in tree.qkd_links.qkd_link:
        if virt.qkdl_type is not QkdLinkTypes.VIRT:
            continue
        if virt.virt_prev_hop == peer_qkdn_id or peer_qkdn_id in virt.virt_next_hop:
            total += virt.virt_bandwidth or 0
    for app in tree.qkd_applications.qkd_app:
        if qkdl_id in app.backing_qkdl_id:
            qos = app.app_qos
            total += qos.max_bandwidth or qos.min_bandwidth or 0
    return total


def operational_state(
    tree: QkdNode,
    hardware: NodeHardware,
    apps: Mapping[str, AppRecord],
    consumption: ConsumptionLedger | None = None,
) -> dict[str, Any]:
    """State leaves of <get>: statuses, link performance, application status and use
    (`consumption`: what the key manager reported it delivered per SAE pair).

    One snapshot of each module's counters and one clock reading serve the whole report.
    """
    stats = {qkdl_id: module.stats() for qkdl_id, module in hardware.modules.items()}
    now = now_text() if tree.qkd_applications.qkd_app else ""  # only applications show it
    state: dict[str, Any] = {
        "qkdn_id": hardware.qkdn_id,
        "qkdn_status": identity(hardware.status.value),
    }
    interfaces = [
        {"qkdi_id": iface.qkdi_id, "qkdi_status": identity(_iface_status(hardware, iface.qkdi_id))}
        for iface in tree.qkd_interfaces.qkd_interface
    ]
    if interfaces:
        state["qkd_interfaces"] = {"qkd_interface": interfaces}
    links = links_by_id(tree)
    link_states = [_link_state(tree, hardware, stats, link) for link in links.values()]
    if link_states:
        state["qkd_links"] = {"qkd_link": link_states}
    usage = consumption or ConsumptionLedger()
    app_states = [
        _app_state(hardware, now, links, apps, usage, app) for app in tree.qkd_applications.qkd_app
    ]
    if app_states:
        state["qkd_applications"] = {"qkd_app": app_states}
    return {QKD_NODE: state}


def _iface_status(hardware: NodeHardware, qkdi_id: int) -> str:
    if hardware.status is NodeStatus.DOWN:
        return "FAILED"
    qkdl_id = hardware.interfaces.get(qkdi_id)
    if qkdl_id is None:
        return "DISABLED"
    return "ENABLED" if hardware.modules[qkdl_id].state.enabled else "DISABLED"


def _link_state(
    tree: QkdNode, hardware: NodeHardware, stats: Mapping[str, ModuleStats], link: QkdLink
) -> dict[str, Any]:
    qkdl_id = link.qkdl_id
    module = hardware.modules.get(qkdl_id)
    kind = PHYS if link.qkdl_type is None else identity(link.qkdl_type.value)
    entry: dict[str, Any] = {"qkdl_id": qkdl_id, "qkdl_type": kind}
    if module is not None:
        own = stats[qkdl_id]
        peer = module.end.peer_qkdn_id
        entry["qkdl_status"] = identity(own.status.value)
        entry["qkdl_performance"] = {
            "expected_consumption": u32(expected_consumption(tree, qkdl_id, peer)),
            "skr": u32(own.skr_bps),
            "eskr": u32(own.eskr_bps),
            "phys_perf": [{"perf_type": identity("QBER"), "value": decimal3(own.qber)}],
        }
        return entry
    hops = hop_modules(hardware, link)
    entry["qkdl_status"] = identity(combined_status(hops).value)
    if hops:
        entry["qkdl_performance"] = {
            "expected_consumption": u32(link.virt_bandwidth or 0),
            "skr": u32(min(stats[m.end.qkdl_id].skr_bps for m in hops)),
            "eskr": u32(min(stats[m.end.qkdl_id].eskr_bps for m in hops)),
        }
    return entry


def delivered_bits(consumption: ConsumptionLedger, app: QkdApp) -> int:
    """Bits the key manager reported delivering to `app`'s SAEs (over all its runs)."""
    if not app.server_app_id:
        return 0
    return consumption.bits(app.server_app_id, app.client_app_id)


def _app_state(
    hardware: NodeHardware,
    now: str,
    links: Mapping[str, QkdLink],
    apps: Mapping[str, AppRecord],
    consumption: ConsumptionLedger,
    app: QkdApp,
) -> dict[str, Any]:
    record = apps.get(app.app_id) or AppRecord(now)
    statuses = []
    for backing in app.backing_qkdl_id:
        module = hardware.modules.get(backing)
        hops = [module] if module is not None else hop_modules(hardware, links.get(backing))
        statuses.append(combined_status(hops))
    status = "ON" if all(s is LinkStatus.ACTIVE for s in statuses) else "DISCONNECTED"
    if _expired(app.expiration_time):
        status = "OUT-OF-TIME"
    # Key bits handed to the application's SAEs by this node's key manager since the app
    # appeared here (0 on a node that only relays for it).
    consumed = delivered_bits(consumption, app) - record.delivered_baseline
    return {
        "app_id": app.app_id,
        "app_status": identity(status),
        "creation_time": record.created,
        "app_statistics": {
            "statistics": [
                {
                    "end_time": now,
                    "start_time": record.created,
                    "consumed_bits": u32(consumed),
                }
            ]
        },
    }


def _expired(expiration: str | None) -> bool:
    if expiration is None:
        return False
    try:
        when = datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when < datetime.now(UTC)
