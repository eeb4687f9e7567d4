"""The recent alarms and decisions the live view shows: a bounded, ordered log of events."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from controller.buffer_service import BufferDecision
from controller.intents.service import IntentEvent, IntentEventType
from controller.model import IntentId, TopologySnapshot
from controller.steering_service import SteeringDecision
from controller.topology.events import TopologyEvent, TopologyEventType

FAILURES_KEPT = 2000  # associations whose failures are counted (the oldest forgotten first)
ALARMS = {
    TopologyEventType.LINK_DOWN: "link down",
    TopologyEventType.LINK_UP: "link up",
    TopologyEventType.DEVICE_UNAVAILABLE: "node lost",
    TopologyEventType.DEVICE_AVAILABLE: "node back",
}


@dataclass(frozen=True)
class FeedEntry:
    """One line of the live view's log: `kind` is alarm or decision."""

    seq: int
    at: float  # UNIX time
    kind: str
    text: str


class LiveFeed:
    """The last `size` alarms (topology) and decisions (intents, steering), oldest first."""

    def __init__(
        self,
        topology: Callable[[], TopologySnapshot],
        size: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise ValueError(f"feed size must be at least 1, got {size}")
        self._topology = topology
        self._clock = clock
        self._entries: deque[FeedEntry] = deque(maxlen=size)
        self._seq = 0
        # Times each association was refused or failed (install, re-route), for `top`.
        self.failures: dict[IntentId, int] = {}

    @property
    def seq(self) -> int:
        """Grows with every entry: a reader sees whether something new came."""
        return self._seq

    def entries(self) -> list[FeedEntry]:
        return list(self._entries)

    def add(self, kind: str, text: str) -> FeedEntry:
        self._seq += 1
        entry = FeedEntry(self._seq, self._clock(), kind, text)
        self._entries.append(entry)
        return entry

    def on_topology(self, event: TopologyEvent) -> None:
        label = ALARMS.get(event.type)
        if label is None:
            return
        snapshot = self._topology()
        if event.link is not None:
            a, b = sorted((snapshot.name_of(event.link.a), snapshot.name_of(event.link.b)))
            subject = f"{a}–{b}"
        else:
            subject = snapshot.name_of(event.subject)
        reason = f": {event.reason}" if event.reason else ""
        self.add("alarm", f"{label} {subject}{reason}")

    def on_intent(self, event: IntentEvent) -> None:
        intent = event.intent
        snapshot = self._topology()
        request = intent.request
        pair = request.label(snapshot.name_of)
        path = " > ".join(snapshot.name_of(n) for n in intent.path.nodes) if intent.path else "-"
        text = f"intent {event.type.value.lower()} {pair} path {path}"
        if event.type is not IntentEventType.INSTALLED and intent.reason:
            text += f" ({intent.reason})"
        self.add("decision", text)
        if event.type in (IntentEventType.FAILED, IntentEventType.REJECTED):
            if len(self.failures) >= FAILURES_KEPT and intent.intent_id not in self.failures:
                self.failures.pop(next(iter(self.failures)))  # the oldest association counted
            self.failures[intent.intent_id] = self.failures.get(intent.intent_id, 0) + 1

    def on_steering(self, decision: SteeringDecision) -> None:
        self.add("steering", decision.text)

    def on_buffer(self, decision: BufferDecision) -> None:
        self.add("buffer", decision.text)
