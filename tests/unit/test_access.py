"""Access policy: parsing with every error named, decisions, token buckets, reload."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from km.access import (
    AccessControl,
    AccessDenied,
    AccessPolicy,
    PolicyError,
    Refusal,
    TokenBucket,
)

POLICY = {
    "saes": {
        "a": {"peers": ["b"], "max_key_size": 256, "max_keys_per_second": 2, "burst": 4},
        "b": {"peers": "*"},
        "c": None,
    }
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_every_error_is_named() -> None:
    with pytest.raises(PolicyError) as err:
        AccessPolicy.from_dict(
            {
                "saes": {
                    "a": {"peers": ["ghost"], "max_key_size": 100, "colour": "red"},
                    "b": {"peers": "all", "max_keys_per_second": -1},
                    "c": {"burst": 3},
                    "d": [],
                },
                "extra": 1,
            },
            "policy.yaml",
        )
    text = str(err.value)
    for expected in [
        "policy.yaml",
        "unknown top-level field(s): extra",
        "saes.a: unknown field(s): colour",
        "saes.a.max_key_size: must be a multiple of 8",
        "saes.a.peers: 'ghost' is not an SAE of this policy",
        "saes.b.peers: must be '*' or a list",
        "saes.b.max_keys_per_second: must be a positive number",
        "saes.c.burst: needs max_keys_per_second",
        "saes.d: must be a mapping",
    ]:
        assert expected in text
    assert len(err.value.errors) == 8
    with pytest.raises(PolicyError):
        AccessPolicy.from_dict(["not", "a", "mapping"])


def test_decisions() -> None:
    policy = AccessPolicy.from_dict(POLICY)
    assert policy.decide("a", ["b"], 256) is None
    assert policy.decide("b", ["a", "c"], 1024) is None  # "*": every SAE listed
    cases = [
        (("x", ["a"], 256), Refusal.UNKNOWN_SAE, 401),
        (("a", ["c"], 256), Refusal.NOT_PERMITTED, 401),
        (("b", ["b"], 256), Refusal.NOT_PERMITTED, 401),
        (("b", ["x"], 256), Refusal.NOT_PERMITTED, 401),
        (("a", ["b"], 512), Refusal.KEY_TOO_LARGE, 400),
    ]
    for (requester, peers, size), refusal, status in cases:
        denied = policy.decide(requester, peers, size)
        assert denied is not None and denied.refusal is refusal
        assert denied.status_code == status and requester in denied.message


def test_default_lab_policy_allows_every_pair() -> None:
    policy = AccessPolicy.allow_all(["a", "b", "c"])
    assert all(policy.decide(x, [y], 1024) is None for x in "abc" for y in "abc" if x != y)
    assert policy.decide("z", ["a"], 256) is not None


def test_rate_limit_refuses_then_refills_and_counts() -> None:
    clock = FakeClock()
    control = AccessControl(AccessPolicy.from_dict(POLICY), clock=clock)
    control.check("a", ["b"], 4, 256)  # the whole burst
    with pytest.raises(AccessDenied) as err:
        control.check("a", ["b"], 1, 256)
    assert err.value.status_code == 503 and err.value.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    control.check("a", ["b"], 1, 256)
    with pytest.raises(AccessDenied) as too_many:
        control.check("a", ["b"], 5, 256)  # more than the bucket ever holds
    assert too_many.value.retry_after_s == math.inf
    with pytest.raises(AccessDenied):
        control.check("a", ["c"], 1, 256)
    counters = control.snapshot()
    assert counters["refused_rate_exceeded"] == 2
    assert counters["refused_not_permitted"] == 1
    assert counters["allowed_requests"] == 2


@given(
    rate=st.floats(0.1, 1000),
    capacity=st.floats(1, 1000),
    steps=st.lists(st.tuples(st.floats(0, 10), st.integers(1, 50)), max_size=50),
)
def test_bucket_never_gives_more_than_burst_plus_rate(
    rate: float, capacity: float, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, capacity, capacity, 0.0)
    now = given_total = 0.0
    for elapsed, amount in steps:
        now += elapsed
        if bucket.take(amount, now) == 0.0:
            given_total += amount
    assert given_total <= capacity + rate * now + 1e-6


def test_reload_on_change_keeps_old_policy_on_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("saes:\n  a: {peers: [b]}\n  b: {}\n")
    clock = FakeClock()
    control = AccessControl.from_file(path, clock=clock)
    with pytest.raises(AccessDenied):
        control.check("c", ["a"], 1, 256)
    path.write_text("saes:\n  a: {peers: [b]}\n  b: {}\n  c: {}\n")
    os.utime(path, (2_000_000_000, 2_000_000_000))
    clock.now += 2
    control.check("c", ["a"], 1, 256)  # picked up without a restart
    path.write_text("saes: [broken")
    os.utime(path, (2_000_000_100, 2_000_000_100))
    clock.now += 2
    control.check("c", ["a"], 1, 256)  # the previous policy stays in force
    assert control.snapshot()["policy_reload_errors"] == 1
    assert control.snapshot()["policy_reloads"] == 1
    assert control.reload() is False


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("saes: {a: {max_key_size: 12}}\n")
    with pytest.raises(PolicyError) as err:
        AccessPolicy.load(path)
    assert str(path) in str(err.value) and "multiple of 8" in str(err.value)
