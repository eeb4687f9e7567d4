"""The node's ETSI 015 notifications: link changes, overloads and periodic performance reports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from agents import notifications
from agents.emulator.channel import ChannelChange, LinkStatus
from agents.emulator.hardware import NodeHardware, NodeStatus
from agents.emulator.qkd_module import QkdModule
from agents.node.settings import NodeSettings
from agents.notifications import Performance, Severity
from common.tracing import Tracer

log = logging.getLogger(__name__)

Publish = Callable[[str], None]
UINT32_MAX = 2**32 - 1


def u32(value: float) -> int:
    return max(0, min(UINT32_MAX, int(value)))


class LinkEvents:
    """Turns channel changes and the configured consumption into notifications, and sends them."""

    def __init__(
        self,
        hardware: NodeHardware,
        expected_consumption: Callable[[str], int],
        settings: NodeSettings,
        tracer: Tracer,
        publish: Publish | None = None,
    ) -> None:
        self._hardware = hardware
        self._expected = expected_consumption
        self._settings = settings
        self._tracer = tracer
        self._publish = publish
        self._overloaded: set[str] = set()
        self._reported_skr: dict[str, float] = {}
        self._reported_perf: dict[str, tuple[Performance, int]] = {}  # perf, report round
        # Told (qkdl_id, distilling) when a PHYS link stops or starts distilling key (metrics).
        self.link_watchers: list[Callable[[str, bool], None]] = []
        self._perf_round = 0

    def set_publisher(self, publish: Publish | None) -> None:
        self._publish = publish

    def performance(self, qkdl_id: str) -> Performance:
        stats = self._hardware.modules[qkdl_id].stats()
        return Performance(
            expected_consumption=u32(self._expected(qkdl_id)),
            skr=u32(stats.skr_bps),
            eskr=u32(stats.eskr_bps),
            qber=stats.qber,
        )

    def of_change(self, module: QkdModule, change: ChannelChange | None) -> list[str]:
        """The notifications one channel change raises (call under the hardware's lock)."""
        if change is None:
            return []
        qkdl_id = module.end.qkdl_id
        events: list[str] = []
        after = change.after
        self._tracer.emit(
            "link.changed",
            node=self._hardware.name,
            qkdl_id=qkdl_id,
            status=after.status.value,
            skr_bps=after.skr_bps,
            qber=after.qber,
            reason=after.reason,
        )
        if change.went_down or change.came_up:
            for watch in self.link_watchers:
                watch(qkdl_id, change.came_up)
        if change.went_down:
            events.append(notifications.link_down(qkdl_id, after.reason))
            events.append(
                notifications.link_alarm("alarm", qkdl_id, after.status.value, after.reason)
            )
        elif change.came_up:
            events.append(
                notifications.link_alarm(
                    "event", qkdl_id, "ACTIVE", "distilling key again", Severity.MINOR
                )
            )
        elif change.status_changed:
            events.append(
                notifications.link_alarm(
                    "event", qkdl_id, after.status.value, after.reason, Severity.MINOR
                )
            )
        if after.status is LinkStatus.ACTIVE and after.qber > change.before.qber * 1.1:
            events.append(
                notifications.link_alarm(
                    "alarm",
                    qkdl_id,
                    "ACTIVE",
                    f"QBER rose from {change.before.qber:.3f} to {after.qber:.3f}",
                    Severity.MINOR,
                )
            )
        reported = self._reported_skr.get(qkdl_id, change.before.skr_bps)
        moved = abs(after.skr_bps - reported) > self._settings.significant_change * max(reported, 1)
        if moved:
            events.append(self._perf_update(qkdl_id))
        events += self.overloads([qkdl_id])
        return events

    def _perf_update(self, qkdl_id: str, perf: Performance | None = None) -> str:
        perf = self.performance(qkdl_id) if perf is None else perf
        self._reported_skr[qkdl_id] = self._hardware.modules[qkdl_id].state.skr_bps
        self._reported_perf[qkdl_id] = (perf, self._perf_round)
        return notifications.link_perf_update(qkdl_id, perf)

    def overloads(self, qkdl_ids: Iterable[str]) -> list[str]:
        """`sdqkdn_link_overloaded` for the links that just became overloaded."""
        events = []
        for qkdl_id in qkdl_ids:
            perf = self.performance(qkdl_id)
            # A link that is down is reported by sdqkdn_link_down, not as overloaded.
            active = self._hardware.modules[qkdl_id].state.status is LinkStatus.ACTIVE
            over = active and perf.expected_consumption > perf.skr
            if over and qkdl_id not in self._overloaded:
                self._overloaded.add(qkdl_id)
                events.append(notifications.link_overloaded(qkdl_id, perf))
            elif not over:
                self._overloaded.discard(qkdl_id)
        return events

    def perf_updates(self) -> list[str]:
        """The periodic report: one `sdqkdn_link_perf_update` per PHYS link whose performance
        moved significantly since its last report, or that was not reported for
        `perf_heartbeat_periods` periods (so an idle network stays quiet)."""
        with self._hardware.lock:
            self._perf_round += 1
            events = []
            for qkdl_id in self._hardware.modules:
                perf = self.performance(qkdl_id)
                last = self._reported_perf.get(qkdl_id)
                if (
                    last is None
                    or self._perf_round - last[1] >= self._settings.perf_heartbeat_periods
                    or _perf_moved(last[0], perf, self._settings.significant_change)
                ):
                    events.append(self._perf_update(qkdl_id, perf))
            return events

    async def run_perf_updates(self) -> None:
        """Publishes the periodic performance reports until the node stops or is cancelled."""
        while self._hardware.status is NodeStatus.OPERATING:
            await asyncio.sleep(self._settings.perf_interval_s)
            if self._hardware.status is NodeStatus.OPERATING:
                self.emit(self.perf_updates())

    def emit(self, events: list[str], raise_errors: bool = False) -> None:
        publish = self._publish
        if publish is None:
            return
        for event in events:
            try:
                publish(event)
            except ValueError:
                if raise_errors:
                    raise
                log.exception("%s: notification not sent", self._hardware.name)


def _perf_moved(before: Performance, after: Performance, threshold: float) -> bool:
    """A figure of a link's performance changed by more than `threshold` (relative)."""
    pairs: list[tuple[float, float]] = [
        (before.skr, after.skr),
        (before.eskr, after.eskr),
        (before.expected_consumption, after.expected_consumption),
    ]
    if before.qber is not None and after.qber is not None:
        pairs.append((before.qber, after.qber))
    elif before.qber != after.qber:
        return True
    return any(abs(b - a) > threshold * max(abs(b), 1e-9) for b, a in pairs)
