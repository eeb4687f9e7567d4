"""The agents' Prometheus metrics (names in docs/monitoring.md): per PHYS link, per node.

Link values (SKR, expected SKR, QBER, state, keys) are read from the nodes at scrape time,
so the hot paths record nothing; notifications are counted as they are published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.channel import LinkStatus
from agents.node import NodeStatus, QkdNode
from common.metrics import LabelBound

# Notification kinds with a series of their own, per node (the 015 tree defines fewer).
EVENT_LIMIT = 16
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
        self._events = LabelBound(EVENT_LIMIT)
        self._links = _LinkCollector()
        registry.register(self._links)

    def watch(self, node: QkdNode) -> None:
        """Reports `node`'s links and state at each scrape."""
        self._links.nodes[node.name] = node

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
