"""The configuration a node boots with, from its agent configuration (RFC 7951 JSON of `qkd_node`).

One `qkd_interface` per link end (the emulated module), one PHYS `qkd_link` per link, and the
`qkdsdn:key_manager` augment telling the controller where the node's key manager listens.
Pure: a function of the agent configuration.
"""

from __future__ import annotations

from typing import Any

from agents.config import AgentConfig, AgentLink
from agents.emulator.physics import PRESETS, channel_loss_db

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


def channel_attenuation_db(link: AgentLink) -> float:
    alpha = PRESETS[link.preset].alpha_db_per_km if link.preset in PRESETS else 0.2
    return channel_loss_db(link.length_km, link.extra_loss_db, alpha)


def initial_running(config: AgentConfig) -> dict[str, Any]:
    """The node's running `qkd_node` before any controller edit."""
    interfaces = [_interface(link) for link in config.links]
    qkd_links = [_phys_link(config, link) for link in config.links]
    manager = config.key_manager
    body: dict[str, Any] = {
        "qkdn_id": config.qkdn_id,
        "qkdn_version": QKDN_VERSION,
        "qkdn_location_id": config.location,
        "qkdn_capabilities": {
            "link_stats_support": True,
            "application_stats_support": True,
            "key_relay_mode_enable": True,
        },
        KEY_MANAGER: {
            key: value
            for key, value in (
                ("etsi014_url", manager.etsi014_url),
                ("etsi004_address", manager.etsi004),
                ("relay_address", manager.relay),
            )
            if value is not None
        },
    }
    if interfaces:
        body["qkd_interfaces"] = {"qkd_interface": interfaces}
    if qkd_links:
        body["qkd_links"] = {"qkd_link": qkd_links}
    return {QKD_NODE: body}


def _interface(link: AgentLink) -> dict[str, Any]:
    qkdi_id = link.local_qkdi_id
    return {
        "qkdi_id": qkdi_id,
        "qkdi_model": f"emulated DV-QKD module ({link.preset})",
        "qkdi_type": identity("DV-QKD"),
        "qkdi_att_point": {"device": f"fibre to {link.peer.node}", "port": qkdi_id},
        "qkdi_capabilities": {
            "role_support": identity("TRANSCEIVER"),
            "wavelength_range": WAVELENGTH_RANGE,
            "max_absorption": decimal3(MAX_ABSORPTION_DB),
        },
    }


def _phys_link(config: AgentConfig, link: AgentLink) -> dict[str, Any]:
    return {
        "qkdl_id": link.qkdl_id,
        "qkdl_enable": True,
        "qkdl_local": {"qkdn_id": config.qkdn_id, "qkdi_id": link.local_qkdi_id},
        "qkdl_remote": {"qkdn_id": link.peer.qkdn_id, "qkdi_id": link.peer.qkdi_id},
        "qkdl_type": identity("PHYS"),
        "phys_channel_att": decimal3(channel_attenuation_db(link)),
        "phys_wavelength": WAVELENGTH_NM,
        "phys_qkd_role": identity(link.role.upper()),
    }
