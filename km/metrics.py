"""The key managers' Prometheus metrics (names in docs/monitoring.md), `node`-labelled per KM.

`KmMetrics(registry)` defines every family once per process; `for_node(name)` gives the
recorder a key manager's edges call (ETSI 014 service, relay, purge). `KmMetrics.off()` records
nothing (no metrics address configured). Per-link pool levels are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.metrics import OTHER, LabelBound
from km.link_pools import LinkKeyPool

# Application pairs with a series of their own, per key manager; more share "other".
PAIR_LIMIT = 64
# Key response delay buckets (s): a buffered key answers in ~1 ms, a relayed one in tens.
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = ("enc_keys", "dec_keys")
# Why a request was refused (bounded: these values only).
REASONS = (
    "bad_request",  # 400: malformed, unknown SAE, bad key_ID
    "unauthorized",  # 401: identity not served here, not a party of the key
    "access_policy",  # the access policy forbids the pair or size
    "rate",  # the access policy's rate limit
    "admission",  # the controller refused (or did not admit in time) the key association
    "no_key",  # 503: no key could be supplied (relay failed, link down)
)

PoolSource = Callable[[], Iterable[LinkKeyPool]]


class KmMetrics:
    """The metric families of one key-manager process (on `registry`; None: off)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self.enabled = registry is not None
        if registry is None:
            return
        pair = ("node", "method", "master_sae", "slave_sae")
        self.delay = Histogram(
            "qkdsdn_km_key_response_delay_seconds",
            "ETSI 014 key request to answer, per delivered request (Y.3807 key response delay)",
            pair,
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.keys = Counter(
            "qkdsdn_km_keys_delivered", "Keys handed to SAEs (ETSI 014)", pair, registry=registry
        )
        self.bits = Counter(
            "qkdsdn_km_key_bits_delivered",
            "Key bits handed to SAEs (ETSI 014)",
            pair,
            registry=registry,
        )
        self.refused = Counter(
            "qkdsdn_km_key_requests_refused",
            "ETSI 014 requests refused, by reason (Y.3807 key delivery error)",
            (*pair, "reason"),
            registry=registry,
        )
        self.expired = Counter(
            "qkdsdn_km_keys_expired",
            "Relayed keys dropped unclaimed at expiry (Y.3807 key loss)",
            ("node",),
            registry=registry,
        )
        route = ("node", "master_sae", "slave_sae")
        self.relayed = Counter(
            "qkdsdn_km_keys_relayed",
            "End-to-end keys this KM originated and relayed to the end of their path",
            route,
            registry=registry,
        )
        self.relay_failed = Counter(
            "qkdsdn_km_relay_failures",
            "Relays of end-to-end keys this KM originated that failed",
            route,
            registry=registry,
        )
        self.relay_seconds = Histogram(
            "qkdsdn_km_relay_seconds",
            "Time to relay one batch of end-to-end keys to the end of its path",
            route,
            buckets=RELAY_BUCKETS,
            registry=registry,
        )
        self.hop_seconds = Histogram(
            "qkdsdn_km_relay_hop_seconds",
            "Relay time of a batch divided by its hops (mean hop latency)",
            route,
            buckets=RELAY_BUCKETS,
            registry=registry,
        )
        self.hops = Histogram(
            "qkdsdn_km_relay_hops",
            "Hops of each relayed batch (path length in links)",
            route,
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20),
            registry=registry,
        )
        self._pools = _PoolCollector()
        registry.register(self._pools)

    @staticmethod
    def off() -> KmMetrics:
        return KmMetrics(None)

    def for_node(self, node: str) -> NodeMetrics:
        return NodeMetrics(self, node, LabelBound(PAIR_LIMIT))

    def watch_pools(self, node: str, pools: PoolSource) -> None:
        """Reports `pools()` (read at each scrape) as node `node`'s link pools."""
        if self.enabled:
            self._pools.sources[node] = pools

    def forget(self, node: str) -> None:
        if self.enabled:
            self._pools.sources.pop(node, None)


@dataclass
class NodeMetrics:
    """What one key manager records; every call is a no-op when metrics are off."""

    family: KmMetrics
    node: str
    pairs: LabelBound
    # The series of each (method, master, slave) seen, so that a request looks them up once
    # (bounded like the pairs: at most PAIR_LIMIT + 1 pairs per method).
    _delivery: dict[tuple[str, str, str], _Delivery] = field(default_factory=dict)

    def delivered(
        self, method: str, master: str, slave: str, keys: int, bits: int, seconds: float
    ) -> None:
        if not self.family.enabled:
            return
        series = self._delivery.get((method, master, slave))
        if series is None:
            series = self._delivery_series(method, master, slave)
        series.delay.observe(seconds)
        series.keys.inc(keys)
        series.bits.inc(bits)

    def _delivery_series(self, method: str, master: str, slave: str) -> _Delivery:
        labels = (self.node, method, *self.pairs(master, slave))
        family = self.family
        series = _Delivery(
            family.delay.labels(*labels), family.keys.labels(*labels), family.bits.labels(*labels)
        )
        if labels[2] != OTHER:  # pairs past the bound are not remembered one by one
            self._delivery[(method, master, slave)] = series
        return series

    def refused(self, method: str, master: str, slave: str, reason: str) -> None:
        if not self.family.enabled:
            return
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r} (known: {', '.join(REASONS)})")
        self.family.refused.labels(self.node, method, *self.pairs(master, slave), reason).inc()

    def relayed(self, master: str, slave: str, keys: int, hops: int, seconds: float) -> None:
        if not self.family.enabled:
            return
        labels = (self.node, *self.pairs(master, slave))
        family = self.family
        family.relayed.labels(*labels).inc(keys)
        family.relay_seconds.labels(*labels).observe(seconds)
        family.hop_seconds.labels(*labels).observe(seconds / max(hops, 1))
        family.hops.labels(*labels).observe(hops)

    def relay_failed(self, master: str, slave: str) -> None:
        if self.family.enabled:
            self.family.relay_failed.labels(self.node, *self.pairs(master, slave)).inc()

    def expired(self, keys: int) -> None:
        if self.family.enabled and keys:
            self.family.expired.labels(self.node).inc(keys)


@dataclass(frozen=True)
class _Delivery:
    delay: Histogram
    keys: Counter
    bits: Counter


class _PoolCollector(Collector):
    """Link-key pool level, size and link state of every watched KM, read at scrape time."""

    def __init__(self) -> None:
        self.sources: dict[str, PoolSource] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ("node", "peer", "qkdl_id")
        level = GaugeMetricFamily(
            "qkdsdn_km_link_pool_bits",
            "Link key bits held in the KM's pool of a PHYS link",
            labels=labels,
        )
        size = GaugeMetricFamily(
            "qkdsdn_km_link_pool_max_bits", "Size of the KM's pool of a PHYS link", labels=labels
        )
        up = GaugeMetricFamily(
            "qkdsdn_km_link_up", "1 while the KM receives link keys of the PHYS link", labels=labels
        )
        for node, source in list(self.sources.items()):
            for pool in source():
                values = (node, pool.link.peer_node, pool.link.qkdl_id)
                level.add_metric(values, pool.level_bits)
                size.add_metric(values, pool.max_bits)
                up.add_metric(values, 1.0 if pool.link_up else 0.0)
        yield level
        yield size
        yield up
