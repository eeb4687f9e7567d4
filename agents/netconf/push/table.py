"""The dynamic subscriptions of one agent, bounded: who owns which, and when each is due."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta

from agents.netconf.push.model import (
    INSUFFICIENT_RESOURCES,
    NO_SUCH_SUBSCRIPTION,
    PERIOD_UNSUPPORTED,
    DatastoreTarget,
    ErrorInfo,
    Limits,
    OnChange,
    Periodic,
    PushSubscription,
    State,
    SubscriptionError,
    Target,
)


class SubscriptionTable:
    """Pure bookkeeping: ids, owners, limits. No timers, no sessions."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._subscriptions: dict[int, PushSubscription] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._subscriptions)

    def get(self, subscription_id: int) -> PushSubscription | None:
        return self._subscriptions.get(subscription_id)

    def all(self) -> list[PushSubscription]:
        return list(self._subscriptions.values())

    def of_session(self, session_id: int) -> list[PushSubscription]:
        return [s for s in self._subscriptions.values() if s.session_id == session_id]

    def establish(self, session_id: int, user: str, target: Target) -> PushSubscription:
        """A new subscription of `session_id`; SubscriptionError when a bound is hit."""
        info = _establish_info(target)
        check_trigger(target, self.limits, info)
        if len(self.of_session(session_id)) >= self.limits.per_session:
            raise SubscriptionError(
                INSUFFICIENT_RESOURCES,
                f"a session may hold at most {self.limits.per_session} subscriptions",
                info,
            )
        if len(self._subscriptions) >= self.limits.per_agent:
            raise SubscriptionError(
                INSUFFICIENT_RESOURCES,
                f"this agent serves at most {self.limits.per_agent} subscriptions",
                info,
            )
        subscription = PushSubscription(self._next_id, session_id, user, target)
        self._next_id += 1
        self._subscriptions[subscription.id] = subscription
        return subscription

    def modify(self, session_id: int, subscription_id: int, target: Target) -> PushSubscription:
        """The subscription with a new target (same kind); a suspended one becomes active."""
        old = self.owned(session_id, subscription_id, ErrorInfo.MODIFY_DATASTORE)
        info = (
            ErrorInfo.MODIFY_DATASTORE
            if isinstance(old.target, DatastoreTarget)
            else ErrorInfo.MODIFY_STREAM
        )
        if type(old.target) is not type(target):
            raise SubscriptionError(
                NO_SUCH_SUBSCRIPTION,
                f"subscription {subscription_id} cannot change between stream and datastore",
                info,
            )
        check_trigger(target, self.limits, info)
        new = dataclasses.replace(old, target=target, state=State.ACTIVE)
        self._subscriptions[subscription_id] = new
        return new

    def owned(self, session_id: int, subscription_id: int, info: ErrorInfo) -> PushSubscription:
        """The subscription `subscription_id` if `session_id` established it."""
        found = self._subscriptions.get(subscription_id)
        if found is None or found.session_id != session_id:
            raise SubscriptionError(
                NO_SUCH_SUBSCRIPTION,
                f"this session has no subscription {subscription_id}",
                info,
            )
        return found

    def remove(self, subscription_id: int) -> PushSubscription:
        found = self._subscriptions.pop(subscription_id, None)
        if found is None:
            raise SubscriptionError(
                NO_SUCH_SUBSCRIPTION, f"no subscription {subscription_id}", ErrorInfo.DELETE
            )
        return found

    def set_state(self, subscription_id: int, state: State) -> PushSubscription | None:
        found = self._subscriptions.get(subscription_id)
        if found is None:
            return None
        changed = dataclasses.replace(found, state=state)
        self._subscriptions[subscription_id] = changed
        return changed

    def end_session(self, session_id: int) -> list[PushSubscription]:
        """Forget every subscription of a session that ended; returns them."""
        ended = self.of_session(session_id)
        for subscription in ended:
            del self._subscriptions[subscription.id]
        return ended


def _establish_info(target: Target) -> ErrorInfo:
    if isinstance(target, DatastoreTarget):
        return ErrorInfo.ESTABLISH_DATASTORE
    return ErrorInfo.ESTABLISH_STREAM


def check_trigger(target: Target, limits: Limits, info: ErrorInfo) -> None:
    """period-unsupported (with the smallest period as hint) below the agent's bound."""
    if not isinstance(target, DatastoreTarget) or not isinstance(target.trigger, Periodic):
        return
    period = target.trigger.period_cs
    if period < limits.min_period_cs:
        raise SubscriptionError(
            PERIOD_UNSUPPORTED,
            f"period {period} cs is below the smallest this agent supports, "
            f"{limits.min_period_cs} cs ({limits.min_period_cs / 100:g} s)",
            info,
            (("period-hint", str(limits.min_period_cs)),),
        )


def next_periodic(now: datetime, trigger: Periodic, started: datetime) -> datetime:
    """The first multiple of the period from the anchor (else `started`) after `now`."""
    anchor = trigger.anchor or started
    period_s = trigger.period_cs / 100
    elapsed = (now - anchor).total_seconds()
    steps = math.floor(elapsed / period_s) + 1
    return anchor + timedelta(seconds=steps * period_s)


def on_change_interval_s(trigger: OnChange, limits: Limits) -> float:
    """How often an on-change subscription compares snapshots: its dampening period, at
    least the agent's poll interval."""
    return max(trigger.dampening_cs / 100, limits.poll_s)
