"""The dynamic subscription table: ids, owners, bounds, and when periodic updates are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.netconf.push.model import (
    INSUFFICIENT_RESOURCES,
    NO_SUCH_SUBSCRIPTION,
    PERIOD_UNSUPPORTED,
    DatastoreTarget,
    ErrorInfo,
    Limits,
    OnChange,
    Periodic,
    Selection,
    State,
    StreamTarget,
    SubscriptionError,
)
from agents.netconf.push.table import SubscriptionTable, next_periodic, on_change_interval_s

EVERY_SECOND = DatastoreTarget(Selection(), Periodic(100))
START = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def test_ids_are_unique_and_each_subscription_belongs_to_its_session() -> None:
    table = SubscriptionTable(Limits())
    first = table.establish(1, "alice", EVERY_SECOND)
    second = table.establish(2, "bob", EVERY_SECOND)
    assert first.id != second.id
    assert [s.id for s in table.of_session(1)] == [first.id]
    with pytest.raises(SubscriptionError) as refused:
        table.owned(1, second.id, ErrorInfo.DELETE)
    assert refused.value.reason == NO_SUCH_SUBSCRIPTION


def test_a_session_past_its_bound_is_refused_naming_the_bound() -> None:
    table = SubscriptionTable(Limits(per_session=2, per_agent=10))
    table.establish(1, "alice", EVERY_SECOND)
    table.establish(1, "alice", EVERY_SECOND)
    with pytest.raises(SubscriptionError, match="at most 2 subscriptions") as refused:
        table.establish(1, "alice", EVERY_SECOND)
    assert refused.value.reason == INSUFFICIENT_RESOURCES
    assert table.establish(2, "bob", EVERY_SECOND).session_id == 2


def test_the_agent_past_its_bound_is_refused_whatever_the_session() -> None:
    table = SubscriptionTable(Limits(per_session=1, per_agent=2))
    table.establish(1, "a", EVERY_SECOND)
    table.establish(2, "b", EVERY_SECOND)
    with pytest.raises(SubscriptionError, match="at most 2 subscriptions"):
        table.establish(3, "c", EVERY_SECOND)
    assert len(table) == 2


def test_a_period_below_the_smallest_is_refused_with_the_smallest_as_hint() -> None:
    table = SubscriptionTable(Limits(min_period_cs=100))
    with pytest.raises(SubscriptionError, match=r"below the smallest.*100 cs") as refused:
        table.establish(1, "alice", DatastoreTarget(Selection(), Periodic(99)))
    assert refused.value.reason == PERIOD_UNSUPPORTED
    assert refused.value.hints == (("period-hint", "100"),)
    assert len(table) == 0


def test_modify_changes_the_period_resumes_and_keeps_the_kind() -> None:
    table = SubscriptionTable(Limits())
    subscription = table.establish(1, "alice", EVERY_SECOND)
    table.set_state(subscription.id, State.SUSPENDED)
    modified = table.modify(1, subscription.id, DatastoreTarget(Selection(), Periodic(500)))
    assert modified.target == DatastoreTarget(Selection(), Periodic(500))
    assert modified.state is State.ACTIVE
    with pytest.raises(SubscriptionError, match="between stream and datastore"):
        table.modify(1, subscription.id, StreamTarget(Selection()))
    with pytest.raises(SubscriptionError) as other:
        table.modify(2, subscription.id, EVERY_SECOND)
    assert other.value.reason == NO_SUCH_SUBSCRIPTION
    with pytest.raises(SubscriptionError) as too_fast:
        table.modify(1, subscription.id, DatastoreTarget(Selection(), Periodic(1)))
    assert too_fast.value.reason == PERIOD_UNSUPPORTED
    assert table.get(subscription.id) == modified  # a refused modify changes nothing


def test_a_session_that_ends_takes_only_its_own_subscriptions() -> None:
    table = SubscriptionTable(Limits())
    mine = table.establish(1, "alice", EVERY_SECOND)
    theirs = table.establish(2, "bob", EVERY_SECOND)
    assert table.end_session(1) == [mine]
    assert table.all() == [theirs]


def test_periodic_updates_fall_on_multiples_of_the_period_from_the_start() -> None:
    trigger = Periodic(250)  # 2.5 s
    assert next_periodic(START, trigger, START) == START + timedelta(seconds=2.5)
    later = START + timedelta(seconds=2.5)
    assert next_periodic(later, trigger, START) == START + timedelta(seconds=5)
    almost = START + timedelta(seconds=4.9)
    assert next_periodic(almost, trigger, START) == START + timedelta(seconds=5)


def test_an_anchor_time_in_the_past_or_future_sets_the_phase() -> None:
    anchor = START.replace(minute=0, second=0) - timedelta(hours=1) + timedelta(seconds=0.3)
    trigger = Periodic(100, anchor)
    now = START + timedelta(seconds=7.05)
    assert next_periodic(now, trigger, START) == START + timedelta(seconds=7.3)
    future = Periodic(100, START + timedelta(seconds=30))
    assert next_periodic(START, future, START) == START + timedelta(seconds=1)


def test_on_change_compares_at_the_dampening_period_or_the_poll_interval() -> None:
    limits = Limits(poll_s=0.25)
    assert on_change_interval_s(OnChange(0), limits) == 0.25
    assert on_change_interval_s(OnChange(200), limits) == 2.0


def test_limits_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="per_session"):
        Limits(per_session=0)
    with pytest.raises(ValueError, match="resume_backlog_bytes"):
        Limits(max_backlog_bytes=10, resume_backlog_bytes=20)
