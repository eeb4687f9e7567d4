"""The soak's pure parts: the seeded fault schedule and the counts it reports."""

from __future__ import annotations

import pytest

from lab.scenarios.soak import (
    ChaosAction,
    RequestRecord,
    chaos_schedule,
    count,
    link_key_reuse,
    restarts_between,
)
from lab.timeline import TimelineEvent

LINKS = ["a-b", "b-c", "a-c"]
NODES = ["a", "b", "c"]


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    one = chaos_schedule(7, 600.0, 10.0, LINKS, NODES)
    assert one == chaos_schedule(7, 600.0, 10.0, LINKS, NODES)
    assert one != chaos_schedule(8, 600.0, 10.0, LINKS, NODES)


def test_every_cut_is_restored_within_the_run_and_never_cut_twice_while_down() -> None:
    schedule = chaos_schedule(3, 300.0, 4.0, LINKS, NODES)
    down: dict[str, float] = {}
    for action in schedule:
        assert 0 < action.at_s < 300.0
        if action.kind == "cut":
            assert action.target not in down
            down[action.target] = action.at_s
        elif action.kind == "restore":
            assert down.pop(action.target) < action.at_s
    assert down == {}
    assert [a.at_s for a in schedule] == sorted(a.at_s for a in schedule)


def test_the_schedule_uses_only_the_kinds_asked_for() -> None:
    schedule = chaos_schedule(1, 200.0, 5.0, LINKS, NODES, kinds=("kill-km",))
    assert schedule and {a.kind for a in schedule} == {"kill-km"}
    assert {a.target for a in schedule} <= set(NODES)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        chaos_schedule(1, 200.0, 5.0, LINKS, NODES, kinds=("flood",))
    with pytest.raises(ValueError, match="positive"):
        chaos_schedule(1, 200.0, 0.0, LINKS, NODES)


def _used(source: str, role: str, *indices: int, link: str = "L1") -> TimelineEvent:
    return TimelineEvent(
        0.0, source, "link_key.used", {"qkdl_id": link, "role": role, "indices": list(indices)}
    )


def test_link_key_reuse_counts_an_index_used_twice_by_the_same_end_only() -> None:
    events = [
        _used("km:a", "sender", 0, 2),
        _used("km:b", "receiver", 0, 2),  # the other end of the same use: fine
        _used("km:a", "sender", 4),
        _used("km:a", "sender", 4, link="L2"),  # same index, another link: fine
    ]
    assert link_key_reuse(events) == 0
    assert link_key_reuse([*events, _used("km:a", "sender", 2)]) == 1
    assert (
        link_key_reuse([*events, _used("km:b", "receiver", 0), _used("km:b", "receiver", 0)]) == 2
    )


def test_counts_name_keys_served_twice_mismatched_and_lost() -> None:
    records = [
        RequestRecord("m>s", "ok", "k1", "f1", "f1", 400),
        RequestRecord("m>s", "ok", "k2", "f2", "f2", 200),  # second dec_keys served: twice
        RequestRecord("m>s", "ok", "k3", "f3", "fX", 404),  # the ends differ
        RequestRecord("m>s", "ok", "k4", "f1", "f1", 404),  # key of k1 under another key_ID
        RequestRecord("m>s", "acknowledged, never retrievable", "k5", "f5"),
        RequestRecord("m>s", "enc_keys 503"),
    ]
    counts = count(records, [], [ChaosAction(1.0, "cut", "a-b")])
    assert counts.requests == 6
    assert counts.outcomes == {"ok": 4, "acknowledged, never retrievable": 1, "enc_keys 503": 1}
    assert counts.delivered_twice == 2
    assert counts.mismatches == 1
    assert counts.lost_after_ack == 1
    assert counts.faults == {"cut": 1}
    assert not counts.clean


def test_a_run_with_only_refusals_is_clean() -> None:
    counts = count([RequestRecord("m>s", "ok", "k", "f", "f", 404)], [_used("km:a", "sender", 1)])
    assert counts.clean


def test_restarts_are_counted_between_two_readings_of_the_supervisor() -> None:
    before = {"km-a": 1, "km-b": 0, "agents": 2}
    after = {"km-a": 3, "km-b": 0, "agents": 2, "controller": 1}
    assert restarts_between(before, after) == {"controller": 1, "km-a": 2}
    assert count([], [], restarts={"km-a": 2}).restarts == {"km-a": 2}
