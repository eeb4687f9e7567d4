"""One emulated QKD module: the end of a PHYS link at a node, seen through ETSI GS QKD 004.

The module owns the link end's `Channel` and the key stream's `RateHistory`; every channel
change is recorded in the history at the injected clock's time, so key availability follows
cuts, eavesdroppers and restores. An index handed out is consumed at this end, once. The
module keeps at most `capacity_chunks` unconsumed chunks (a real module's key store): older
ones are dropped. With a `PositionFile` an index is never handed out twice, across restarts
and crashes: the stream continues from the recorded mark (key generated since this start is
numbered from it). No sleeping: the 004 servicer awaits `ready_in()` itself.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.emulator.channel import Channel, ChannelChange, ChannelState, LinkStatus, RateModel
from agents.emulator.keystream import RateHistory, key_material
from agents.emulator.positions import PositionError, PositionFile

Clock = Callable[[], float]

CONSUMPTION_WINDOW_S = 10.0  # eskr = skr - consumption over this window


class Status(enum.IntEnum):
    """ETSI GS QKD 004 status codes."""

    SUCCESSFUL = 0
    PEER_NOT_CONNECTED = 1
    INSUFFICIENT_KEY = 2
    GET_KEY_PEER_NOT_CONNECTED = 3
    NO_QKD_CONNECTION = 4
    KEY_STREAM_IN_USE = 5
    TIMEOUT = 6
    QOS_NOT_MET = 7
    METADATA_TOO_SMALL = 8


@dataclass(frozen=True)
class LinkEnd:
    qkdl_id: str
    local_qkdn_id: str
    peer_qkdn_id: str
    qkdi_id: int

    @property
    def local_uri(self) -> str:
        return f"qkdn:{self.local_qkdn_id}"

    @property
    def peer_uri(self) -> str:
        return f"qkdn:{self.peer_qkdn_id}"


@dataclass(frozen=True)
class OpenResult:
    status: Status
    key_stream_id: str
    chunk_bytes: int
    max_bps: int
    message: str = ""


@dataclass(frozen=True)
class KeyResult:
    status: Status
    index: int
    key: bytes = field(default=b"", repr=False)  # key material: never in repr or logs
    message: str = ""


@dataclass(frozen=True)
class ModuleStats:
    status: LinkStatus
    skr_bps: float
    eskr_bps: float
    qber: float
    available_keys: int  # unconsumed chunks held now
    consumed_keys: int
    consumed_bits: int
    generated_keys: int


class QkdModule:
    """The module at one end of a PHYS link."""

    def __init__(
        self,
        end: LinkEnd,
        seed: bytes,
        rate_model: RateModel,
        clock: Clock,
        start: float,
        chunk_bytes: int = 32,
        capacity_chunks: int = 4096,
        peer_stream_open: Callable[[], bool | None] = lambda: None,
        idle_release_s: float = 5.0,
        positions: PositionFile | None = None,
    ) -> None:
        """`start`: when the link began distilling (shared by every module of the process).

        `peer_stream_open`: whether the other end's stream is open; None when that module
        lives in another process and cannot be observed. `positions`: where this end records
        how far it handed out keys (None: nowhere, the stream restarts at 0 with the process).
        """
        if chunk_bytes <= 0 or capacity_chunks <= 0:
            raise ValueError("chunk size and capacity must be positive")
        key_material(seed, end.qkdl_id, 0, 1)  # checks the seed once, early
        self.end = end
        self._seed = seed
        self._clock = clock
        self.chunk_bytes = chunk_bytes
        self.capacity_chunks = capacity_chunks
        self._peer_stream_open = peer_stream_open
        self.channel = Channel(rate_model)
        self._history = RateHistory.starting(start, self.channel.state.skr_bps)
        self._positions = positions
        # Every index below `_base` was (or may have been) handed out by an earlier process.
        self._base = 0 if positions is None else positions.start
        # Every index below the cursor is consumed or expired; the set holds the consumed
        # indices above it (taken out of order, by index), so it stays small.
        self._cursor = self._base
        self._consumed: set[int] = set()
        self._consumed_count = 0
        self._recent: deque[tuple[int, int]] = deque()  # (whole second, bits consumed)
        self.stream_open = False
        self._owner = ""
        self._last_used = start
        self.idle_release_s = idle_release_s

    def __repr__(self) -> str:
        return f"QkdModule({self.end.qkdl_id} at {self.end.local_qkdn_id})"

    @property
    def chunk_bits(self) -> int:
        return self.chunk_bytes * 8

    @property
    def history(self) -> RateHistory:
        return self._history

    @property
    def base(self) -> int:
        """The first index this process could hand out (lower ones were used before)."""
        return self._base

    def _available(self, now: float) -> int:
        """Indices below this exist at `now`: the base plus what was generated since start."""
        return self._base + self._history.available(now, self.chunk_bits)

    @property
    def state(self) -> ChannelState:
        return self.channel.state

    # ---- faults and configuration ------------------------------------------------------------

    def set_enabled(self, enabled: bool) -> ChannelChange | None:
        return self._record(self.channel.set_enabled(enabled))

    def set_fibre(self, up: bool) -> ChannelChange | None:
        return self._record(self.channel.set_fibre(up))

    def set_eavesdropper(self, fraction: float) -> ChannelChange | None:
        return self._record(self.channel.set_eavesdropper(fraction))

    def set_peer_up(self, up: bool) -> ChannelChange | None:
        return self._record(self.channel.set_peer_up(up))

    def set_node_up(self, up: bool) -> ChannelChange | None:
        return self._record(self.channel.set_node_up(up))

    def _record(self, change: ChannelChange | None) -> ChannelChange | None:
        if change is not None:
            self._history = self._history.with_rate(self._clock(), change.after.skr_bps)
        return change

    # ---- ETSI 004 -------------------------------------------------------------------------

    def open_connect(
        self,
        source: str,
        destination: str,
        key_stream_id: str,
        chunk_bytes: int,
        owner: str = "",
    ) -> OpenResult:
        """OPEN_CONNECT of this end's stream (`key_stream_id` = qkdl_id; empty means that).

        `owner` names the caller (e.g. its gRPC peer). The same owner may open again (a key
        manager reconnecting after a fault); another owner gets status 5 while the stream
        is in use, i.e. until it has been idle for `idle_release_s`.
        """
        stream = key_stream_id or self.end.qkdl_id
        if stream != self.end.qkdl_id:
            return self._open_result(Status.NO_QKD_CONNECTION, stream, f"no link {stream} here")
        if source != self.end.local_uri or destination != self.end.peer_uri:
            return self._open_result(
                Status.NO_QKD_CONNECTION,
                stream,
                f"link {stream} joins {self.end.local_uri} to {self.end.peer_uri}",
            )
        if chunk_bytes not in (0, self.chunk_bytes):
            return self._open_result(
                Status.QOS_NOT_MET, stream, f"this module delivers {self.chunk_bytes}-byte keys"
            )
        now = self._clock()
        if (
            self.stream_open
            and owner != self._owner
            and now - self._last_used < self.idle_release_s
        ):
            return self._open_result(Status.KEY_STREAM_IN_USE, stream, "in use by another caller")
        if self.state.status is not LinkStatus.ACTIVE:
            return self._open_result(Status.NO_QKD_CONNECTION, stream, self.state.reason)
        self.stream_open = True
        self._owner = owner
        self._last_used = now
        peer_open = self._peer_stream_open()
        if peer_open is False:
            return self._open_result(Status.PEER_NOT_CONNECTED, stream, "peer not connected yet")
        return self._open_result(Status.SUCCESSFUL, stream)

    def _open_result(self, status: Status, stream: str, message: str = "") -> OpenResult:
        return OpenResult(status, stream, self.chunk_bytes, int(self.state.skr_bps), message)

    def close(self, key_stream_id: str) -> Status:
        if key_stream_id != self.end.qkdl_id or not self.stream_open:
            return Status.NO_QKD_CONNECTION
        self.stream_open = False
        return Status.SUCCESSFUL

    def get_key(self, key_stream_id: str, index: int | None = None) -> KeyResult:
        """GET_KEY: the chunk at `index`, or at the next unconsumed index of this end."""
        if key_stream_id != self.end.qkdl_id or not self.stream_open:
            return KeyResult(Status.NO_QKD_CONNECTION, index or 0, message="stream not open")
        if self.state.status is not LinkStatus.ACTIVE:
            return KeyResult(Status.NO_QKD_CONNECTION, index or 0, message=self.state.reason)
        now = self._clock()
        self._last_used = now
        available = self._available(now)
        floor = self._advance(max(self._base, available - self.capacity_chunks))
        if index is None:
            index = self._cursor
        elif index < 0:
            return KeyResult(Status.INSUFFICIENT_KEY, 0, message="negative index")
        elif index < self._base:
            return KeyResult(Status.INSUFFICIENT_KEY, index, message="consumed")
        elif index < floor:
            return KeyResult(Status.INSUFFICIENT_KEY, index, message="expired")
        elif index < self._cursor or index in self._consumed:
            return KeyResult(Status.INSUFFICIENT_KEY, index, message="consumed")
        if index >= available:
            return KeyResult(Status.INSUFFICIENT_KEY, index, message="not yet generated")
        if self._positions is not None:
            try:
                self._positions.reserve(index)  # on disk before the key leaves the module
            except PositionError as exc:
                return KeyResult(Status.NO_QKD_CONNECTION, index, message=str(exc))
        self._consume(index, now)
        key = key_material(self._seed, self.end.qkdl_id, index, self.chunk_bytes)
        return KeyResult(Status.SUCCESSFUL, index, key)

    def reserve_through(self, index: int) -> str:
        """Records on disk, in one write, that indices up to `index` may be handed out (before
        a batch of GET_KEYs); "" or why not. Without a position file, nothing to do."""
        if self._positions is None or index < self._base:
            return ""
        try:
            self._positions.reserve(index)
        except PositionError as exc:
            return str(exc)
        return ""

    def ready_in(self, index: int | None = None) -> float | None:
        """Seconds until `index` (or the next unconsumed one) exists; None: not while down."""
        if self.state.status is not LinkStatus.ACTIVE:
            return None
        now = self._clock()
        if index is None:
            available = self._available(now)
            index = max(self._cursor, available - self.capacity_chunks)
            while index in self._consumed:
                index += 1
        if index < self._base:
            return 0.0  # answered at once ("consumed")
        at = self._history.time_of(index - self._base, self.chunk_bits, now)
        return None if at is None else max(0.0, at - now)

    def _advance(self, floor: int) -> int:
        """Moves the cursor past expired and consumed indices; returns `floor`."""
        if floor > self._cursor:  # unfetched keys expired: forget what lies below
            self._cursor = floor
            self._consumed = {i for i in self._consumed if i >= floor}
        while self._cursor in self._consumed:  # bounded by the size of the set
            self._consumed.discard(self._cursor)
            self._cursor += 1
        return floor

    def _consume(self, index: int, now: float) -> None:
        self._consumed.add(index)
        self._consumed_count += 1
        self._advance(self._cursor)
        second = int(now)
        if self._recent and self._recent[-1][0] == second:
            self._recent[-1] = (second, self._recent[-1][1] + self.chunk_bits)
        else:
            self._recent.append((second, self.chunk_bits))
        self._forget_before(now - CONSUMPTION_WINDOW_S)

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0][0] < int(cutoff):
            self._recent.popleft()

    # ---- statistics ----------------------------------------------------------------------

    def consumption_bps(self) -> float:
        """Bits handed out per second over the last `CONSUMPTION_WINDOW_S` seconds."""
        now = self._clock()
        self._forget_before(now - CONSUMPTION_WINDOW_S)
        window = min(CONSUMPTION_WINDOW_S, max(now - self._history.start, 1.0))
        return sum(bits for _, bits in self._recent) / window

    def stats(self) -> ModuleStats:
        now = self._clock()
        state = self.state
        generated = self._history.available(now, self.chunk_bits)
        available = self._base + generated
        lowest = max(self._base, available - self.capacity_chunks, self._cursor)
        held = available - lowest - sum(1 for i in self._consumed if i >= lowest)
        skr = state.skr_bps
        return ModuleStats(
            status=state.status,
            skr_bps=skr,
            eskr_bps=max(0.0, skr - self.consumption_bps()),
            qber=state.qber,
            available_keys=max(0, held),
            consumed_keys=self._consumed_count,
            consumed_bits=self._consumed_count * self.chunk_bits,
            generated_keys=generated,
        )
