"""The supervisor's decisions on a child's exit: backoff, the limit, stops that were asked for."""

from __future__ import annotations

import pytest

from lab.restarts import Child, ChildState, RestartPolicy

POLICY = RestartPolicy(limit=3, window_s=60.0, first_delay_s=0.5, max_delay_s=1.5)


def test_a_crash_schedules_a_restart_after_the_first_delay() -> None:
    child = Child("km-a").exited(-9, now=100.0, policy=POLICY, expected=False)
    assert child.state is ChildState.RESTARTING
    assert child.restart_at == 100.5 and child.last_exit == -9
    assert not child.due(100.4) and child.due(100.5)


def test_the_delay_doubles_up_to_its_maximum() -> None:
    child, delays = Child("km-a"), []
    for now in (0.0, 10.0, 20.0):
        child = child.exited(1, now, POLICY, expected=False)
        assert child.restart_at is not None
        delays.append(child.restart_at - now)
        child = child.started_again()
    assert delays == [0.5, 1.0, 1.5]
    assert child.restarts == 3 and child.state is ChildState.STARTING


def test_a_restarted_child_is_starting_until_it_listens() -> None:
    child = Child("km-a").exited(1, 0.0, POLICY, expected=False).started_again()
    assert child.state is ChildState.STARTING
    running = child.listening()
    assert running.state is ChildState.RUNNING and running.restarts == 1
    assert Child("km-a").exited(1, 0.0, POLICY, expected=False).listening().state is (
        ChildState.RESTARTING  # only a starting child becomes running
    )


def test_a_child_that_keeps_dying_fails_after_the_limit_and_is_never_due() -> None:
    child = Child("km-a")
    for now in (0.0, 5.0, 10.0):
        child = child.exited(1, now, POLICY, expected=False).started_again()
    failed = child.exited(1, 15.0, POLICY, expected=False)
    assert failed.state is ChildState.FAILED
    assert "4 times within 60 s" in failed.reason
    assert failed.restart_at is None and not failed.due(1e9)


def test_crashes_older_than_the_window_no_longer_count() -> None:
    child = Child("km-a")
    for now in (0.0, 5.0, 10.0):
        child = child.exited(1, now, POLICY, expected=False).started_again()
    later = child.exited(1, 200.0, POLICY, expected=False)
    assert later.state is ChildState.RESTARTING
    assert later.restart_at == 200.5  # the backoff starts over too


def test_an_exit_we_asked_for_is_a_stop_not_a_crash() -> None:
    child = Child("km-a").exited(-15, 0.0, POLICY, expected=True)
    assert child.state is ChildState.STOPPED and child.last_exit == -15
    assert not child.due(1e9) and child.recent == ()


def test_an_operator_restart_gives_a_failed_child_a_fresh_history() -> None:
    child = Child("km-a")
    for now in (0.0, 1.0, 2.0, 3.0):
        child = child.exited(1, now, POLICY, expected=False)
        if child.state is ChildState.RESTARTING:
            child = child.started_again()
    assert child.state is ChildState.FAILED
    again = child.asked_to_restart().started_again()
    assert again.state is ChildState.STARTING and again.restarts == 4
    assert again.exited(1, 4.0, POLICY, expected=False).state is ChildState.RESTARTING


@pytest.mark.parametrize(
    "fields", [{"limit": -1}, {"window_s": 0.0}, {"first_delay_s": 2.0, "max_delay_s": 1.0}]
)
def test_a_policy_out_of_range_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="restart policy out of range"):
        RestartPolicy(**fields)  # type: ignore[arg-type]
