"""The steering service: every `interval_s`, feeds the pure steering core (controller/
steering.py) with the controller's topology and intents, and carries out its moves."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.events import ListenerRegistry
from controller.intents.service import IntentService
from controller.model import IntentId, LinkId, TopologySnapshot
from controller.periodic import every
from controller.steering import (
    Action,
    ActionKind,
    LinkHealth,
    Memory,
    SteeringSettings,
    assess,
    plan_actions,
    steered_policy,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SteeringDecision:
    """One action steering took, with its reason and outcome (for logs and the live view)."""

    at: float  # UNIX time
    kind: ActionKind
    intent_id: IntentId
    pair: str
    reason: str
    moved: bool
    path: tuple[str, ...]  # node names after the action

    @property
    def text(self) -> str:
        verb = "moved" if self.kind is ActionKind.MOVE else "brought back"
        if self.moved:
            outcome = f"{verb} to {' > '.join(self.path)}"
        else:
            outcome = f"stays on {' > '.join(self.path) or '-'} (no better admissible path)"
        return f"steering {self.pair}: {self.reason}: {outcome}"


class SteeringService:
    """Owns the intent service's path policy while it runs (key-aware costs with troubled
    links penalised); `step()` is one look at the network, `run()` loops it."""

    def __init__(
        self,
        topology: Callable[[], TopologySnapshot],
        intents: IntentService,
        settings: SteeringSettings,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        consumption: Callable[[], Mapping[IntentId, float]] | None = None,
    ) -> None:
        """`consumption`: measured bit/s per association (controller/consumption.py)."""
        if interval_s <= 0:
            raise ValueError(f"steering interval must be > 0 s, got {interval_s}")
        self._topology = topology
        self._intents = intents
        self.settings = settings
        self.interval_s = interval_s
        self._clock = clock
        self._wall = wall
        self._consumption = consumption
        self._health: dict[LinkId, LinkHealth] = {}
        self._memory = Memory()
        self.decisions: deque[SteeringDecision] = deque(maxlen=500)
        self.listeners: ListenerRegistry[SteeringDecision] = ListenerRegistry()
        intents.policy = steered_policy({}, settings)

    @property
    def health(self) -> Mapping[LinkId, LinkHealth]:
        return dict(self._health)

    async def step(self) -> list[SteeringDecision]:
        """Assess the links, re-weight paths, then move what must move (one at a time)."""
        now = self._clock()
        before = self._health
        self._health = assess(
            before, self._topology(), self._intents.reservations(), now, self.settings
        )
        for lid, health in self._health.items():
            previous = before.get(lid)
            if health.troubled != (previous.troubled if previous else False):
                log.info(
                    "steering: %s (SKR %d, demand %d bit/s)",
                    health.reason(),
                    health.skr,
                    health.demand,
                )
        self._intents.policy = steered_policy(self._health, self.settings)
        measured = self._consumption() if self._consumption is not None else None
        actions = plan_actions(
            self._health, self._intents.intents(), self._memory, now, self.settings, measured
        )
        taken = [await self._carry_out(action, now) for action in actions]
        recovered = [
            lid for lid, h in self._health.items() if not h.troubled and before.get(lid, h).troubled
        ]
        if recovered:  # capacity came back: requests refused for it may fit now
            await self._intents.retry_waiting()
        return taken

    async def _carry_out(self, action: Action, now: float) -> SteeringDecision:
        moved = await self._intents.move_if_better(action.intent_id, f"steering: {action.reason}")
        self._memory = self._memory.after(action, moved, now)
        intent = self._intents.get(action.intent_id)
        snapshot = self._topology()
        request = intent.request
        pair = request.label(snapshot.name_of)
        path = tuple(snapshot.name_of(n) for n in intent.path.nodes) if intent.path else ()
        decision = SteeringDecision(
            self._wall(), action.kind, action.intent_id, pair, action.reason, moved, path
        )
        log.info("%s", decision.text)
        self.decisions.append(decision)
        self.listeners.post(decision)
        return decision

    async def run(self) -> None:
        """Steps every `interval_s` until cancelled; a failed step is logged, the next runs."""
        await every(self.interval_s, self.step, "steering step")
