"""The topology store: what every node says about itself, merged into one graph.

Pure state machine: each update returns the typed events it caused. A PHYS link reported by
both of its ends (`qkdl_local`/`qkdl_remote`) becomes one edge; it carries key only while every
reporting end says ACTIVE and enabled and no `sdqkdn_link_down` has come since.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from controller.model import Device, DeviceId, Link, LinkId, LinkStatus, TopologySnapshot
from controller.nodedata import LinkHalf, NodeData
from controller.topology.events import TopologyEvent, TopologyEventType

Events = list[TopologyEvent]


@dataclass(frozen=True)
class Perf:
    """Live performance from notifications; overrides the last polled values."""

    skr: int
    eskr: int
    expected_consumption: int
    qber: float | None


class TopologyStore:
    def __init__(self) -> None:
        self._devices: dict[DeviceId, Device] = {}
        self._halves: dict[LinkId, dict[DeviceId, LinkHalf]] = {}
        self._perf: dict[LinkId, Perf] = {}
        self._down: dict[LinkId, str] = {}  # link -> reason of the last sdqkdn_link_down
        self._links: dict[LinkId, Link] = {}
        self._snapshot: TopologySnapshot | None = None

    # ------------------------------------------------------------ reads

    def snapshot(self) -> TopologySnapshot:
        if self._snapshot is None:
            self._snapshot = TopologySnapshot(dict(self._devices), dict(self._links))
        return self._snapshot

    def device(self, device_id: DeviceId) -> Device | None:
        return self._devices.get(device_id)

    # ------------------------------------------------------------ updates

    def device_seen(self, device_id: DeviceId, name: str, data: NodeData) -> Events:
        """A device (re)connected or was polled: its own data replaces what it said before."""
        events: Events = []
        old = self._devices.get(device_id)
        device = Device(device_id, name, True, data.location, data.km_relay_address)
        self._devices[device_id] = device
        if old is None:
            events.append(TopologyEvent(TopologyEventType.DEVICE_ADDED, device_id, device=device))
        elif not old.available:
            events.append(
                TopologyEvent(TopologyEventType.DEVICE_AVAILABLE, device_id, device=device)
            )
        reported = {half.qkdl_id: half for half in data.phys_links}
        for link_id in list(self._halves):
            if device_id in self._halves[link_id] and link_id not in reported:
                del self._halves[link_id][device_id]
        for link_id, half in reported.items():
            previous = self._halves.setdefault(link_id, {}).get(device_id)
            self._halves[link_id][device_id] = half
            # fresh ACTIVE data from a node ends an earlier link_down
            if half.status is LinkStatus.ACTIVE and previous is not None and previous != half:
                self._down.pop(link_id, None)
            self._perf.pop(link_id, None)
        return events + self._rebuild_links()

    def device_lost(self, device_id: DeviceId, reason: str) -> Events:
        old = self._devices.get(device_id)
        if old is None or not old.available:
            return []
        device = replace(old, available=False)
        self._devices[device_id] = device
        self._snapshot = None
        return [
            TopologyEvent(
                TopologyEventType.DEVICE_UNAVAILABLE, device_id, device=device, reason=reason
            )
        ]

    def link_down(self, link_id: LinkId, reason: str) -> Events:
        self._down[link_id] = reason or "sdqkdn_link_down"
        return self._rebuild_links()

    def link_up(self, link_id: LinkId) -> Events:
        self._down.pop(link_id, None)
        return self._rebuild_links()

    def link_perf(self, link_id: LinkId, perf: Perf) -> Events:
        if link_id not in self._halves:
            return []
        self._perf[link_id] = perf
        return self._rebuild_links()

    # ------------------------------------------------------------ merge

    def _merge(self, link_id: LinkId, halves: dict[DeviceId, LinkHalf]) -> Link:
        first = next(iter(halves.values()))
        a, b = sorted((first.local, first.remote))
        statuses = [h.status if h.enabled else LinkStatus.OFF for h in halves.values()]
        status = next((s for s in statuses if s is not LinkStatus.ACTIVE), LinkStatus.ACTIVE)
        if link_id in self._down:
            status = LinkStatus.OFF
        perf = self._perf.get(link_id)
        qbers = [h.qber for h in halves.values() if h.qber is not None]
        if perf is None:
            perf = Perf(
                skr=min(h.skr for h in halves.values()),
                eskr=min(h.eskr for h in halves.values()),
                expected_consumption=max(h.expected_consumption for h in halves.values()),
                qber=max(qbers) if qbers else None,
            )
        return Link(
            qkdl_id=link_id,
            a=a,
            b=b,
            skr=perf.skr,
            eskr=perf.eskr,
            expected_consumption=perf.expected_consumption,
            qber=perf.qber,
            status=status,
        )

    def _rebuild_links(self) -> Events:
        events: Events = []
        merged = {lid: self._merge(lid, h) for lid, h in self._halves.items() if h}
        for link_id in [lid for lid, h in self._halves.items() if not h]:
            del self._halves[link_id]
        for link_id, link in merged.items():
            old = self._links.get(link_id)
            if old is None:
                events.append(TopologyEvent(TopologyEventType.LINK_ADDED, link_id, link=link))
            elif old.status is LinkStatus.ACTIVE and link.status is not LinkStatus.ACTIVE:
                reason = self._down.get(link_id, f"status {link.status.value}")
                events.append(
                    TopologyEvent(TopologyEventType.LINK_DOWN, link_id, link=link, reason=reason)
                )
            elif old.status is not LinkStatus.ACTIVE and link.status is LinkStatus.ACTIVE:
                events.append(TopologyEvent(TopologyEventType.LINK_UP, link_id, link=link))
            elif old != link:
                events.append(TopologyEvent(TopologyEventType.LINK_UPDATED, link_id, link=link))
        for link_id, old in self._links.items():
            if link_id not in merged:
                events.append(TopologyEvent(TopologyEventType.LINK_REMOVED, link_id, link=old))
        self._links = merged
        self._snapshot = None
        return events
