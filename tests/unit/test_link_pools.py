"""LinkKeyPool in memory (no module): parity, waiting, replay refusal, levels, no leaks."""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest

from km.link_pools import (
    NOTHING_INTACT,
    LinkEnd,
    LinkKeyPool,
    LinkKeyTimeout,
    LinkKeyUnavailable,
    PoolState,
    Position,
)

EVEN = LinkEnd("link-1", "qnode1", "a-node", "qnode2", "b-node")  # a < b: sends even
ODD = LinkEnd("link-1", "qnode2", "b-node", "qnode1", "a-node")


def filled(link: LinkEnd, count: int, max_bits: int = 256 * 100) -> LinkKeyPool:
    pool = LinkKeyPool(link, max_bits)
    for index in range(count):
        pool.put(index, bytes([index]) * 32)
    return pool


def test_parity_follows_the_smaller_qkdn_id() -> None:
    assert EVEN.sends_even and not ODD.sends_even
    assert EVEN.is_ours(4) and not EVEN.is_ours(5)
    assert ODD.is_ours(5) and not ODD.is_ours(4)


def test_take_for_sending_uses_own_parity_smallest_first() -> None:
    async def run() -> None:
        even, odd = filled(EVEN, 6), filled(ODD, 6)
        assert [(await even.take_for_sending(0.1))[0] for _ in range(3)] == [0, 2, 4]
        assert [(await odd.take_for_sending(0.1))[0] for _ in range(3)] == [1, 3, 5]
        with pytest.raises(LinkKeyTimeout, match="no link key on link qnode1–qnode2"):
            await even.take_for_sending(0.01)

    asyncio.run(run())


def test_both_ends_get_the_same_key_for_an_index() -> None:
    async def run() -> None:
        even, odd = filled(EVEN, 4), filled(ODD, 4)
        index, key = await even.take_for_sending(0.1)
        assert await odd.take_index(index, 0.1) == key

    asyncio.run(run())


def test_take_index_waits_until_the_key_is_fetched() -> None:
    async def run() -> None:
        pool = LinkKeyPool(ODD, 256 * 10)
        waiter = asyncio.create_task(pool.take_index(2, 5.0))
        await asyncio.sleep(0)
        assert pool.next_wanted() == 2  # the fetcher is told to fetch it out of order
        pool.put(2, b"\x07" * 32)
        assert await waiter == b"\x07" * 32
        assert pool.next_wanted() is None

    asyncio.run(run())


def test_replayed_or_wrong_parity_index_is_refused_at_once() -> None:
    async def run() -> None:
        pool = filled(ODD, 4)
        await pool.take_index(0, 0.1)
        with pytest.raises(LinkKeyUnavailable, match="index 0 already used"):
            await pool.take_index(0, 5.0)
        with pytest.raises(LinkKeyUnavailable, match="this end's parity"):
            await pool.take_index(1, 5.0)
        assert pool.level_bits == 3 * 256

    asyncio.run(run())


def test_take_indices_is_all_or_nothing() -> None:
    async def run() -> None:
        pool = filled(ODD, 3)  # 0, 1, 2 held; 4 not yet
        with pytest.raises(LinkKeyTimeout, match="index 4"):
            await pool.take_indices([0, 2, 4], 0.02)
        assert pool.level_bits == 3 * 256
        assert await pool.take_indices([0, 2], 0.1) == b"\x00" * 32 + b"\x02" * 32

    asyncio.run(run())


def test_take_bytes_for_sending_is_all_or_nothing() -> None:
    async def run() -> None:
        pool = filled(EVEN, 4)  # own indices 0 and 2: 64 bytes
        with pytest.raises(LinkKeyTimeout):
            await pool.take_bytes_for_sending(65, 0.02)
        assert pool.ready_for_sending() == 2
        indices, material = await pool.take_bytes_for_sending(40, 0.1)
        assert indices == [0, 2] and len(material) == 64

    asyncio.run(run())


def state_of(pool: LinkKeyPool) -> PoolState:
    return pool.state  # a call, so that mypy does not narrow the property between asserts


def test_levels_and_states_scale_with_the_maximum() -> None:
    pool = LinkKeyPool(EVEN, 10_000)
    assert state_of(pool) is PoolState.EMPTY
    for index in range(4):  # 1024 bits: >= 10 % but < 15 %
        pool.put(index, secrets.token_bytes(32))
    assert pool.level_bits == 1024 and state_of(pool) is PoolState.WARNING
    for index in range(4, 6):
        pool.put(index, secrets.token_bytes(32))
    assert state_of(pool) is PoolState.READY
    assert pool.wants_more()
    for index in range(6, 40):
        pool.put(index, secrets.token_bytes(32))
    assert not pool.wants_more()


def test_frontier_skips_what_the_module_says_is_gone() -> None:
    async def run() -> None:
        pool = LinkKeyPool(ODD, 256 * 10)
        pool.advance_frontier(10)
        pool.put(10, b"\x01" * 32)
        with pytest.raises(LinkKeyUnavailable, match="index 4 already used or skipped"):
            await pool.take_index(4, 1.0)

    asyncio.run(run())


def test_repr_hides_material() -> None:
    pool = filled(EVEN, 2)
    assert "\\x00" not in repr(pool) and "\\x01" not in repr(pool)
    assert "level_bits=512" in repr(pool)


def test_bad_requests_change_nothing() -> None:
    async def run() -> None:
        pool = filled(ODD, 4)
        with pytest.raises(LinkKeyUnavailable):
            await pool.take_indices([], 0.1)
        with pytest.raises(LinkKeyUnavailable):
            await pool.take_indices([0, 0], 0.1)
        with pytest.raises(ValueError):
            await pool.take_bytes_for_sending(0, 0.1)
        assert pool.level_bits == 4 * 256

    asyncio.run(run())
    with pytest.raises(ValueError):
        LinkKeyPool(EVEN, 0)


def test_a_restarted_peer_reports_where_matching_resumes() -> None:
    async def run() -> None:
        restarted = LinkKeyPool(ODD, 256 * 10)
        restarted.advance_frontier(40)  # the module's next unconsumed index after a restart
        restarted.put(40, b"\x01" * 32)
        restarted.put(41, b"\x02" * 32)
        with pytest.raises(LinkKeyUnavailable) as info:
            await restarted.take_index(6, 1.0)
        assert info.value.frontier == 40
        sender = filled(EVEN, 50)
        assert sender.discard_own_below(40) == 20
        assert (await sender.take_for_sending(0.1))[0] == 40

    asyncio.run(run())


def test_a_gap_the_module_expired_is_reported_with_where_matching_resumes() -> None:
    async def run() -> None:
        pool = LinkKeyPool(ODD, 256 * 20)  # the peer sends even indices
        for index in (0, 1, 2, 3):
            pool.put(index, bytes([index]) * 32)
        pool.advance_frontier(12)  # 4..11 expired at this end's module before being fetched
        pool.put(12, b"\x0c" * 32)
        with pytest.raises(LinkKeyUnavailable) as info:
            await pool.take_index(6, 1.0)
        assert info.value.frontier == 12
        assert await pool.take_index(2, 0.1) == b"\x02" * 32  # older held keys still match
        pool.mark_gone(20)
        with pytest.raises(LinkKeyUnavailable, match="index 20 already used or skipped"):
            await pool.take_index(20, 1.0)

    asyncio.run(run())


def test_each_parity_has_half_the_pool() -> None:
    pool = LinkKeyPool(EVEN, 256 * 4)  # two keys per parity
    assert pool.next_in_order() == 0
    pool.put(1, b"\x01" * 32)
    pool.put(3, b"\x03" * 32)  # the peer's half is full: fetch only this end's indices now
    assert pool.next_in_order() == 0
    pool.put(0, b"\x00" * 32)
    assert pool.next_in_order() == 2
    pool.put(2, b"\x02" * 32)
    assert pool.next_in_order() is None and not pool.wants_more()
    assert pool.level_bits == 256 * 4 and pool.frontier == 4


def test_keys_the_peer_cannot_match_are_neither_kept_nor_fetched() -> None:
    pool = LinkKeyPool(EVEN, 256 * 100)
    for index in range(6):
        pool.put(index, bytes([index]) * 32)
    assert pool.discard_own_below(20) == 3  # 0, 2, 4
    assert pool.ready_for_sending() == 0
    assert pool.next_in_order() == 7  # the peer's next index; this end's resume at 20
    pool.put(7, b"\x07" * 32)
    pool.put(9, b"\x09" * 32)
    assert pool.next_in_order() == 11
    for index in range(11, 20, 2):
        pool.put(index, b"x" * 32)
    assert pool.next_in_order() == 20


def _held(pool: LinkKeyPool, indices: range) -> None:
    for index in indices:
        pool.put(index, bytes([index % 256]) * 32)


def test_a_restarted_km_and_its_running_peer_agree_in_one_resync() -> None:
    """Old A fetched evens up to 60 and odds up to 30 (its odd half was full); so did B. The
    new A finds its module's oldest unconsumed key at 31: evens 32..58 were handed to old A
    (gone for the new one, though B holds them). After one exchange both stand at (60, 31)."""

    async def run() -> None:
        running_b = LinkKeyPool(ODD, 256 * 1000)  # synced with old A long ago
        _held(running_b, range(0, 60, 2))
        _held(running_b, range(1, 31, 2))
        for index in range(0, 40, 2):  # old A sent these; B used them
            await running_b.take_index(index, 0.1)
        for _ in range(10):  # B sent 1..19; old A used them
            await running_b.take_for_sending(0.1)
        new_a = LinkKeyPool(EVEN, 256 * 1000, sync_before_sending=True)
        new_a.advance_frontier(31)
        with pytest.raises(LinkKeyTimeout, match="not yet synchronised"):
            await new_a.take_for_sending(0.01)
        answer = running_b.resync(new_a.position)  # B answers A's SyncLink
        mine = new_a.resync(answer.agreed)  # A applies the answer
        assert answer.agreed == mine.agreed == Position(60, 31)
        assert (answer.dropped_peer, answer.dropped_own) == (10, 5)  # evens 40..58, odds 21..29
        assert (mine.dropped_own, mine.dropped_peer, mine.skipped) == (0, 0, 14)
        # Whatever either sends from now on, the other can match.
        _held(new_a, range(60, 70))
        _held(running_b, range(31, 70, 2))
        _held(running_b, range(60, 70, 2))
        index, key = await new_a.take_for_sending(0.1)
        assert index == 60 and await running_b.take_index(index, 0.1) == key
        index, key = await running_b.take_for_sending(0.1)
        assert index == 31  # A fetches 31 and up: its module has them
        _held(new_a, range(31, 60, 2))
        assert await new_a.take_index(index, 0.1) == key

    asyncio.run(run())


def test_both_orders_of_the_exchange_agree() -> None:
    a, b = filled(EVEN, 10), filled(ODD, 30)
    a2, b2 = filled(EVEN, 10), filled(ODD, 30)
    answered = b.resync(a.position).agreed
    assert a.resync(answered).agreed == answered
    answered2 = a2.resync(b2.position).agreed
    assert b2.resync(answered2).agreed == answered2 == answered == Position(30, 31)
    assert a.level_bits == 0 and b.level_bits == 0  # everything held lay below


def test_a_resync_at_equal_positions_changes_nothing_but_the_held_keys_below() -> None:
    pool = LinkKeyPool(EVEN, 256 * 100)
    pool.advance_frontier(8)
    outcome = pool.resync(Position(8, 9))
    assert outcome.agreed == Position(8, 9) and outcome.skipped == 0
    assert (outcome.dropped_own, outcome.dropped_peer) == (0, 0)
    assert "discarded 0 own and 0 peer keys" in outcome.describe()


def test_a_position_from_the_wire_is_rounded_up_to_its_parity() -> None:
    assert Position.of(7, 8) == Position(8, 9)
    assert Position.of(0, 0) == Position(0, 1)
    with pytest.raises(ValueError, match="not a link-key position"):
        Position(1, 1)


def test_indices_the_module_repeats_are_logged_once_not_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = filled(EVEN, 4)
    with caplog.at_level(logging.WARNING, logger="km.link_pools"):
        results = [pool.put(index % 4, b"\x00" * 32) for index in range(100)]
    assert not any(results)
    lines = [r for r in caplog.records if "not used" in r.getMessage()]
    assert len(lines) == 1 and "(1 such keys so far)" in lines[0].getMessage()


def test_a_batch_takes_both_parities_side_by_side_up_to_each_halfs_room() -> None:
    pool = LinkKeyPool(EVEN, 256 * 8)  # 4 keys per parity half
    assert pool.next_batch(100) == list(range(8))
    assert pool.next_batch(5) == [0, 1, 2, 3, 4]


def test_a_pool_that_must_sync_fetches_nothing_in_order_before_the_resync() -> None:
    async def run() -> None:
        pool = LinkKeyPool(EVEN, 256 * 8, sync_before_sending=True)
        assert pool.next_batch(100) == [] and pool.next_in_order() is None
        pool.resync(Position(10, 3))  # the peer stood further on the even stream
        assert pool.next_batch(100) == [3, 5, 7, 9, 10, 12, 14, 16]

    asyncio.run(run())


def test_a_full_half_is_left_alone_until_it_falls_below_its_low_water_mark() -> None:
    async def run() -> None:
        pool = LinkKeyPool(EVEN, 256 * 8)
        for index in range(8):
            pool.put(index, secrets.token_bytes(32))
        assert pool.next_batch(100) == [] and not pool.filling()
        await pool.take_for_sending(1.0)  # 3 of 4 own keys left: above low water (2)
        await pool.take_for_sending(1.0)  # 2 left: not below
        assert pool.next_batch(100) == []
        await pool.take_for_sending(1.0)  # 1 left: below, refill the even half to 4
        assert pool.next_batch(100) == [8, 10, 12]

    asyncio.run(run())


def test_a_caller_that_fetched_during_the_exchange_keeps_what_the_answerer_keeps() -> None:
    """A sends (20, 21); while the call is out it fetches 20..39. B, at (30, 31), answers
    (30, 31): A must drop nothing at or above it, or B would send with 31 and A refuse it."""

    async def run() -> None:
        caller, answerer = filled(EVEN, 20), filled(ODD, 20)
        sent = caller.position
        _held(caller, range(20, 40))  # fetched while the exchange was in flight
        _held(answerer, range(20, 30))
        answer = answerer.resync(sent).agreed
        outcome = caller.resync(answer, answered=True)
        assert outcome.agreed == answer == Position(30, 31)
        assert (outcome.dropped_own, outcome.dropped_peer) == (15, 15)  # 0..29 only
        assert caller.position == Position(40, 41)  # its cursor stays where it was
        _held(answerer, range(30, 40))
        index, key = await answerer.take_for_sending(0.1)
        assert index == 31 and await caller.take_index(index, 0.1) == key
        index, key = await caller.take_for_sending(0.1)
        assert index == 30 and await answerer.take_index(index, 0.1) == key

    asyncio.run(run())


def test_a_position_that_jumps_after_the_first_agreement_asks_for_a_resync() -> None:
    pool = LinkKeyPool(EVEN, 256 * 100, sync_before_sending=True)
    pool.advance_frontier(4)  # locating the stream before the first agreement is no jump
    assert not pool.needs_resync() and pool.jumps == 0
    pool.resync(Position(4, 5))
    pool.advance_frontier(4)  # the same place: nothing moved
    assert not pool.needs_resync()
    pool.advance_frontier(40)  # a lost batch: the module's oldest key lies further on
    assert pool.needs_resync() and pool.jumps == 1
    seen = pool.jumps
    pool.mark_gone(41)  # another jump while the exchange is in flight
    pool.resync(Position(40, 41), answered=True, jumps_seen=seen)
    assert pool.needs_resync()  # the peer has not heard of the second jump yet
    pool.resync(Position(40, 43), answered=True, jumps_seen=pool.jumps)
    assert not pool.needs_resync()


def _agreed_at(link: LinkEnd, start: int, held: range) -> LinkKeyPool:
    """A pool that agreed with its peer at (start, start + 1), then fetched `held`."""
    pool = LinkKeyPool(link, 256 * 1000, sync_before_sending=True)
    pool.advance_frontier(start)
    pool.resync(Position(start, start + 1))
    _held(pool, held)
    return pool


def test_a_km_that_never_agreed_vouches_for_no_key_below_its_position() -> None:
    pool = LinkKeyPool(EVEN, 256 * 100, sync_before_sending=True)
    pool.advance_frontier(40)
    assert pool.intact == NOTHING_INTACT == Position(0, 1)
    pool.resync(Position(40, 41))
    assert pool.intact == Position(40, 41)  # nothing lost since: its whole position


def test_a_resync_after_a_lost_batch_drops_only_from_the_first_lost_index() -> None:
    """A and B agreed at (0, 1) and both fetched 0..39. A's next batch (40..71) was lost; B
    fetched 40..59 meanwhile. One exchange: both drop B's 40..59 and skip to (72, 73), and
    both keep 0..39, which either may still send with."""

    async def run() -> None:
        a, b = _agreed_at(EVEN, 0, range(40)), _agreed_at(ODD, 0, range(60))
        a.advance_frontier(72)  # the module's oldest key lies past the lost batch
        assert a.needs_resync() and a.intact == Position(40, 41)
        sent, intact, jumps = a.for_exchange()
        answer = b.resync(sent, peer_intact=intact)
        assert (answer.agreed, answer.kept_below) == (Position(72, 73), Position(40, 41))
        assert (answer.dropped_own, answer.dropped_peer, answer.skipped) == (10, 10, 12)
        mine = a.resync(
            answer.agreed, peer_intact=answer.kept_below, answered=True, jumps_seen=jumps
        )
        assert (mine.dropped_own, mine.dropped_peer) == (0, 0)
        assert not a.needs_resync() and a.held() == b.held() == frozenset(range(40))
        assert a.intact == b.intact == Position(72, 73)
        index, key = await a.take_for_sending(0.1)
        assert index == 0 and await b.take_index(index, 0.1) == key
        index, key = await b.take_for_sending(0.1)
        assert index == 1 and await a.take_index(index, 0.1) == key

    asyncio.run(run())


def test_the_answerer_keeps_only_below_the_first_loss_of_either_end() -> None:
    a, b = _agreed_at(EVEN, 0, range(40)), _agreed_at(ODD, 0, range(40))
    b.mark_gone(41)  # B lost one odd index it had not fetched yet...
    a.advance_frontier(50)  # ...and A lost 40..49
    sent, intact, _ = a.for_exchange()
    answer = b.resync(sent, peer_intact=intact)
    assert answer.kept_below == Position(40, 41) and answer.agreed == Position(50, 51)
    assert b.intact == Position(50, 51) and not b.needs_resync()


def test_a_loss_while_the_exchange_is_out_is_left_for_the_next_exchange() -> None:
    a, b = _agreed_at(EVEN, 0, range(40)), _agreed_at(ODD, 0, range(40))
    a.advance_frontier(50)
    sent, intact, jumps = a.for_exchange()
    answer = b.resync(sent, peer_intact=intact)
    _held(a, range(50, 80))
    a.mark_gone(81)  # lost while the call was out: B may hold 81 one day
    a.resync(answer.agreed, peer_intact=answer.kept_below, answered=True, jumps_seen=jumps)
    assert a.needs_resync() and a.intact == Position(80, 81)
    assert a.held() == frozenset(range(40)) | frozenset(range(50, 80))


def test_an_answer_without_an_intact_bound_drops_every_held_key_below_it() -> None:
    """An older KM's answer carries no bound (0): the rule of before, nothing kept below."""
    a = _agreed_at(EVEN, 0, range(40))
    outcome = a.resync(Position(40, 41), answered=True)
    assert outcome.kept_below == NOTHING_INTACT and a.held() == frozenset()


def test_a_refused_peer_index_makes_the_next_resync_drop_from_it() -> None:
    """B dropped A's stale indices below 58 when it received 90 (no loss recorded); when A
    then sends with 0, B refuses it, and the resync A asks for drops every held even key
    from 0 up at both ends, so A's retry uses an index B can match."""

    async def run() -> None:
        a, b = _agreed_at(EVEN, 0, range(100)), _agreed_at(ODD, 0, range(100))
        await b.take_index(90, 0.1)  # A's hop with 90 overtook the others
        with pytest.raises(LinkKeyUnavailable, match="already used or skipped"):
            await b.take_index(0, 0.1)
        sent, intact, jumps = a.for_exchange()
        answer = b.resync(sent, peer_intact=intact)
        a.resync(answer.agreed, peer_intact=answer.kept_below, answered=True, jumps_seen=jumps)
        assert answer.kept_below == Position(0, 101)  # the odd stream lost nothing
        assert a.held() == b.held() == frozenset(range(1, 100, 2))

    asyncio.run(run())
