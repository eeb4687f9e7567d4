"""When the outage scenario may end a phase early (`phase_seen`): from the samples and the
key managers' `keys.qkd_path` trace events, never before each pair has shown its part."""

from __future__ import annotations

from common.tracing import TimelineEvent
from lab.scenarios.outage import SEEN_BEFORE, SEEN_DURING, Progress, Sample, phase_seen

PAIRS = [("app1", "app2"), ("app3", "app4")]
MODES = {"app1": "qkd-preferred", "app3": "qkd-only"}
WALL0 = 1_000.0


def sample(pair: str, t: float, status: int = 200, origin: str | None = "qkd") -> Sample:
    return Sample(pair, "-", "-", t + 0.01, t, status, origin, True, 1.0)


def path_event(master: str, state: str, t: float) -> TimelineEvent:
    return TimelineEvent(
        (WALL0 + t) * 1000.0, "km", "keys.qkd_path", {"master": master, "state": state}
    )


def seen(
    phase: str,
    samples: list[Sample],
    events: list[TimelineEvent],
    cut: float | None = None,
    restore: float | None = None,
) -> bool:
    return phase_seen(phase, PAIRS, MODES, Progress(samples, cut, restore), lambda: events, WALL0)


def test_before_ends_once_every_pair_got_enough_qkd_keys() -> None:
    one = [sample("app1>app2", 0.1 * i) for i in range(SEEN_BEFORE)]
    other = [sample("app3>app4", 0.1 * i) for i in range(SEEN_BEFORE - 1)]
    assert not seen("before", one + other, [])
    assert not seen("before", one + other + [sample("app3>app4", 1.0, origin="pqc")], [])
    assert seen("before", one + other + [sample("app3>app4", 1.0)], [])


def test_the_outage_ends_only_after_each_kms_failure_and_requests_after_it() -> None:
    after = [
        sample(pair, 5.0 + 0.1 * i, 503, None)
        for pair in ("app1>app2", "app3>app4")
        for i in range(SEEN_DURING)
    ]
    failed = [path_event("app1", "failed", 4.9)]
    assert not seen("outage", after, failed, cut=4.0)  # app3's KM has not seen it yet
    failed.append(path_event("app3", "rejected", 5.05))
    assert not seen("outage", after, failed, cut=4.0)  # one request of app3 after it only
    more = [*after, sample("app3>app4", 6.0, 503, None)]
    assert seen("outage", more, failed, cut=4.0)
    assert not seen("outage", more, failed)  # no cut yet: nothing to have seen
    old = [path_event("app1", "failed", 1.0), path_event("app3", "failed", 1.0)]
    assert not seen("outage", more, old, cut=4.0)  # failures from before the cut do not count


def test_after_ends_once_each_pair_got_qkd_again_after_its_path_was_admitted() -> None:
    admitted = [path_event("app1", "admitted", 9.0), path_event("app3", "admitted", 9.2)]
    pqc_then_qkd = [sample("app1>app2", 9.1, origin="pqc"), sample("app3>app4", 9.3)]
    assert not seen("after", pqc_then_qkd, admitted, cut=4.0, restore=8.0)
    both = [*pqc_then_qkd, sample("app1>app2", 9.4)]
    assert seen("after", both, admitted, cut=4.0, restore=8.0)
    early = [path_event("app1", "admitted", 7.9), path_event("app3", "admitted", 9.2)]
    assert not seen("after", both, early, cut=4.0, restore=8.0)  # admitted before the restore
