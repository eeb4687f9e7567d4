"""The runtime state of one end of a QKD link: enabled, fibre, eavesdropper, peer, rate.

Pure state machine: each change returns a `ChannelChange` (or None when nothing changed)
which the node turns into notifications; no clock, no I/O. The key rate comes from an
injected model of the eavesdropped fraction (`agents.emulator.physics.link_rate` bound to the link).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol


class LinkStatus(enum.Enum):
    """`etsi-qkd-node-types:link-status-types`."""

    ACTIVE = "ACTIVE"  # distilling key
    PASSIVE = "PASSIVE"  # disabled by configuration (qkdl_enable = false), can be re-enabled
    PENDING = "PENDING"  # enabled here, waiting for the module at the other end
    OFF = "OFF"  # not working: fibre cut, distillation aborted, or node stopped


class RateLike(Protocol):
    """What the channel reads of `agents.emulator.physics.LinkRate`."""

    @property
    def skr_bps(self) -> float: ...
    @property
    def qber(self) -> float: ...
    @property
    def aborted(self) -> bool: ...


# eavesdropped fraction -> rate of the link under it
RateModel = Callable[[float], RateLike]


@dataclass(frozen=True)
class ChannelState:
    rate: RateLike  # what the physics gives for the current eavesdropper (fibre intact)
    enabled: bool = True  # qkdl_enable of this end
    fibre_up: bool = True
    eve_fraction: float = 0.0
    peer_up: bool = True  # the module at the other end is enabled and running
    node_up: bool = True

    @property
    def status(self) -> LinkStatus:
        if not self.node_up or not self.fibre_up or self.rate.aborted or self.rate.skr_bps <= 0:
            return LinkStatus.OFF
        if not self.enabled:
            return LinkStatus.PASSIVE
        if not self.peer_up:
            return LinkStatus.PENDING
        return LinkStatus.ACTIVE

    @property
    def skr_bps(self) -> float:
        """Secret key rate being distilled now (0 unless ACTIVE)."""
        return self.rate.skr_bps if self.status is LinkStatus.ACTIVE else 0.0

    @property
    def qber(self) -> float:
        return self.rate.qber

    @property
    def reason(self) -> str:
        """Why the link is not ACTIVE (the first cause found), or "" when it is."""
        if not self.node_up:
            return "node stopped"
        if not self.fibre_up:
            return "fibre cut (loss of signal)"
        if self.rate.aborted or self.rate.skr_bps <= 0:
            return (
                f"key distillation aborted: QBER {self.rate.qber:.3f}"
                f" with {self.eve_fraction:.0%} of the signals intercepted"
            )
        if not self.enabled:
            return "disabled by configuration (qkdl_enable = false)"
        if not self.peer_up:
            return "the module at the other end is not running"
        return ""


@dataclass(frozen=True)
class ChannelChange:
    before: ChannelState
    after: ChannelState

    @property
    def went_down(self) -> bool:
        return (
            self.before.status is LinkStatus.ACTIVE and self.after.status is not LinkStatus.ACTIVE
        )

    @property
    def came_up(self) -> bool:
        return (
            self.before.status is not LinkStatus.ACTIVE and self.after.status is LinkStatus.ACTIVE
        )

    @property
    def status_changed(self) -> bool:
        return self.before.status is not self.after.status

    def skr_changed_by_more_than(self, fraction: float) -> bool:
        old, new = self.before.skr_bps, self.after.skr_bps
        if old == new:
            return False
        if old == 0:
            return True
        return abs(new - old) / old > fraction


class Channel:
    """One link end's channel; every setter returns the change it made, or None."""

    def __init__(self, rate_model: RateModel) -> None:
        self._rate_model = rate_model
        self._state = ChannelState(rate=rate_model(0.0))

    @property
    def state(self) -> ChannelState:
        return self._state

    def set_enabled(self, enabled: bool) -> ChannelChange | None:
        return self._move(replace(self._state, enabled=enabled))

    def set_fibre(self, up: bool) -> ChannelChange | None:
        return self._move(replace(self._state, fibre_up=up))

    def set_peer_up(self, up: bool) -> ChannelChange | None:
        return self._move(replace(self._state, peer_up=up))

    def set_node_up(self, up: bool) -> ChannelChange | None:
        return self._move(replace(self._state, node_up=up))

    def set_eavesdropper(self, fraction: float) -> ChannelChange | None:
        """Intercept-resend on `fraction` (0..1) of the signals; 0 removes the eavesdropper."""
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"eavesdropped fraction must be within 0..1, got {fraction}")
        if fraction == self._state.eve_fraction:
            return None
        rate = self._rate_model(fraction)
        return self._move(replace(self._state, eve_fraction=fraction, rate=rate))

    def _move(self, new: ChannelState) -> ChannelChange | None:
        if new == self._state:
            return None
        change = ChannelChange(self._state, new)
        self._state = new
        return change
