"""Typed topology events, posted by the store after every change."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from controller.model import Device, Link


class TopologyEventType(enum.Enum):
    DEVICE_ADDED = "DEVICE_ADDED"
    DEVICE_AVAILABLE = "DEVICE_AVAILABLE"
    DEVICE_UNAVAILABLE = "DEVICE_UNAVAILABLE"
    LINK_ADDED = "LINK_ADDED"
    LINK_REMOVED = "LINK_REMOVED"
    LINK_UP = "LINK_UP"
    LINK_DOWN = "LINK_DOWN"
    LINK_UPDATED = "LINK_UPDATED"  # performance (skr, eskr, consumption, QBER) changed


@dataclass(frozen=True)
class TopologyEvent:
    type: TopologyEventType
    subject: str  # the device id or the link id
    device: Device | None = None
    link: Link | None = None
    reason: str = ""
