"""The agents' Prometheus metrics (names in docs/monitoring.md): per PHYS link, per node.

Link values (SKR, expected SKR, QBER, state, keys) are read from the nodes at scrape time,
so the hot paths record nothing; notifications are counted as they are published.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.emulator.channel import LinkStatus
from agents.node import NodeStatus, QkdNode
from common.metrics import LabelBound

# Notification kinds with a series of their own, per node (the 015 tree defines fewer).
EVENT_LIMIT = 16
# Link outage buckets (s): a re-synchronising module takes seconds, a cut fibre minutes.
OUTAGE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
STATES = tuple(status.value for status in LinkStatus)

Publish = Callable[[str], None]


class AgentMetrics:
    """The metric families of one agents process (on `registry`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.notifications = Counter(
            "qkdsdn_agent_notifications",
            "ETSI 015 notifications published by a node's NETCONF server, by kind",
            ("node", "event"),
            registry=registry,
        )
        self.downs = Counter(
            "qkdsdn_link_down_events",
            "Times a PHYS link stopped distilling key (ACTIVE to another status)",
            ("node", "peer"),
            registry=registry,
        )
        self.restoration = Histogram(
            "qkdsdn_link_restoration_seconds",
            "How long a PHYS link was down before it distilled key again (Y.3807 restoration)",
            ("node", "peer"),
            buckets=OUTAGE_BUCKETS,
            registry=registry,
        )
        self._events = LabelBound(EVENT_LIMIT)
        self._links = _LinkCollector()
        registry.register(self._links)

    def watch(self, node: QkdNode, clock: Callable[[], float] = time.monotonic) -> None:
        """Reports `node`'s links and state at each scrape, and times its link outages."""
        self._links.nodes[node.name] = node
        peers = {report.qkdl_id: report.peer_node for report in node.reports()}
        down_since: dict[str, float] = {}

        def changed(qkdl_id: str, distilling: bool) -> None:
            peer = peers.get(qkdl_id, "unknown")
            if not distilling:
                down_since.setdefault(qkdl_id, clock())
                self.downs.labels(node.name, peer).inc()
            elif qkdl_id in down_since:
                self.restoration.labels(node.name, peer).observe(clock() - down_since.pop(qkdl_id))

        node.link_watchers.append(changed)

    def counted(self, node: str, publish: Publish) -> Publish:
        """`publish`, counting each notification it sends by its kind."""

        def send(event: str) -> None:
            publish(event)
            (kind,) = self._events(_kind(event))
            self.notifications.labels(node, kind).inc()

        return send


def _kind(event: str) -> str:
    """The element name of a notification's XML text ("<sdqkdn_link_down xmlns=...>")."""
    start = event.find("<") + 1
    end = start
    while end < len(event) and event[end] not in " />\t\n":
        end += 1
    return event[start:end].rpartition(":")[2] or "unknown"


class _LinkCollector(Collector):
    def __init__(self) -> None:
        self.nodes: dict[str, QkdNode] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ("node", "peer", "qkdl_id")

        def gauge(name: str, text: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=(*labels, *extra))

        skr = gauge("qkdsdn_link_skr_bps", "Secret key rate of the PHYS link (015 skr), bit/s")
        eskr = gauge("qkdsdn_link_expected_skr_bps", "Expected secret key rate (015 eskr), bit/s")
        qber = gauge("qkdsdn_link_qber", "Quantum bit error rate of the PHYS link (015 QBER)")
        up = gauge("qkdsdn_link_up", "1 while the PHYS link distils key (015 ACTIVE), else 0")
        state = gauge("qkdsdn_link_state", "1 for the PHYS link's 015 status", ("state",))
        demand = gauge(
            "qkdsdn_link_expected_consumption_bps",
            "Key rate the installed associations plan to draw from the link (015), bit/s",
        )
        available = gauge(
            "qkdsdn_link_module_keys", "Keys the module holds, not yet fetched by the KM"
        )
        consumed = gauge("qkdsdn_link_module_keys_consumed", "Keys the KM fetched from the module")
        node_up = GaugeMetricFamily(
            "qkdsdn_node_up", "1 while the node is OPERATING", labels=("node",)
        )
        for name, node in list(self.nodes.items()):
            operating = node.status is NodeStatus.OPERATING
            node_up.add_metric((name,), 1.0 if operating else 0.0)
            for report, perf in node.telemetry():
                values = (name, report.peer_node, report.qkdl_id)
                skr.add_metric(values, report.skr_bps)
                eskr.add_metric(values, perf.eskr)
                qber.add_metric(values, report.qber)
                up.add_metric(values, 1.0 if report.status is LinkStatus.ACTIVE else 0.0)
                for value in STATES:
                    state.add_metric((*values, value), 1.0 if report.status.value == value else 0.0)
                demand.add_metric(values, perf.expected_consumption)
                available.add_metric(values, report.available_keys)
                consumed.add_metric(values, report.consumed_keys)
        yield from (skr, eskr, qber, up, state, demand, available, consumed, node_up)
