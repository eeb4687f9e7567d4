"""The controller's Prometheus metrics (names in docs/monitoring.md): decisions, installs, devices.

Decisions and installs are counted from the intent service's events; devices and intents by
state are read at scrape time on the controller's event loop (its state is not thread-safe).
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from controller.api import Controller
from controller.buffer_service import BufferDecision
from controller.intents.service import IntentEvent, IntentEventType
from controller.model import IntentState

INSTALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCRAPE_WAIT_S = 2.0  # how long a scrape waits for the event loop's snapshot

# Why a decision came out as it did: a fixed set, so that free-text reasons stay bounded.
REASON_CLASSES = (
    "ok",
    "capacity",
    "no_path",
    "endpoint",
    "install_failed",
    "preempted",
    "link_down",
    "other",
)


def reason_class(reason: str) -> str:
    """The class (REASON_CLASSES) of an intent's free-text reason."""
    text = reason.lower()
    if not text:
        return "ok"
    rules = (
        ("pre-empted", "preempted"),
        ("install failed", "install_failed"),
        ("re-route failed", "install_failed"),
        ("bit/s free", "capacity"),
        ("no usable path", "no_path"),
        ("no path", "no_path"),
        ("link", "link_down"),
        ("node", "endpoint"),
        ("sae", "endpoint"),
    )
    for needle, name in rules:
        if needle in text:
            return name
    return "other"


@dataclass(frozen=True)
class _Snapshot:
    devices: tuple[tuple[str, bool], ...]
    intents: dict[str, int]


class ControllerMetrics:
    """The controller's metric families on `registry`, fed by `controller`."""

    def __init__(self, registry: CollectorRegistry, controller: Controller) -> None:
        self.registry = registry
        self.decisions = Counter(
            "qkdsdn_controller_decisions",
            "Intent outcomes: INSTALLED, REJECTED, FAILED, REROUTED, WITHDRAWN, by reason class",
            ("outcome", "reason"),
            registry=registry,
        )
        self.reroutes = Counter(
            "qkdsdn_controller_reroutes",
            "Key associations moved to another path (Y.3807 service restoration)",
            registry=registry,
        )
        self.install = Histogram(
            "qkdsdn_controller_install_seconds",
            "One NETCONF install transaction (lock, edit, validate, commit on every node)",
            ("outcome",),
            buckets=INSTALL_BUCKETS,
            registry=registry,
        )
        self.buffer_resizes = Counter(
            "qkdsdn_controller_buffer_resizes",
            "Adaptive relay buffer changes, by direction (grow, shrink) and outcome",
            ("direction", "outcome"),
            registry=registry,
        )
        registry.register(_StateCollector(controller))
        controller.intent_events.add(self.on_intent)
        controller.intent_service.install_observers.append(self.on_install)

    def on_intent(self, event: IntentEvent) -> None:
        self.decisions.labels(event.type.value, reason_class(event.intent.reason)).inc()
        if event.type is IntentEventType.REROUTED:
            self.reroutes.inc()

    def on_buffer(self, decision: BufferDecision) -> None:
        outcome = "committed" if decision.done else "failed"
        self.buffer_resizes.labels(decision.direction.value, outcome).inc()

    def on_install(self, seconds: float, committed: bool) -> None:
        self.install.labels("committed" if committed else "failed").observe(seconds)


class _StateCollector(Collector):
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.loop = asyncio.get_running_loop()

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing: registering must not run `collect`, which waits for the event loop that
        is registering (the names are not checked for clashes, being the only ones)."""
        return []

    async def _snapshot(self) -> _Snapshot:
        devices = tuple((name, up) for name, _, up in self.controller.device_status())
        tally = Tally(intent.state.value for intent in self.controller.intents())
        return _Snapshot(devices, {state.value: tally[state.value] for state in IntentState})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        future = asyncio.run_coroutine_threadsafe(self._snapshot(), self.loop)
        try:
            snapshot = future.result(SCRAPE_WAIT_S)
        except (TimeoutError, RuntimeError):  # the loop is busy or stopping: report nothing
            future.cancel()
            return
        connected = GaugeMetricFamily(
            "qkdsdn_controller_devices_connected", "Nodes with a live NETCONF session"
        )
        connected.add_metric((), sum(1 for _, up in snapshot.devices if up))
        device_up = GaugeMetricFamily(
            "qkdsdn_controller_device_up",
            "1 while the node's NETCONF session is up",
            labels=("node",),
        )
        for name, up in snapshot.devices:
            device_up.add_metric((name,), 1.0 if up else 0.0)
        intents = GaugeMetricFamily(
            "qkdsdn_controller_intents", "Key associations (intents) by state", labels=("state",)
        )
        for state, count in snapshot.intents.items():
            intents.add_metric((state,), count)
        yield from (connected, device_up, intents)
