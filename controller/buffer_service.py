"""Adaptive relay buffers: every `interval_s`, sizes each association's relay/buffer from its
measured consumption (pure decision in controller/buffers.py) and writes the changes, each a
NETCONF transaction on the association's source node, logged with its reason."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.buffers import BufferSettings, Direction, Resize, plan_resizes
from controller.events import ListenerRegistry
from controller.intents.service import IntentService
from controller.model import IntentId, TopologySnapshot
from controller.periodic import every

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BufferDecision:
    """One resize the service made or tried (for logs, metrics and the live view)."""

    at: float  # UNIX time
    intent_id: IntentId
    pair: str
    old: int
    new: int
    reason: str
    done: bool  # the source node committed it

    @property
    def direction(self) -> Direction:
        return Direction.GROW if self.new > self.old else Direction.SHRINK

    @property
    def text(self) -> str:
        outcome = "" if self.done else " (not committed: kept)"
        return f"buffer {self.pair}: {self.old} → {self.new} keys, {self.reason}{outcome}"


class BufferService:
    """`step()` is one look at the measured rates; `run()` loops it until cancelled."""

    def __init__(
        self,
        topology: Callable[[], TopologySnapshot],
        intents: IntentService,
        rates: Callable[[], Mapping[IntentId, float]],
        settings: BufferSettings,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"buffer sizing interval must be > 0 s, got {interval_s}")
        self._topology = topology
        self._intents = intents
        self._rates = rates
        self.settings = settings
        self.interval_s = interval_s
        self._clock = clock
        self._wall = wall
        self._changed_at: dict[IntentId, float] = {}
        self.decisions: deque[BufferDecision] = deque(maxlen=500)
        self.listeners: ListenerRegistry[BufferDecision] = ListenerRegistry()

    async def step(self) -> list[BufferDecision]:
        now = self._clock()
        intents = self._intents.intents()
        resizes = plan_resizes(
            intents,
            self._intents.buffers(),
            self._rates(),
            self._changed_at,
            now,
            self.settings,
            self._intents.default_buffer,
        )
        known = {i.intent_id for i in intents}
        for gone in [i for i in self._changed_at if i not in known]:
            del self._changed_at[gone]
        return [await self._carry_out(resize, now) for resize in resizes]

    async def _carry_out(self, resize: Resize, now: float) -> BufferDecision:
        done = await self._intents.resize_buffer(resize.intent_id, resize.new)
        self._changed_at[resize.intent_id] = now  # tried: held either way
        request = self._intents.get(resize.intent_id).request
        snapshot = self._topology()
        pair = request.label(snapshot.name_of)
        decision = BufferDecision(
            self._wall(), resize.intent_id, pair, resize.old, resize.new, resize.reason, done
        )
        log.info("%s", decision.text)
        self.decisions.append(decision)
        self.listeners.post(decision)
        return decision

    async def run(self) -> None:
        """Steps every `interval_s` until cancelled; a failed step is logged, the next runs."""
        await every(self.interval_s, self.step, "buffer sizing step")
