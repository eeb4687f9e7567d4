"""Measured key consumption per key association, from the 015 `app_statistics` the source
node reports (the bits its key manager handed to the SAEs): the total and a smoothed rate.

`next_usage` is pure (a reading and `now` in, the new value out); `ConsumptionBook` keeps
the latest value per association for the steering, the buffer sizing and the live view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.model import IntentId

SMOOTHING = 0.5  # weight of the newest interval's rate in the smoothed rate


@dataclass(frozen=True)
class Usage:
    """What an association consumed: `bits` in all at `at` (controller clock, s), and its
    rate (bit/s, smoothed over the readings; None until two readings are apart in time)."""

    bits: int
    at: float
    rate_bps: float | None = None


def next_usage(
    previous: Usage | None, bits: int, now: float, smoothing: float = SMOOTHING
) -> Usage:
    """The usage after a reading of `bits` at `now`. A total that went back (the application
    was installed anew) starts over; a reading no later than the previous one keeps it."""
    if bits < 0:
        raise ValueError(f"consumed bits cannot be negative, got {bits}")
    if previous is None or bits < previous.bits:
        return Usage(bits, now)
    elapsed = now - previous.at
    if elapsed <= 0:
        return previous
    rate = (bits - previous.bits) / elapsed
    if previous.rate_bps is not None:
        rate = smoothing * rate + (1 - smoothing) * previous.rate_bps
    return Usage(bits, now, rate)


class ConsumptionBook:
    """The latest usage of every association the controller has readings of."""

    def __init__(self) -> None:
        self._usage: dict[IntentId, Usage] = {}

    def observe(self, intent_id: IntentId, bits: int, now: float) -> Usage:
        usage = next_usage(self._usage.get(intent_id), bits, now)
        self._usage[intent_id] = usage
        return usage

    def usage(self) -> dict[IntentId, Usage]:
        return dict(self._usage)

    def rates(self) -> dict[IntentId, float]:
        """bit/s of every association with a measured rate."""
        return {i: u.rate_bps for i, u in self._usage.items() if u.rate_bps is not None}

    def keep_only(self, intent_ids: Iterable[IntentId]) -> None:
        """Forgets associations no longer known (withdrawn and dropped from the history)."""
        keep = set(intent_ids)
        for intent_id in [i for i in self._usage if i not in keep]:
            del self._usage[intent_id]


def source_readings(
    node: str, apps: Iterable[tuple[str, int | None]], sources: Mapping[IntentId, str]
) -> list[tuple[IntentId, int]]:
    """(intent, consumed bits) of the apps `node` reports that are associations it is the
    source of (`sources`: intent -> its source node); other nodes' readings are ignored."""
    return [
        (app_id, bits) for app_id, bits in apps if bits is not None and sources.get(app_id) == node
    ]
