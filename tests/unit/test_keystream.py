"""Key stream: identical material at both ends, availability integrates the rate history."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.emulator.keystream import RateHistory, key_material

SEED = bytes(range(32))
LINK = "8d3c1f6e-0000-5000-8000-000000000001"


def test_material_is_hmac_of_link_and_index() -> None:
    expected = hmac.digest(SEED, LINK.encode() + (7).to_bytes(8, "big") + bytes(4), hashlib.sha256)
    assert key_material(SEED, LINK, 7, 32) == expected


def test_material_differs_by_index_link_and_seed_and_expands() -> None:
    base = key_material(SEED, LINK, 1, 32)
    assert base != key_material(SEED, LINK, 2, 32)
    assert base != key_material(SEED, LINK[:-1] + "2", 1, 32)
    assert base != key_material(bytes(32), LINK, 1, 32)
    long = key_material(SEED, LINK, 1, 100)
    assert len(long) == 100 and long[:32] == base


@pytest.mark.parametrize(
    ("seed", "index", "size"), [(b"short", 0, 32), (SEED, -1, 32), (SEED, 0, 0)]
)
def test_bad_material_request_is_refused(seed: bytes, index: int, size: int) -> None:
    with pytest.raises(ValueError):
        key_material(seed, LINK, index, size)


def test_rate_is_respected_over_simulated_time() -> None:
    history = RateHistory.starting(100.0, 10_000.0)
    # 10 kbit/s of 256-bit chunks for 60 s: 600000 / 256 = 2343 indices
    assert history.available(160.0, 256) == 2343
    assert history.available(100.0, 256) == 0


def test_cut_stops_and_restore_resumes_generation() -> None:
    history = (
        RateHistory.starting(0.0, 1024.0)
        .with_rate(10.0, 0.0)  # cut
        .with_rate(30.0, 512.0)  # restored with an eavesdropper
    )
    assert history.bits_at(10.0) == 10_240.0
    assert history.bits_at(25.0) == 10_240.0
    assert history.bits_at(40.0) == 10_240.0 + 5_120.0
    assert history.available(40.0, 256) == 60
    assert history.time_of(60, 256, 40.0) == pytest.approx(40.5)
    assert RateHistory.starting(0.0, 0.0).time_of(0, 256, 5.0) is None


def test_redundant_and_same_instant_changes_collapse() -> None:
    history = RateHistory.starting(0.0, 100.0)
    assert history.with_rate(5.0, 100.0) is history
    replaced = history.with_rate(5.0, 0.0).with_rate(5.0, 50.0)
    assert replaced.segments[-1].rate_bps == 50.0 and len(replaced.segments) == 2
    with pytest.raises(ValueError):
        replaced.with_rate(4.0, 1.0)
    with pytest.raises(ValueError):
        history.with_rate(6.0, float("nan"))


events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=50.0, allow_nan=False),
        st.sampled_from([0.0, 300.0, 1000.0, 12_345.6, 13.7e6]),
    ),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(events=events, duplicates=st.lists(st.booleans(), max_size=20))
def test_both_ends_agree_under_random_event_sequences(
    events: list[tuple[float, float]], duplicates: list[bool]
) -> None:
    """End B sees the same events as end A, some delivered twice (both ends are told)."""
    a = b = RateHistory.starting(0.0, 1000.0)
    t = 0.0
    for step, (delay, rate) in enumerate(events):
        t += delay
        a = a.with_rate(t, rate)
        b = b.with_rate(t, rate)
        if step < len(duplicates) and duplicates[step]:
            b = b.with_rate(t, rate)
        now = t + delay / 2
        assert a.available(now, 256) == b.available(now, 256)
    assert a == b
    assert a.available(t + 10.0, 256) == b.available(t + 10.0, 256)


@settings(max_examples=100, deadline=None)
@given(events=events)
def test_availability_never_decreases(events: list[tuple[float, float]]) -> None:
    history = RateHistory.starting(0.0, 500.0)
    t = 0.0
    for delay, rate in events:
        t += delay
        history = history.with_rate(t, rate)
    samples = [history.available(x / 4, 256) for x in range(int(t * 4) + 40)]
    assert samples == sorted(samples)
