"""Data-driven steering (pure): from what the links report, how healthy each is, what a path
over it costs, and which key associations to move off it or bring back.

A link is *degraded* when its secret key rate falls below `drop_ratio` of its reference (the
best rate it reported over `reference_window_s`), and healthy again only above
`recover_ratio` (hysteresis). It is *draining* when what is drawn from it (skr - eskr), what
is reserved on it or what its nodes expect to consume has stayed at `drain_ratio` of its rate
or more for `drain_after_s` (the key pools of one relay direction, which has half of the
rate, then empty; a short burst of pool filling is not draining), and clear again below
`drain_clear_ratio`. An association is moved at
most once per `hold_s`, so nothing flaps. Functions of their inputs and `now`; no I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.model import (
    Intent,
    IntentId,
    IntentState,
    KeyRequest,
    Link,
    LinkId,
    LinkStatus,
    Path,
    Reservations,
    TopologySnapshot,
)
from controller.paths import EdgeData, HopCost, KeyAware, PathPolicy, RouteView, _k_paths


@dataclass(frozen=True)
class SteeringSettings:
    drop_ratio: float = 0.5
    recover_ratio: float = 0.8
    # A relay direction gets half of a link's key (each end sends with its own parity), so
    # one direction runs dry when the link as a whole is drawn at 50 %: draining from 45 %.
    drain_ratio: float = 0.45
    drain_clear_ratio: float = 0.3
    # A link counts as draining only once its demand has stayed over drain_ratio this long:
    # key managers filling their link-key pools (a twin starting, a KM restarted) draw hard
    # for a few seconds, which is not an association's consumption to route around.
    drain_after_s: float = 5.0
    hold_s: float = 10.0
    reference_window_s: float = 300.0
    avoid_cost: float = 8.0  # path cost multiplier of a degraded or draining link
    priorities: Mapping[str, int] = field(default_factory=dict)  # SAE name -> priority

    def __post_init__(self) -> None:
        if not 0 < self.drop_ratio < self.recover_ratio <= 1:
            raise ValueError(
                f"steering: need 0 < drop_ratio ({self.drop_ratio}) < recover_ratio "
                f"({self.recover_ratio}) <= 1"
            )
        if not 0 < self.drain_clear_ratio < self.drain_ratio:
            raise ValueError(
                f"steering: need 0 < drain_clear_ratio ({self.drain_clear_ratio}) < drain_ratio "
                f"({self.drain_ratio})"
            )
        for name in ("hold_s", "reference_window_s", "drain_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"steering: {name} must not be negative")
        if self.avoid_cost < 1:
            raise ValueError(f"steering: avoid_cost must be at least 1, got {self.avoid_cost}")


@dataclass(frozen=True)
class LinkHealth:
    """One link as steering sees it at `at`."""

    link_id: LinkId
    name: str  # "qnode1–qnode3"
    skr: int
    reference_skr: int  # the best rate over the reference window
    reference_at: float  # when the reference was reported
    demand: int  # bit/s: max(drawn = skr - eskr, reserved, expected consumption)
    pressure: float  # demand / skr; inf when skr is 0 and something is wanted
    degraded: bool
    draining: bool
    at: float
    over_since: float | None = None  # since when demand has been over drain_ratio (None: not)

    @property
    def troubled(self) -> bool:
        return self.degraded or self.draining

    def reason(self) -> str:
        if self.degraded:
            return (
                f"link {self.name} SKR fell to {self.skr} bit/s "
                f"({self.skr / max(self.reference_skr, 1):.0%} of its {self.reference_skr})"
            )
        if self.draining:
            return f"link {self.name} is draining: demand at {self.pressure:.0%} of its SKR"
        return f"link {self.name} healthy again"


def _demand(link: Link, reserved: int) -> int:
    return max(link.skr - link.eskr, reserved, link.expected_consumption, 0)


def _pressure(demand: float, skr: int) -> float:
    if skr <= 0:
        return math.inf if demand > 0 else 0.0
    return demand / skr


def assess(
    previous: Mapping[LinkId, LinkHealth],
    snapshot: TopologySnapshot,
    reservations: Reservations,
    now: float,
    settings: SteeringSettings,
) -> dict[LinkId, LinkHealth]:
    """The health of every ACTIVE link (links not ACTIVE are the controller's re-route's job)."""
    health: dict[LinkId, LinkHealth] = {}
    for link in snapshot.links.values():
        if link.status is not LinkStatus.ACTIVE:
            continue
        before = previous.get(link.qkdl_id)
        a, b = sorted((snapshot.name_of(link.a), snapshot.name_of(link.b)))
        reference, reference_at = link.skr, now
        if (
            before is not None
            and before.reference_skr >= link.skr
            and now - before.reference_at <= settings.reference_window_s
        ):
            reference, reference_at = before.reference_skr, before.reference_at
        ratio = link.skr / reference if reference > 0 else 0.0
        was_degraded = before is not None and before.degraded
        degraded = ratio < (settings.recover_ratio if was_degraded else settings.drop_ratio)
        demand = _demand(link, reservations.reserved_on(link.qkdl_id))
        pressure = _pressure(demand, link.skr)
        was_draining = before is not None and before.draining
        over_since: float | None = None
        if pressure >= settings.drain_ratio:
            earlier = before.over_since if before is not None else None
            over_since = now if earlier is None else earlier
        if was_draining:
            draining = pressure >= settings.drain_clear_ratio
        else:
            draining = over_since is not None and now - over_since >= settings.drain_after_s
        health[link.qkdl_id] = LinkHealth(
            link.qkdl_id,
            f"{a}–{b}",
            link.skr,
            reference,
            reference_at,
            demand,
            pressure,
            degraded,
            draining,
            now,
            over_since,
        )
    return health


def penalties(
    health: Mapping[LinkId, LinkHealth], settings: SteeringSettings
) -> dict[LinkId, float]:
    """Cost multiplier of every troubled link (others cost as the base policy says)."""
    return {lid: settings.avoid_cost for lid, h in health.items() if h.troubled}


@dataclass(frozen=True)
class Steered:
    """Key-aware path costs (free rate, pool level), times a penalty on troubled links."""

    link_penalty: Mapping[LinkId, float] = field(default_factory=dict)
    base: KeyAware = field(default_factory=KeyAware)
    name: str = "data-driven"

    def cost_function(self, view: RouteView, request: KeyRequest) -> HopCost:
        base = self.base.cost_function(view, request)
        penalty = self.link_penalty
        free = view.free

        def cost(a: str, b: str, data: EdgeData) -> float | None:
            value = base(a, b, data)
            if value is None:
                return None
            links: tuple[Link, ...] = data["links"]
            link = links[0] if len(links) == 1 else max(links, key=free)
            return value * penalty.get(link.qkdl_id, 1.0)

        return cost

    def candidates(self, view: RouteView, request: KeyRequest, k: int = 1) -> list[Path]:
        graph = view.routing()
        if request.src not in graph or request.dst not in graph:
            return []
        return _k_paths(view, request, k, self.cost_function(view, request))


def priority_of(intent: Intent, settings: SteeringSettings) -> int:
    """The request's own `app_priority`, raised by the operator's per-SAE priorities."""
    request = intent.request
    names = (request.server_app_id, *request.client_app_ids)
    configured = [settings.priorities.get(_sae(n), 0) for n in names]
    return max([request.qos.priority, *configured])


def _sae(app_id: str) -> str:
    return app_id.replace("/", ":").rpartition(":")[2]


class ActionKind(enum.Enum):
    MOVE = "MOVE"  # off a troubled link
    RETURN = "RETURN"  # the link it left is healthy again: back to the best path


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    intent_id: IntentId
    link_id: LinkId  # the troubled link (MOVE) or the recovered one (RETURN)
    priority: int
    reason: str
    demand: int = 0  # the link's demand (bit/s) when the action was planned


@dataclass(frozen=True)
class Memory:
    """What steering did before: when each association last moved, and which link it left
    with that link's demand (bit/s) then."""

    moved_at: Mapping[IntentId, float] = field(default_factory=dict)
    left: Mapping[IntentId, tuple[LinkId, int]] = field(default_factory=dict)

    def after(self, action: Action, moved: bool, now: float) -> Memory:
        moved_at = dict(self.moved_at)
        left = dict(self.left)
        moved_at[action.intent_id] = now  # tried: hold it either way
        if action.kind is ActionKind.MOVE and moved:
            left[action.intent_id] = (action.link_id, action.demand)
        elif action.kind is ActionKind.RETURN:
            left.pop(action.intent_id, None)
        return Memory(moved_at, left)


def plan_actions(
    health: Mapping[LinkId, LinkHealth],
    intents: Iterable[Intent],
    memory: Memory,
    now: float,
    settings: SteeringSettings,
    consumption: Mapping[IntentId, float] | None = None,
) -> list[Action]:
    """What to do now, most important first.

    A degraded link: every association on it moves, the highest priority first (it picks its
    new path first). A draining link: associations of lower priority than the link's highest
    give way (lowest first); when all are equal, the one reserving most moves. An association
    that left a link comes back once that link is healthy again. Nothing moves twice within
    `hold_s`. An association returns only if the link can take it back without draining
    again: its share is what it was measured to consume (`consumption`: bit/s per association,
    from the 015 app_statistics of its source node), else estimated as the link's demand when
    it left minus the demand now; at least its reservation either way, so a heavy consumer is
    not brought back onto the link it drained. Among equals on a draining link, the one
    measured to consume most moves (its reservation when not measured)."""
    measured = consumption or {}

    def draw(intent: Intent) -> float:
        return measured.get(intent.intent_id, float(intent.bandwidth))

    installed = [i for i in intents if i.state is IntentState.INSTALLED and i.path is not None]
    held = {
        i.intent_id
        for i in installed
        if now - memory.moved_at.get(i.intent_id, -math.inf) < settings.hold_s
    }
    moves: list[Action] = []
    chosen: set[IntentId] = set()
    for link_id, link in sorted(health.items()):
        if not link.troubled:
            continue
        on_link = [i for i in installed if i.path is not None and link_id in i.path.links]
        ranked = sorted(on_link, key=lambda i: (-priority_of(i, settings), i.intent_id))
        if link.degraded:
            leaving = ranked
        else:
            top = priority_of(ranked[0], settings) if ranked else 0
            leaving = [i for i in reversed(ranked) if priority_of(i, settings) < top]
            if not leaving and len(ranked) > 1:
                leaving = [max(ranked, key=lambda i: (draw(i), i.intent_id))]
        for intent in leaving:
            if intent.intent_id in held or intent.intent_id in chosen:
                continue
            chosen.add(intent.intent_id)
            moves.append(
                Action(
                    ActionKind.MOVE,
                    intent.intent_id,
                    link_id,
                    priority_of(intent, settings),
                    link.reason(),
                    link.demand,
                )
            )
    # Off degraded links the highest priority picks first; off draining ones, lowest first.
    degraded = sorted((m for m in moves if health[m.link_id].degraded), key=lambda m: -m.priority)
    moves = degraded + [m for m in moves if not health[m.link_id].degraded]
    returns: list[Action] = []
    for intent in installed:
        left = memory.left.get(intent.intent_id)
        if left is None or intent.intent_id in held or intent.intent_id in chosen:
            continue
        left_link, demand_then = left
        back = health.get(left_link)
        if back is None or back.troubled:
            continue
        used = measured.get(intent.intent_id)
        share = max(intent.bandwidth, demand_then - back.demand if used is None else used)
        if _pressure(back.demand + share, back.skr) < settings.drain_clear_ratio:
            returns.append(
                Action(
                    ActionKind.RETURN,
                    intent.intent_id,
                    left_link,
                    priority_of(intent, settings),
                    back.reason(),
                    back.demand,
                )
            )
    returns.sort(key=lambda a: (-a.priority, a.intent_id))
    return moves + returns


def steered_policy(
    health: Mapping[LinkId, LinkHealth], settings: SteeringSettings, base: KeyAware | None = None
) -> PathPolicy:
    return Steered(penalties(health, settings), base or KeyAware())
