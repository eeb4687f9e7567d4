"""Adaptive relay buffers (pure): how many relayed keys each association's source key
manager should keep ready (`qkdsdn:relay/buffer`), sized from its measured consumption.

The target is the keys needed for `horizon_s` of demand, within [`minimum`, `maximum`]. With
hysteresis: a buffer grows as soon as the target exceeds it by `grow_ratio` (a quarter;
at least one key) — a hungry pair should not wait — and shrinks only when the target fell to
`shrink_ratio` of it or less and the buffer has not changed for `hold_s`. Functions of their
inputs and `now`; no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.model import Intent, IntentId, IntentState

BUFFER_LIMIT = 0xFFFFFFFF  # qkdsdn:relay/buffer is a uint32


@dataclass(frozen=True)
class BufferSettings:
    minimum: int = 1
    maximum: int = 64
    horizon_s: float = 1.0  # the buffer holds this much of the measured demand
    key_bits: int = 256  # size of the keys relayed ahead (the lab's key_size_bits)
    grow_ratio: float = 1.25  # grow when the target is at least this times the buffer
    shrink_ratio: float = 0.5  # shrink when the target is at most this times the buffer
    hold_s: float = 10.0  # no shrink within this of the last change

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum <= BUFFER_LIMIT:
            raise ValueError(
                f"buffers: need 0 <= minimum ({self.minimum}) <= maximum ({self.maximum}) "
                f"<= {BUFFER_LIMIT}"
            )
        if self.horizon_s <= 0:
            raise ValueError(f"buffers: horizon_s must be > 0, got {self.horizon_s}")
        if self.key_bits <= 0:
            raise ValueError(f"buffers: key_bits must be > 0, got {self.key_bits}")
        if self.grow_ratio < 1:
            raise ValueError(f"buffers: grow_ratio must be at least 1, got {self.grow_ratio}")
        if not 0 < self.shrink_ratio < 1:
            raise ValueError(f"buffers: shrink_ratio must be in (0, 1), got {self.shrink_ratio}")
        if self.hold_s < 0:
            raise ValueError(f"buffers: hold_s must not be negative, got {self.hold_s}")


def target_buffer(rate_bps: float, settings: BufferSettings) -> int:
    """Keys for `horizon_s` of a demand of `rate_bps`, within the bounds."""
    wanted = math.ceil(max(rate_bps, 0.0) * settings.horizon_s / settings.key_bits)
    return max(settings.minimum, min(settings.maximum, wanted))


class Direction(enum.Enum):
    GROW = "grow"
    SHRINK = "shrink"


@dataclass(frozen=True)
class Resize:
    intent_id: IntentId
    old: int
    new: int
    rate_bps: float
    reason: str

    @property
    def direction(self) -> Direction:
        return Direction.GROW if self.new > self.old else Direction.SHRINK


def decide(
    current: int, rate_bps: float, changed_at: float | None, now: float, settings: BufferSettings
) -> int | None:
    """The new buffer of one association, or None to keep `current`."""
    target = target_buffer(rate_bps, settings)
    if target > current and target >= current * settings.grow_ratio:
        return target
    if current > settings.maximum:
        return settings.maximum  # the bounds were lowered: back within them at once
    held = changed_at is not None and now - changed_at < settings.hold_s
    if target < current and target <= current * settings.shrink_ratio and not held:
        return target
    if current < settings.minimum:
        return settings.minimum
    return None


def plan_resizes(
    intents: Iterable[Intent],
    buffers: Mapping[IntentId, int],
    rates: Mapping[IntentId, float],
    changed_at: Mapping[IntentId, float],
    now: float,
    settings: BufferSettings,
    default: int,
) -> list[Resize]:
    """The resizes of installed associations with a measured rate (others keep theirs).
    `buffers`: each association's present buffer (`default` when absent)."""
    resizes = []
    for intent in intents:
        if intent.state is not IntentState.INSTALLED or intent.path is None:
            continue
        rate = rates.get(intent.intent_id)
        if rate is None:
            continue
        current = buffers.get(intent.intent_id, default)
        new = decide(current, rate, changed_at.get(intent.intent_id), now, settings)
        if new is None or new == current:
            continue
        reason = (
            f"measured {rate:.0f} bit/s: {settings.horizon_s:g} s of demand is "
            f"{target_buffer(rate, settings)} keys of {settings.key_bits} bits "
            f"(bounds {settings.minimum}..{settings.maximum})"
        )
        resizes.append(Resize(intent.intent_id, current, new, rate, reason))
    resizes.sort(key=lambda r: (r.direction is not Direction.GROW, r.intent_id))
    return resizes
