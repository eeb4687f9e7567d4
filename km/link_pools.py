"""Link-key pools: the key manager's supply of QKD link keys, one pool per PHYS link.

Each pool is filled in the background from the node's QKD module over the module side of
ETSI 004 (`KeyDelivery`, key_stream_id = qkdl_id), never inside a request. Both KMs of a link
fetch every index (each needs the other's), and by the parity rule of docs/architecture.md
the KM with the smaller qkdn_id sends with even indices, the other with odd ones.

`LinkKeyPool` is the in-memory state (no I/O); `_PoolFetcher` is the loop that talks to the
module; `LinkKeyPools` composes them for one node. Link key material is never logged, put in
an exception or shown by repr(). The two KMs of a link agree on where their streams stand by
the resynchronisation rule `LinkKeyPool.resync` (the protocol is in docs/relay.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from common.roles import TlsMaterial, channel_credentials
from km.config import KmConfig

log = logging.getLogger(__name__)

# ETSI 004 status codes used by the module side.
STATUS_OK = 0
STATUS_PEER_NOT_CONNECTED = 1
STATUS_INSUFFICIENT_KEY = 2
STATUS_GET_KEY_PEER_NOT_CONNECTED = 3
STATUS_NO_QKD_CONNECTION = 4

# QKDNetSim's thresholds at 1 Mbit: ready above 150 kbit, empty below 100 kbit.
READY_FRACTION = 0.15
EMPTY_FRACTION = 0.10
# Refill with hysteresis, per parity half: a half that reached its high-water mark (full) is
# left alone until it falls below this fraction of its size; then filled up to full again.
LOW_WATER_FRACTION = 0.5
# Keys asked of the module in one GetKeyBatch at most, and the bits a key is assumed to hold
# when turning the room in a pool into a number of keys (the modules deliver 256-bit keys).
BATCH_KEYS = 128
# A batch lost to a deadline was consumed at the module all the same: wait long for it.
BATCH_RPC_TIMEOUT_S = 10.0
ASSUMED_KEY_BITS = 256
# After a batch the module could not fill (it had generated no more), the fetcher waits this
# long before asking again, unless a consumer waits for a key: keys arrive in few large calls.
REFILL_PAUSE_S = 4.0
# The peer sends with its smallest index first, so a peer index this far below one it just
# used was skipped or lost in flight (the margin allows for hops overtaking each other).
STALE_WINDOW = 32
# How long the module may hold a GetKey for a key not generated yet (ETSI 004 QoS timeout).
LONG_POLL_MS = 250
CLOSE_TIMEOUT_S = 0.5  # for CLOSE of the module streams when the KM stops
# Trailing metadata in which the module explains a status, and the explanations that mean
# an index will never be delivered at this end.
MESSAGE_METADATA = "qkdsdn-message"
GONE_MESSAGES = frozenset({"consumed", "expired", "negative index"})
PROBE_AFTER_MISSES = 8
# A batch that found keys expired at the module fetched more slowly than the module's store
# turns over: the pool resumes this many indices past the module's oldest key rather than at
# the expiry edge, where the next batch would find keys expired again (and each time the peer
# must resynchronise); doubled at each expiry met again while the pool fills (up to the
# limit), halved when the first batch past it found no key generated yet, forgotten once the
# pool is full.
EXPIRY_LEAD = BATCH_KEYS
EXPIRY_LEAD_LIMIT = 1 << 16
# At most one "module handed out an index this end cannot use" line per link this often.
IGNORED_LOG_INTERVAL_S = 30.0


# gRPC's default reconnect backoff grows to 120 s: a restarted agent (or peer KM) would stay
# unseen for minutes. Cap it at the same bound as our own retry loops.
FAST_RECONNECT = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class PoolState(enum.Enum):
    READY = "ready"
    WARNING = "warning"
    EMPTY = "empty"


class LinkKeyError(Exception):
    """A link key could not be had. The message names the link and index, never material."""


class LinkKeyTimeout(LinkKeyError):
    pass


class LinkKeyNotSynced(LinkKeyTimeout):
    """This end has not agreed with the peer KM where the link's key stream stands yet."""


class LinkKeyUnavailable(LinkKeyError):
    """The index was used already, skipped, or belongs to the wrong end (a replay or a bug).

    `frontier` is set when the index lies below this end's frontier: then it is the next peer
    index above it that this end can still match; the peer's keys in between are of no use
    (this end's module expired them before they were fetched, or this KM restarted and its
    module had handed them to the previous process).
    """

    def __init__(self, message: str, frontier: int | None = None) -> None:
        super().__init__(message)
        self.frontier = frontier


@dataclass(frozen=True)
class Position:
    """Where one end stands on a link's key stream, per parity: every index of that parity
    below `even` (resp. `odd`) was fetched, used or skipped at this end."""

    even: int
    odd: int

    def __post_init__(self) -> None:
        if self.even < 0 or self.odd < 0 or self.even % 2 != 0 or self.odd % 2 != 1:
            raise ValueError(f"not a link-key position: even={self.even}, odd={self.odd}")

    def at_least(self, other: Position) -> Position:
        return Position(max(self.even, other.even), max(self.odd, other.odd))

    @staticmethod
    def of(even: int, odd: int) -> Position:
        """The position from two untrusted numbers, rounded up to the right parity."""
        return Position(even + even % 2, odd + (1 - odd % 2))


# Before the first agreement an end vouches for nothing below its position (a restarted KM:
# its predecessor's pool is gone), so the first resync drops every held key below it.
NOTHING_INTACT = Position(0, 1)


@dataclass(frozen=True)
class ResyncOutcome:
    """What one end did in a resynchronisation: counts and indices, never material."""

    before: Position
    agreed: Position
    dropped_own: int  # held keys of this end's parity discarded
    dropped_peer: int  # held keys of the peer's parity discarded
    skipped: int  # indices never fetched that this end will no longer fetch
    # Held keys below this (per parity) were kept: both ends hold or used them.
    kept_below: Position = NOTHING_INTACT

    def describe(self) -> str:
        return (
            f"at even {self.agreed.even}, odd {self.agreed.odd} (was {self.before.even},"
            f" {self.before.odd}); kept held keys below even {self.kept_below.even}, odd"
            f" {self.kept_below.odd}; discarded {self.dropped_own} own and {self.dropped_peer}"
            f" peer keys, skipped {self.skipped} unfetched indices"
        )


@dataclass(frozen=True)
class LinkEnd:
    """This node's end of one PHYS link."""

    qkdl_id: str
    local_node: str
    local_qkdn_id: str
    peer_node: str
    peer_qkdn_id: str

    @property
    def sends_even(self) -> bool:
        return self.local_qkdn_id < self.peer_qkdn_id

    def is_ours(self, index: int) -> bool:
        return (index % 2 == 0) == self.sends_even

    def label(self) -> str:
        return f"link {self.local_node}–{self.peer_node} ({self.qkdl_id})"


class LinkKeyPool:
    """Fetched link keys of one PHYS link, by index, until used. Single event loop only.

    Each parity (this end's, the peer's) has its own cursor and half of the pool: with one-way
    traffic the peer's keys, which only the peer uses, cannot crowd out this end's.
    """

    def __init__(self, link: LinkEnd, max_bits: int, *, sync_before_sending: bool = False) -> None:
        """`sync_before_sending`: hold every send until `resync` ran once (a KM that runs
        the resynchronisation protocol with its peer); otherwise a pool sends at once."""
        if max_bits <= 0:
            raise ValueError("a link-key pool needs a positive maximum size")
        self.link = link
        self.max_bits = max_bits
        self._keys: dict[int, bytes] = {}
        self._own: list[int] = []  # min-heap of held indices of this end's parity
        self._peer: list[int] = []  # min-heap of peer indices held (may hold taken ones)
        self._bits = [0, 0]  # held bits by parity (index % 2)
        # Per parity, the next index to fetch in order: every index of that parity below it
        # was fetched, used or skipped at this end.
        self._cursor = [0, 1]
        self._fetched_ahead: set[int] = set()  # fetched out of order, at or above its cursor
        self._wanted: set[int] = set()  # peer indices a take_index waits for, not fetched yet
        self._changed = asyncio.Event()
        self._need = asyncio.Event()
        self._need.set()
        self._filling = [True, True]  # per parity: below the low-water mark since last full
        self._urgent = asyncio.Event()  # a consumer waits for a key the pool does not hold
        self.link_up = False
        # The module told where its stream starts for this end (its oldest unconsumed key).
        self.located = False
        self.synced = not sync_before_sending
        self._ignored = 0  # indices the module handed out that this end could not use
        self._ignored_logged_at = -IGNORED_LOG_INTERVAL_S
        # Set when this end's position jumped after it had agreed with the peer (a lost batch,
        # a module floor that moved, indices an earlier module process consumed): the peer
        # holds keys this end can no longer match, so the two must resynchronise at once.
        self._jumped = asyncio.Event()
        self.jumps = 0  # how many times the position jumped that way (a count, for reports)
        # Per parity, the first index this end lost (will never hold, though the peer may)
        # since it last agreed with the peer; None: none lost.
        self._lost_from: list[int | None] = [None, None]
        # Per parity, the first index lost since the caller's side read the pool for an
        # exchange (`for_exchange`), None if none.
        self._lost_since_read: list[int | None] = [None, None]

    def __repr__(self) -> str:
        return (
            f"LinkKeyPool({self.link.label()}, level_bits={self.level_bits},"
            f" state={self.state.value}, frontier={self.frontier})"
        )

    @property
    def level_bits(self) -> int:
        return self._bits[0] + self._bits[1]

    @property
    def state(self) -> PoolState:
        if self.level_bits >= READY_FRACTION * self.max_bits:
            return PoolState.READY
        if self.level_bits < EMPTY_FRACTION * self.max_bits:
            return PoolState.EMPTY
        return PoolState.WARNING

    @property
    def frontier(self) -> int:
        """Every index below it was fetched, used or skipped at this end."""
        return min(self._cursor)

    @property
    def position(self) -> Position:
        return Position(self._cursor[0], self._cursor[1])

    @property
    def intact(self) -> Position:
        """Below it (per parity) this end lost nothing since it last agreed with the peer:
        every index there it fetched is held or was used. Before the first agreement it
        vouches for nothing (`NOTHING_INTACT`)."""
        if not self.synced:
            return NOTHING_INTACT
        bounds = [
            self._cursor[p] if lost is None else min(lost, self._cursor[p])
            for p, lost in enumerate(self._lost_from)
        ]
        return Position(bounds[0], bounds[1])

    def for_exchange(self) -> tuple[Position, Position, int]:
        """What a caller of SyncLink sends: position, intact bound, and the jump count to
        give back to `resync` with the answer."""
        self._lost_since_read = [None, None]
        return self.position, self.intact, self.jumps

    def held(self) -> frozenset[int]:
        """The indices whose keys this end holds now (indices only, never material)."""
        return frozenset(self._keys)

    def ready_for_sending(self) -> int:
        """Indices of this end's parity held now."""
        return len(self._own)

    # ---------------------------------------------------------------- consumers

    async def take_for_sending(self, timeout: float) -> tuple[int, bytes]:
        """The smallest held index of this end's parity, and its key (removed from the pool)."""
        indices, material = await self.take_bytes_for_sending(1, timeout)
        return indices[0], material

    async def take_bytes_for_sending(self, nbytes: int, timeout: float) -> tuple[list[int], bytes]:
        """At least `nbytes` of link key from as few indices of this end's parity as needed.

        All or nothing: on timeout no index is consumed.
        """
        if nbytes <= 0:
            raise ValueError("ask for a positive number of link-key bytes")
        deadline = time.monotonic() + timeout
        while not self.synced:
            try:
                await self._wait_change(deadline, f"no link key on {self.link.label()}")
            except LinkKeyTimeout:
                raise LinkKeyNotSynced(
                    f"{self.link.label()}: not yet synchronised with the peer key manager"
                ) from None
        while True:
            chosen = self._pop_ours(nbytes)
            if chosen is not None:
                return chosen, b"".join(self._remove(i) for i in chosen)
            # Too few own keys, whatever the marks say: fill this end's half now.
            self._filling[0 if self.link.sends_even else 1] = True
            self._need.set()
            self._urgent.set()
            await self._wait_change(deadline, f"no link key on {self.link.label()}")

    async def take_index(self, index: int, timeout: float) -> bytes:
        """The key at the index the peer chose (waits until fetched); removed from the pool."""
        return await self.take_indices([index], timeout)

    async def take_indices(self, indices: Sequence[int], timeout: float) -> bytes:
        """The keys at the peer's `indices`, concatenated; all or nothing."""
        if not indices or len(set(indices)) != len(indices):
            raise LinkKeyUnavailable(f"{self.link.label()}: empty or repeated link-key indices")
        for index in indices:
            self._check_peer_index(index)
        deadline = time.monotonic() + timeout
        try:
            while True:
                missing = [i for i in indices if i not in self._keys]
                for index in missing:
                    self._check_peer_index(index)
                if not missing:
                    break
                self._wanted.update(missing)
                self._need.set()
                self._urgent.set()
                await self._wait_change(
                    deadline, f"no link key at index {missing[0]} on {self.link.label()}"
                )
        finally:
            self._wanted.difference_update(indices)
        material = b"".join(self._remove(i) for i in indices)
        self._drop_stale(max(indices))
        return material

    # ---------------------------------------------------------------- the fetcher's side

    def next_wanted(self) -> int | None:
        """A peer index someone waits for and that was not fetched yet."""
        ahead = [i for i in self._wanted if self._fetchable(i)]
        return min(ahead) if ahead else None

    def next_in_order(self) -> int | None:
        """The next index to fetch in order, of a parity whose half of the pool is filling.

        None before the pool is synchronised with the peer KM (when it must be): the
        agreed position may lie ahead, and keys fetched below it would be dropped."""
        if not self.synced:
            return None
        room = [self._cursor[p] for p in self._filling_parities()]
        return min(room) if room else None

    def next_batch(self, limit: int) -> list[int]:
        """Up to `limit` indices to fetch next, ascending: every wanted one, then in order
        those of each filling parity half (both parities side by side), as many as its room
        holds (at least one). No index in order before the pool is synchronised."""
        chosen = {i for i in self._wanted if self._fetchable(i)}
        if not self.synced:
            return sorted(chosen)[:limit]
        rooms = {
            p: max(1, int(self.max_bits / 2 - self._bits[p]) // ASSUMED_KEY_BITS)
            for p in self._filling_parities()
        }
        index = min((self._cursor[p] for p in rooms), default=0)
        while rooms and len(chosen) < limit:
            parity = index % 2
            if (
                parity in rooms
                and index >= self._cursor[parity]
                and index not in self._fetched_ahead
                and index not in chosen
            ):
                chosen.add(index)
                rooms[parity] -= 1
                if rooms[parity] == 0:
                    del rooms[parity]
            index += 1
        return sorted(chosen)[:limit]

    def is_wanted(self, index: int) -> bool:
        return index in self._wanted

    async def wait_urgent(self, timeout: float) -> None:
        """Returns after `timeout` seconds, or as soon as a consumer waits for a key."""
        if self.next_wanted() is not None or not self._own:
            return
        self._urgent.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._urgent.wait()

    def filling(self) -> bool:
        """Some half of the pool is below its high-water mark after falling below low water."""
        return bool(self._filling_parities())

    def wants_more(self) -> bool:
        return self.next_in_order() is not None or self.next_wanted() is not None

    async def wait_for_need(self) -> None:
        while not self.wants_more():
            self._need.clear()
            await self._need.wait()

    def put(self, index: int, material: bytes) -> bool:
        """A key the module handed out at `index` (consumed at the module from now on).

        False when this end fetched, used or skipped `index` already: the key is not kept
        (it may protect nothing twice). Logged at most once per IGNORED_LOG_INTERVAL_S."""
        if index < 0 or index in self._keys or not self._fetchable(index):
            self._ignored += 1
            now = time.monotonic()
            if now - self._ignored_logged_at >= IGNORED_LOG_INTERVAL_S:
                log.warning(
                    "%s: module handed out index %d, which this end fetched, used or skipped"
                    " already; not used (%d such keys so far)",
                    self.link.label(),
                    index,
                    self._ignored,
                )
                self._ignored_logged_at = now
            return False
        parity = index % 2
        self._keys[index] = material
        self._bits[parity] += len(material) * 8
        heapq.heappush(self._own if self.link.is_ours(index) else self._peer, index)
        if index == self._cursor[parity]:
            self._advance_cursor(parity, index + 2)
        else:
            self._fetched_ahead.add(index)
        self._notify()
        return True

    def mark_gone(self, index: int) -> None:
        """The module will never deliver `index` at this end (consumed or expired): after
        the first agreement with the peer, a jump (the peer may hold that key)."""
        if self._fetchable(index):
            self._lost(index % 2, index)
            if index == self._cursor[index % 2]:
                self._advance_cursor(index % 2, index + 2)
            else:
                self._fetched_ahead.add(index)
            self._wanted.discard(index)
            self._position_jumped()
            self._notify()

    def advance_frontier(self, index: int) -> None:
        """The module's oldest unconsumed index is `index`: lower ones are gone at this end.

        After the first agreement with the peer, a move is a jump (see `wait_jump`)."""
        before = self.position
        for parity in (0, 1):
            if self._cursor[parity] < index:
                self._lost(parity, self._cursor[parity])
            self._skip_to(parity, index)
        self.located = True
        if self.position != before:
            self._position_jumped()
        self._notify()

    def needs_resync(self) -> bool:
        """This end's position jumped since the last resynchronisation."""
        return self._jumped.is_set()

    async def wait_jump(self) -> None:
        """Returns once this end's position jumped (after the first agreement with the peer)
        since the last resynchronisation, which clears it."""
        await self._jumped.wait()

    def _lost(self, parity: int, index: int) -> None:
        """This end will never hold `index` (of `parity`) nor any unfetched one above it that
        it skips now: the peer must not keep its copies."""
        first = self._lost_from[parity]
        self._lost_from[parity] = index if first is None else min(first, index)
        since = self._lost_since_read[parity]
        self._lost_since_read[parity] = index if since is None else min(since, index)

    def _position_jumped(self) -> None:
        if self.synced:  # before the first agreement, the start-up exchange covers it
            self.jumps += 1
            self._jumped.set()

    def resync(
        self,
        peer: Position,
        *,
        peer_intact: Position = NOTHING_INTACT,
        answered: bool = False,
        jumps_seen: int | None = None,
    ) -> ResyncOutcome:
        """The resynchronisation rule. The answerer applies it with the caller's position
        and intact bound: the agreed position is the larger of the two positions, the kept
        bound the smaller of the two intact bounds (per parity); it drops the keys it holds
        from the kept bound up to the agreed position (one end lost them, or the other never
        fetched them), keeps those below (both ends hold or used them), fetches nothing below
        the agreed position any more, and answers both. The caller applies the answer
        (`answered`: `peer` is the agreed position, `peer_intact` the kept bound) as it is:
        it drops exactly that range, even if its own cursor moved on during the exchange (the
        keys it fetched meanwhile are held at the answerer too: dropping them here alone made
        the ends drift apart on a fast link).

        Returns what this end discarded (counts only). Marks the pool synced, and its jumps
        known to the peer unless it jumped again since `jumps_seen` (the caller's count when
        it read the position it sent)."""
        before = self.position
        if answered:
            agreed, keep = peer, peer_intact
        else:
            agreed = before.at_least(peer)
            mine = self.intact
            keep = Position(min(mine.even, peer_intact.even), min(mine.odd, peer_intact.odd))
        keep = Position(min(keep.even, agreed.even), min(keep.odd, agreed.odd))
        dropped = [0, 0]  # by parity
        for heap in (self._own, self._peer):
            kept: list[int] = []
            for index in heap:
                low, limit = (keep.even, agreed.even) if index % 2 == 0 else (keep.odd, agreed.odd)
                if index < low or index >= limit:
                    kept.append(index)
                elif index in self._keys:
                    self._remove(index)
                    dropped[index % 2] += 1
            heapq.heapify(kept)
            heap[:] = kept
        skipped = 0
        for parity, target in ((0, agreed.even), (1, agreed.odd)):
            ahead = sum(1 for i in self._fetched_ahead if i % 2 == parity and i < target)
            skipped += max(0, (target - self._cursor[parity]) // 2 - ahead)
            self._skip_to(parity, target)
        self._wanted = {i for i in self._wanted if self._fetchable(i)}
        self.synced = True
        if jumps_seen is None or jumps_seen == self.jumps:
            self._jumped.clear()  # the peer knows this end's position now
            self._lost_from = [None, None]  # the peer knows every loss now
        else:  # lost again during the exchange: what lies below the agreement is settled
            for parity, target in ((0, agreed.even), (1, agreed.odd)):
                since = self._lost_since_read[parity]
                self._lost_from[parity] = None if since is None else max(target, since)
        self._need.set()  # fetching in order may begin
        self._notify()
        own = 0 if self.link.sends_even else 1
        return ResyncOutcome(before, agreed, dropped[own], dropped[1 - own], skipped, keep)

    def discard_own_below(self, frontier: int) -> int:
        """The peer can no longer match this end's indices below `frontier`: drops the held
        ones and fetches none of them any more; returns how many keys were dropped."""
        dropped = 0
        while self._own and self._own[0] < frontier:
            self._remove(heapq.heappop(self._own))
            dropped += 1
        self._skip_to(0 if self.link.sends_even else 1, frontier)
        self._notify()
        return dropped

    async def wait_change(self, timeout: float) -> None:
        """Returns at the pool's next change, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def set_link_up(self, up: bool) -> None:
        self.link_up = up
        self._notify()

    # ---------------------------------------------------------------- internals

    def _filling_parities(self) -> list[int]:
        """The parities whose half is to be filled now (hysteresis between the marks)."""
        half = self.max_bits / 2
        for parity in (0, 1):
            if self._bits[parity] >= half:
                self._filling[parity] = False
            elif self._bits[parity] < LOW_WATER_FRACTION * half:
                self._filling[parity] = True
        return [p for p in (0, 1) if self._filling[p]]

    def _fetchable(self, index: int) -> bool:
        """Not fetched, used or skipped yet at this end."""
        return index >= self._cursor[index % 2] and index not in self._fetched_ahead

    def _skip_to(self, parity: int, index: int) -> None:
        """Fetch nothing of `parity` below `index` any more."""
        start = index if index % 2 == parity else index + 1
        if start > self._cursor[parity]:
            self._fetched_ahead = {i for i in self._fetched_ahead if i % 2 != parity or i >= start}
            self._advance_cursor(parity, start)

    def _advance_cursor(self, parity: int, to: int) -> None:
        while to in self._fetched_ahead:
            self._fetched_ahead.discard(to)
            to += 2
        self._cursor[parity] = to

    def _pop_ours(self, nbytes: int) -> list[int] | None:
        """Pops the smallest own indices holding `nbytes`, or pops none and returns None."""
        chosen: list[int] = []
        have = 0
        while self._own and have < nbytes:
            index = heapq.heappop(self._own)
            chosen.append(index)
            have += len(self._keys[index])
        if have >= nbytes:
            return chosen
        for index in chosen:
            heapq.heappush(self._own, index)
        return None

    def _check_peer_index(self, index: int) -> None:
        if index < 0:
            raise LinkKeyUnavailable(f"{self.link.label()}: negative link-key index {index}")
        if self.link.is_ours(index):
            raise LinkKeyUnavailable(
                f"{self.link.label()}: index {index} has this end's parity; the peer may not use it"
            )
        if index in self._keys or self._fetchable(index):
            return
        # The sender holds keys this end cannot match from here on (it will resynchronise):
        # the exchange must not vouch for them, whatever made this end lose them.
        self._lost(index % 2, index)
        raise LinkKeyUnavailable(
            f"{self.link.label()}: link-key index {index} already used or skipped (replay?)",
            frontier=self._next_matchable_after(index),
        )

    def _next_matchable_after(self, index: int) -> int:
        """The smallest peer index above `index` held here or still fetchable."""
        candidate = max(index + 2, self._cursor[index % 2])
        while candidate in self._fetched_ahead:  # bounded: the set is finite
            candidate += 2
        held = [i for i in self._peer if i > index and i in self._keys]
        return min([*held, candidate])

    def _remove(self, index: int) -> bytes:
        material = self._keys.pop(index)
        self._bits[index % 2] -= len(material) * 8
        self._need.set()
        return material

    def _drop_stale(self, used: int) -> None:
        while self._peer and self._peer[0] < used - STALE_WINDOW:
            index = heapq.heappop(self._peer)
            if index in self._keys:
                self._remove(index)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, deadline: float, what: str) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LinkKeyTimeout(f"{what} (link {'up' if self.link_up else 'down'})")
        with contextlib.suppress(TimeoutError):  # not wait_for: see Associations
            async with asyncio.timeout(remaining):
                await self._changed.wait()


def link_ends(config: KmConfig) -> list[LinkEnd]:
    """One PHYS link end per neighbour key manager of the configuration."""
    return [
        LinkEnd(
            qkdl_id=peer.qkdl_id,
            local_node=config.node,
            local_qkdn_id=config.qkdn_id,
            peer_node=peer.node,
            peer_qkdn_id=peer.qkdn_id,
        )
        for peer in config.peers
    ]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff bounds, in seconds."""

    first: float
    limit: float

    def delays(self) -> Iterable[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.limit)


NOT_YET_GENERATED = Backoff(0.002, 0.05)
LINK_TROUBLE = Backoff(0.05, 2.0)


# The generated stub is untyped; calling it through a typed alias keeps strict mypy quiet.
_KEY_DELIVERY_STUB: Callable[[grpc.aio.Channel], Any] = pb_grpc.KeyDeliveryStub


class _PoolFetcher:
    """Keeps one pool filled from the module: OpenConnect, then GetKeyBatch (or GetKey one
    by one from a module without it) while the pool is filling, then nothing until a consumer
    takes it below its low-water mark or waits for an index."""

    def __init__(
        self, pool: LinkKeyPool, stub: Any, rpc_timeout: float, refill_pause: float
    ) -> None:
        self.pool = pool
        self.stub = stub
        self.rpc_timeout = rpc_timeout
        self.refill_pause = refill_pause
        self.batches = True  # until the module answers UNIMPLEMENTED
        self.lead = 0  # indices skipped past the module's oldest key after an expiry
        self._past_lead = False  # the pool has fetched a batch since it last jumped

    async def run(self) -> None:
        trouble = iter(LINK_TROUBLE.delays())
        while True:
            try:
                await self._connect()
                trouble = iter(LINK_TROUBLE.delays())
                await self._fill()
            except grpc.aio.AioRpcError as exc:
                log.info("%s: module unreachable (%s)", self.pool.link.label(), exc.code().name)
            except _LinkTrouble as exc:
                log.info("%s: %s", self.pool.link.label(), exc)
            self.pool.set_link_up(False)
            await asyncio.sleep(next(trouble))

    async def _connect(self) -> None:
        link = self.pool.link
        call = self.stub.OpenConnect(
            pb.OpenConnectRequest(
                source=f"qkdn:{link.local_qkdn_id}",
                destination=f"qkdn:{link.peer_qkdn_id}",
                key_stream_id=link.qkdl_id,
                # The module may hold a GetKey until the key is generated (long poll).
                qos=pb.QoS(timeout=LONG_POLL_MS),
            ),
            timeout=self.rpc_timeout,
        )
        reply = await call
        if reply.status not in (STATUS_OK, STATUS_PEER_NOT_CONNECTED):
            message = await _message(call)
            raise _LinkTrouble(f"OpenConnect status {reply.status} {message}".rstrip())

    async def _fill(self) -> None:
        if self.batches:
            try:
                await self._fill_in_batches()
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise
                log.info("%s: module without GetKeyBatch; one key per call", self.pool.link.label())
                self.batches = False
        await self._fill_one_by_one()

    async def _fill_in_batches(self) -> None:
        """Fetches the indices `LinkKeyPool.next_batch` chooses, many per call, so both ends
        of the link fetch the same indices; without index (one GetKey: the module's oldest
        unconsumed key) only to find where to start, or to jump past keys the module expired.
        After a batch the module could not fill, waits `REFILL_PAUSE_S` unless a consumer
        waits for a key."""
        pool = self.pool
        find_start = True
        expired = False  # find_start because keys expired (not to locate, nor to probe)
        misses = 0
        while True:
            if find_start:  # first of all: where the module's stream stands (before sync)
                find_start = not await self._find_start(self.lead if expired else 0)
                expired = expired and find_start
                continue
            if not pool.filling():
                self.lead = 0  # full again: the next fill starts afresh
            await pool.wait_for_need()
            indices = pool.next_batch(BATCH_KEYS)
            if not indices:
                continue
            wanted = {i for i in indices if pool.is_wanted(i)}
            call = self.stub.GetKeyBatch(
                pb.GetKeyBatchRequest(key_stream_id=pool.link.qkdl_id, indices=indices),
                timeout=max(self.rpc_timeout, BATCH_RPC_TIMEOUT_S),
            )
            reply = await call
            if reply.status not in (STATUS_OK, STATUS_INSUFFICIENT_KEY):
                raise _LinkTrouble(
                    f"GetKeyBatch status {reply.status} {await _message(call)}".rstrip()
                )
            if not pool.link_up:
                pool.set_link_up(True)
            for key in reply.keys:
                if key.status == STATUS_OK:
                    pool.put(key.index, key.key_buffer)
                elif key.status == STATUS_INSUFFICIENT_KEY and key.message in GONE_MESSAGES:
                    pool.mark_gone(key.index)
                    if key.message == "expired" and key.index not in wanted and not find_start:
                        find_start = expired = True  # expired here: jump past the oldest key
                        self.lead = min(EXPIRY_LEAD_LIMIT, max(EXPIRY_LEAD, 2 * self.lead))
                else:
                    raise _LinkTrouble(f"GetKey status {key.status} {key.message}".rstrip())
            if any(key.status == STATUS_OK for key in reply.keys):
                self._past_lead = True
            elif not reply.keys and not self._past_lead and self.lead > EXPIRY_LEAD:
                self.lead //= 2  # jumped past the newest key: less far next time
            if len(reply.keys) == len(indices):
                misses = 0
                continue
            if not reply.keys:
                misses += 1
                if not await _message(call) and misses % PROBE_AFTER_MISSES == 0:
                    find_start = True  # a module that does not say why: probe its oldest key
            await self._pause()

    async def _find_start(self, lead: int = 0) -> bool:
        """GetKey without index: the module's oldest unconsumed key; below it nothing is
        left at this end, and the pool resumes `lead` indices past it. False when the module
        had no key yet."""
        call = self.stub.GetKey(
            pb.GetKeyRequest(key_stream_id=self.pool.link.qkdl_id), timeout=self.rpc_timeout
        )
        reply = await call
        if reply.status == STATUS_OK:
            if not self.pool.link_up:
                self.pool.set_link_up(True)
            self._past_lead = False
            if lead:  # after an expiry: well past the edge, where keys last longer
                self.pool.advance_frontier(reply.index + lead)
            else:
                self.pool.advance_frontier(reply.index)
                self.pool.put(reply.index, reply.key_buffer)
            return True
        if reply.status == STATUS_INSUFFICIENT_KEY:
            if not self.pool.link_up:
                self.pool.set_link_up(True)
            await self._pause()
            return False
        raise _LinkTrouble(f"GetKey status {reply.status} {await _message(call)}".rstrip())

    async def _pause(self) -> None:
        await self.pool.wait_urgent(self.refill_pause)

    async def _fill_one_by_one(self) -> None:
        """Fetches the pool's frontier index by index, so both ends of the link fetch the
        same indices; a wanted index first; without index (the module's oldest unconsumed
        key) only to find where to start, or to jump past keys the module expired."""
        waiting = iter(NOT_YET_GENERATED.delays())
        find_start = True
        misses = 0
        while True:
            if not find_start:  # finding the start comes first, even before sync
                await self.pool.wait_for_need()
            wanted = self.pool.next_wanted()
            if wanted is not None:
                index: int | None = wanted
            elif find_start:
                index = None
            else:
                index = self.pool.next_in_order()
                if index is None:
                    continue
            request = pb.GetKeyRequest(key_stream_id=self.pool.link.qkdl_id)
            if index is not None:
                request.index = index
            call = self.stub.GetKey(request, timeout=self.rpc_timeout)
            reply = await call
            if reply.status == STATUS_OK:
                if not self.pool.link_up:
                    self.pool.set_link_up(True)
                if index is None:
                    # The module's oldest unconsumed key: anything below is gone at this end.
                    self.pool.advance_frontier(reply.index)
                    find_start = False
                self.pool.put(reply.index, reply.key_buffer)
                waiting = iter(NOT_YET_GENERATED.delays())
                misses = 0
            elif reply.status == STATUS_INSUFFICIENT_KEY:
                if not self.pool.link_up:
                    self.pool.set_link_up(True)
                message = await _message(call) if index is not None else ""
                if index is not None and message in GONE_MESSAGES:
                    if index == wanted or message == "consumed":
                        # Its waiter fails now, not at its timeout; a consumed index (handed
                        # to an earlier process of this KM) is skipped alone, no key used.
                        self.pool.mark_gone(index)
                    else:
                        find_start = True  # expired here: jump to the oldest key left
                    continue
                misses += 1
                if (
                    index is not None
                    and index != wanted
                    and not message
                    and misses % PROBE_AFTER_MISSES == 0
                ):
                    # A module that does not say why: ask for its oldest key instead, in case
                    # this index is gone rather than not generated yet.
                    find_start = True
                await asyncio.sleep(next(waiting))
            else:
                raise _LinkTrouble(f"GetKey status {reply.status} {await _message(call)}".rstrip())


class _LinkTrouble(Exception):
    pass


async def _message(call: Any) -> str:
    """The module's explanation of a status (trailing metadata), or ""."""
    try:
        metadata: Any = await call.trailing_metadata()
    except grpc.aio.AioRpcError:
        return ""
    for key, value in metadata or ():
        if key == MESSAGE_METADATA:
            return str(value)
    return ""


class LinkKeyPools:
    """Every PHYS link pool of one node, filled from that node's agent (`KeyDelivery`)."""

    def __init__(
        self,
        config: KmConfig,
        *,
        max_bits: int | None = None,
        rpc_timeout: float = 10.0,
        sync_before_sending: bool = False,
        refill_pause: float = REFILL_PAUSE_S,
    ) -> None:
        """`refill_pause`: seconds between two batches while the module has no more key and
        no consumer waits."""
        self.node = config.node
        self._refill_pause = refill_pause
        self.address = str(config.agent)
        self._tls_files = config.tls  # read at start: mutual TLS to the agent
        bits = config.settings.link_pool_max_bits if max_bits is None else max_bits
        self._pools = {
            end.qkdl_id: LinkKeyPool(end, bits, sync_before_sending=sync_before_sending)
            for end in link_ends(config)
        }
        self._rpc_timeout = rpc_timeout
        self._channel: grpc.aio.Channel | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pools(self) -> tuple[LinkKeyPool, ...]:
        return tuple(self._pools.values())

    def for_peer(self, peer_node: str) -> LinkKeyPool:
        for pool in self._pools.values():
            if pool.link.peer_node == peer_node:
                return pool
        raise LinkKeyError(f"no PHYS link between {self.node} and {peer_node}")

    def for_link(self, qkdl_id: str) -> LinkKeyPool:
        try:
            return self._pools[qkdl_id]
        except KeyError:
            raise LinkKeyError(f"node {self.node} has no PHYS link {qkdl_id}") from None

    async def start(self) -> None:
        if self._channel is not None:
            return
        tls = self._tls_files
        credentials = channel_credentials(TlsMaterial.of(tls))
        self._channel = grpc.aio.secure_channel(self.address, credentials, options=FAST_RECONNECT)
        stub = _KEY_DELIVERY_STUB(self._channel)
        self._tasks = [
            asyncio.create_task(
                _PoolFetcher(pool, stub, self._rpc_timeout, self._refill_pause).run(),
                name=f"link-pool {pool.link.label()}",
            )
            for pool in self._pools.values()
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._channel is not None:
            await self._close_streams(self._channel)
            await self._channel.close(None)
            self._channel = None

    async def _close_streams(self, channel: grpc.aio.Channel) -> None:
        """CLOSE of every stream, so that a restarted KM may open them again at once (a
        stream left open stays reserved to this caller until it has been idle a while)."""
        stub = _KEY_DELIVERY_STUB(channel)
        calls = [
            stub.Close(pb.CloseRequest(key_stream_id=qkdl_id), timeout=CLOSE_TIMEOUT_S)
            for qkdl_id in self._pools
        ]
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, grpc.aio.AioRpcError):
                log.info("%s: module stream not closed (%s)", self.node, result.code().name)
