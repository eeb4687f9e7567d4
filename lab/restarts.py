"""What the supervisor does when a child exits: restart after a backoff, or give up (pure)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class ChildState(enum.Enum):
    RUNNING = "running"
    STARTING = "starting"  # started again, not listening on all its ports yet
    RESTARTING = "restarting"  # exited unasked; starts again at `restart_at`
    FAILED = "failed"  # died too often: stays down until an operator restarts it
    STOPPED = "stopped"  # stopped on purpose (lab down)


@dataclass(frozen=True)
class RestartPolicy:
    """At most `limit` automatic restarts within `window_s`; the delay doubles each time."""

    limit: int = 5
    window_s: float = 60.0
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window_s <= 0 or not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError(f"restart policy out of range: {self}")

    def delay(self, recent_restarts: int) -> float:
        return float(min(self.max_delay_s, self.first_delay_s * 2**recent_restarts))


@dataclass(frozen=True)
class Child:
    """One supervised process as the supervisor sees it; every change makes a new value."""

    name: str
    state: ChildState = ChildState.RUNNING
    restarts: int = 0  # every start after the first, automatic or asked by an operator
    last_exit: int | None = None  # exit code; negative: killed by that signal
    recent: tuple[float, ...] = ()  # times of the automatic restarts still inside the window
    restart_at: float | None = None
    reason: str = ""  # why it is failed or restarting, for `lab status`

    def exited(self, code: int, now: float, policy: RestartPolicy, *, expected: bool) -> Child:
        """The process exited with `code`. `expected`: we stopped it (lab down, lab restart)."""
        if expected:
            return replace(self, state=ChildState.STOPPED, last_exit=code, restart_at=None)
        recent = tuple(t for t in self.recent if now - t < policy.window_s)
        if len(recent) >= policy.limit:
            return replace(
                self,
                state=ChildState.FAILED,
                last_exit=code,
                recent=recent,
                restart_at=None,
                reason=f"exited {len(recent) + 1} times within {policy.window_s:g} s",
            )
        delay = policy.delay(len(recent))
        return replace(
            self,
            state=ChildState.RESTARTING,
            last_exit=code,
            recent=(*recent, now + delay),
            restart_at=now + delay,
            reason=f"exited with code {code}; restart in {delay:g} s",
        )

    def due(self, now: float) -> bool:
        return (
            self.state is ChildState.RESTARTING
            and self.restart_at is not None
            and (now >= self.restart_at)
        )

    def started_again(self) -> Child:
        """Started again (after a backoff, or by hand): starting until it listens, one
        restart more."""
        return replace(
            self, state=ChildState.STARTING, restarts=self.restarts + 1, restart_at=None, reason=""
        )

    def listening(self) -> Child:
        """A starting process now listens on all its ports: it runs."""
        if self.state is not ChildState.STARTING:
            return self
        return replace(self, state=ChildState.RUNNING)

    def asked_to_restart(self) -> Child:
        """An operator restarts it: the crash history no longer counts (a failed one may run)."""
        return replace(self, recent=())
