"""The configuration a node boots with, from the lab plan (RFC 7951 JSON of `qkd_node`).

One `qkd_interface` per link end (the emulated module), one PHYS `qkd_link` per link, and the
`qkdsdn:key_manager` augment telling the controller where the node's key manager listens.
Pure: a function of the plan.
"""

from __future__ import annotations

from typing import Any

from agents.physics import PRESETS, channel_loss_db
from lab.plan import LabPlan, LinkPlan

NODE_MODULE = "etsi-qkd-sdn-node"
TYPES = "etsi-qkd-node-types"
AUGMENT = "qkdsdn-node"
QKD_NODE = f"{NODE_MODULE}:qkd_node"
KEY_MANAGER = f"{AUGMENT}:key_manager"

QKDN_VERSION = "qkd-sdn 0.1.0 (emulated)"
WAVELENGTH_NM = "1550"
WAVELENGTH_RANGE = "1530-1565"
MAX_ABSORPTION_DB = 40.0


def identity(name: str) -> str:
    """An `etsi-qkd-node-types` identity as RFC 7951 writes it."""
    return f"{TYPES}:{name}"


def decimal3(value: float) -> str:
    """A decimal64 with 3 fraction digits (RFC 7951 writes decimal64 as a string)."""
    return f"{value:.3f}"


def channel_attenuation_db(link: LinkPlan) -> float:
    alpha = PRESETS[link.preset].alpha_db_per_km if link.preset in PRESETS else 0.2
    return channel_loss_db(link.length_km, link.extra_loss_db, alpha)


def initial_running(plan: LabPlan, node_name: str) -> dict[str, Any]:
    """The running `qkd_node` of `node_name` before any controller edit."""
    node = plan.node(node_name)
    links = plan.links_of(node_name)
    interfaces = [_interface(plan, link, node_name) for link in links]
    qkd_links = [_phys_link(plan, link, node_name) for link in links]
    body: dict[str, Any] = {
        "qkdn_id": node.qkdn_id,
        "qkdn_version": QKDN_VERSION,
        "qkdn_location_id": node.location,
        "qkdn_capabilities": {
            "link_stats_support": True,
            "application_stats_support": True,
            "key_relay_mode_enable": True,
        },
        KEY_MANAGER: {
            "etsi014_url": node.km_etsi014_url,
            "etsi004_address": node.km_etsi004_address,
            "relay_address": node.km_relay_address,
        },
    }
    if interfaces:
        body["qkd_interfaces"] = {"qkd_interface": interfaces}
    if qkd_links:
        body["qkd_links"] = {"qkd_link": qkd_links}
    return {QKD_NODE: body}


def _interface(plan: LabPlan, link: LinkPlan, node_name: str) -> dict[str, Any]:
    qkdi_id = link.qkdi_at(node_name)
    return {
        "qkdi_id": qkdi_id,
        "qkdi_model": f"emulated DV-QKD module ({link.preset})",
        "qkdi_type": identity("DV-QKD"),
        "qkdi_att_point": {"device": f"fibre to {link.other_end(node_name)}", "port": qkdi_id},
        "qkdi_capabilities": {
            "role_support": identity("TRANSCEIVER"),
            "wavelength_range": WAVELENGTH_RANGE,
            "max_absorption": decimal3(MAX_ABSORPTION_DB),
        },
    }


def _phys_link(plan: LabPlan, link: LinkPlan, node_name: str) -> dict[str, Any]:
    peer = link.other_end(node_name)
    return {
        "qkdl_id": link.qkdl_id,
        "qkdl_enable": True,
        "qkdl_local": {"qkdn_id": plan.node(node_name).qkdn_id, "qkdi_id": link.qkdi_at(node_name)},
        "qkdl_remote": {"qkdn_id": plan.node(peer).qkdn_id, "qkdi_id": link.qkdi_at(peer)},
        "qkdl_type": identity("PHYS"),
        "phys_channel_att": decimal3(channel_attenuation_db(link)),
        "phys_wavelength": WAVELENGTH_NM,
        "phys_qkd_role": identity("TRANSMITTER" if node_name == link.a else "RECEIVER"),
    }
