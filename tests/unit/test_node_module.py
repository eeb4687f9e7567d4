"""The emulated QKD module (one link end): ETSI 004 semantics under an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.emulator.keystream import key_material
from agents.emulator.qkd_module import LinkEnd, QkdModule, Status

SEED = bytes(range(32))
LINK = "5b8f6a3e-1111-5222-8333-444455556666"
A, B = "11111111-1111-5111-8111-111111111111", "22222222-2222-5222-8222-222222222222"


@dataclass(frozen=True)
class Rate:
    skr_bps: float
    qber: float
    aborted: bool


def model(eve: float) -> Rate:
    qber = 0.02 + eve / 4
    return Rate(0.0 if qber > 0.11 else 2560.0 * (1 - 4 * eve), qber, qber > 0.11)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stream_open_of(ends: dict[str, QkdModule], node: str) -> Callable[[], bool | None]:
    return lambda: ends[node].stream_open


def pair() -> tuple[Clock, QkdModule, QkdModule]:
    clock = Clock()
    ends: dict[str, QkdModule] = {}
    for local, peer in ((A, B), (B, A)):
        ends[local] = QkdModule(
            LinkEnd(LINK, local, peer, 1),
            SEED,
            model,
            clock,
            start=clock.now,
            capacity_chunks=50,
            peer_stream_open=stream_open_of(ends, peer),
        )
    return clock, ends[A], ends[B]


def open_(module: QkdModule, owner: str = "km") -> Status:
    end = module.end
    return module.open_connect(end.local_uri, end.peer_uri, LINK, 0, owner).status


def test_open_connect_reports_peer_then_success() -> None:
    _, a, b = pair()
    assert open_(a) is Status.PEER_NOT_CONNECTED
    assert open_(b) is Status.SUCCESSFUL
    assert open_(a) is Status.SUCCESSFUL  # the same caller may open again
    assert open_(a, owner="intruder") is Status.KEY_STREAM_IN_USE
    wrong = a.open_connect(a.end.local_uri, "qkdn:elsewhere", LINK, 0, "km")
    assert wrong.status is Status.NO_QKD_CONNECTION
    qos = a.open_connect(a.end.local_uri, a.end.peer_uri, LINK, 16, "km")
    assert qos.status is Status.QOS_NOT_MET and qos.chunk_bytes == 32


def test_stream_in_use_is_released_after_idle() -> None:
    clock, a, _ = pair()
    open_(a, "old")
    clock.now += a.idle_release_s + 1
    assert open_(a, "new") in (Status.SUCCESSFUL, Status.PEER_NOT_CONNECTED)


def test_same_index_same_key_at_both_ends_consumed_once() -> None:
    clock, a, b = pair()
    open_(a), open_(b)
    assert a.get_key(LINK).status is Status.INSUFFICIENT_KEY  # nothing generated yet
    clock.now += 1.0  # 2560 bit/s -> 10 chunks of 256 bits
    first = a.get_key(LINK)
    assert first.status is Status.SUCCESSFUL and first.index == 0
    assert first.key == key_material(SEED, LINK, 0, 32)
    assert b.get_key(LINK, 0).key == first.key
    again = a.get_key(LINK, 0)
    assert again.status is Status.INSUFFICIENT_KEY and again.message == "consumed"
    assert a.get_key(LINK, 5).key == b.get_key(LINK, 5).key
    assert a.get_key(LINK).index == 1  # next skips what was consumed
    indices = [a.get_key(LINK).index for _ in range(7)]
    assert indices == [2, 3, 4, 6, 7, 8, 9]
    later = a.get_key(LINK)
    assert later.status is Status.INSUFFICIENT_KEY and later.message == "not yet generated"
    assert a.get_key(LINK, 11).message == "not yet generated"
    assert "key=" not in repr(first) and first.key.hex() not in repr(first)


def test_ready_in_predicts_generation() -> None:
    clock, a, _ = pair()
    open_(a)
    wait = a.ready_in()
    assert wait == pytest.approx(0.1)
    clock.now += wait or 0
    assert a.get_key(LINK).status is Status.SUCCESSFUL


def test_cut_link_gives_status_4_and_stops_generation() -> None:
    clock, a, b = pair()
    open_(a), open_(b)
    clock.now += 1.0
    for module in (a, b):
        assert module.set_fibre(False) is not None
    assert a.get_key(LINK).status is Status.NO_QKD_CONNECTION
    assert a.ready_in() is None
    clock.now += 10.0
    for module in (a, b):
        module.set_fibre(True)
    assert a.stats().generated_keys == b.stats().generated_keys == 10
    clock.now += 1.0
    assert a.stats().generated_keys == 20


def test_eavesdropper_lowers_rate_then_aborts() -> None:
    clock, a, _ = pair()
    open_(a)
    a.set_eavesdropper(0.1)
    stats = a.stats()
    assert stats.qber == pytest.approx(0.045) and stats.skr_bps == pytest.approx(2560 * 0.6)
    a.set_eavesdropper(0.5)
    clock.now += 5
    result = a.get_key(LINK)
    assert result.status is Status.NO_QKD_CONNECTION and "aborted" in result.message


def test_store_capacity_drops_old_keys_and_bounds_memory() -> None:
    clock, a, _ = pair()
    open_(a)
    clock.now += 100.0  # 1000 chunks generated, only the last 50 kept
    assert a.get_key(LINK, 10).message == "expired"
    assert a.get_key(LINK).index == 950
    assert a.stats().available_keys == 49
    for _ in range(200):
        clock.now += 1.0
        for _ in range(10):
            assert a.get_key(LINK).status is Status.SUCCESSFUL
    assert a._consumed == set()  # in-order takes leave nothing to remember


def test_eskr_subtracts_recent_consumption() -> None:
    clock, a, _ = pair()
    open_(a)
    clock.now += 20.0
    for _ in range(50):
        a.get_key(LINK)
    stats = a.stats()
    assert stats.skr_bps == 2560.0
    assert stats.eskr_bps == pytest.approx(2560.0 - 50 * 256 / 10)
    clock.now += 30.0
    assert a.stats().eskr_bps == 2560.0


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=0.5, allow_nan=False),
            st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
        ),
        max_size=60,
    )
)
def test_each_index_is_handed_out_once_against_a_simple_model(
    steps: list[tuple[float, int | None]],
) -> None:
    """The cursor-and-set bookkeeping agrees with a plain set of every index taken."""
    clock, a, _ = pair()  # capacity 50 chunks, 10 chunks per second
    open_(a)
    taken: set[int] = set()
    for delay, index in steps:
        clock.now += delay
        generated = a.history.available(clock.now, a.chunk_bits)
        floor = max(0, generated - a.capacity_chunks)
        result = a.get_key(LINK, index)
        if result.status is Status.SUCCESSFUL:
            assert result.index not in taken and floor <= result.index < generated
            if index is None:  # next: the lowest index neither taken nor expired
                assert all(i in taken for i in range(floor, result.index))
            taken.add(result.index)
        elif index is not None:
            expected = (
                "expired"
                if index < floor
                else "not yet generated"
                if index >= generated
                else "consumed"
            )
            assert result.message == expected
            assert expected != "consumed" or index in taken or index < floor
        else:
            assert all(i in taken for i in range(floor, generated))
        held = generated - floor - sum(1 for i in taken if i >= floor)
        assert a.stats().available_keys == held
