"""The key stream of one QKD link: what key exists at which index, and since when.

Pure: no clock is read here, every function takes `now`. Both modules of a link hold the
same 32-byte seed, so the material at index i is the same at both ends; both ends that
record the same rate changes at the same times make the same indices available.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

SEED_BYTES = 32
_BLOCK = hashlib.sha256().digest_size


def key_material(seed: bytes, qkdl_id: str, index: int, size_bytes: int) -> bytes:
    """Key at `index` of link `qkdl_id`: HMAC-SHA256(seed, qkdl_id ‖ index ‖ block) blocks.

    Each block is keyed by the seed over the link id, the 8-byte index and a 4-byte block
    counter, so any chunk size is an exact prefix-free expansion of the same stream position.
    """
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a link seed has {SEED_BYTES} bytes, got {len(seed)}")
    if index < 0:
        raise ValueError(f"key index must be >= 0, got {index}")
    if size_bytes <= 0:
        raise ValueError(f"key size must be > 0 bytes, got {size_bytes}")
    prefix = qkdl_id.encode("utf-8") + index.to_bytes(8, "big")
    blocks = (size_bytes + _BLOCK - 1) // _BLOCK
    out = b"".join(
        hmac.digest(seed, prefix + block.to_bytes(4, "big"), "sha256") for block in range(blocks)
    )
    return out[:size_bytes]


@dataclass(frozen=True)
class RateSegment:
    """From `start` (seconds, same clock as `now`) the link distils `rate_bps` secret bits/s."""

    start: float
    rate_bps: float


@dataclass(frozen=True)
class RateHistory:
    """Piecewise-constant secret key rate since the link started; segments in time order."""

    segments: tuple[RateSegment, ...]

    @staticmethod
    def starting(start: float, rate_bps: float) -> RateHistory:
        return RateHistory((RateSegment(start, _checked_rate(rate_bps)),))

    @property
    def start(self) -> float:
        return self.segments[0].start

    @property
    def current_rate_bps(self) -> float:
        return self.segments[-1].rate_bps

    def with_rate(self, at: float, rate_bps: float) -> RateHistory:
        """The history with the rate changed to `rate_bps` from `at` on.

        A change at the same instant as the last one replaces it; the same rate again adds
        nothing (so both ends stay identical whatever redundant events they see).
        """
        rate = _checked_rate(rate_bps)
        last = self.segments[-1]
        if at < last.start:
            raise ValueError(f"rate change at {at} is before the last change at {last.start}")
        if rate == last.rate_bps:
            return self
        if at == last.start:
            kept = self.segments[:-1]
            if kept and kept[-1].rate_bps == rate:
                return RateHistory(kept)
            return RateHistory((*kept, RateSegment(at, rate)))
        return RateHistory((*self.segments, RateSegment(at, rate)))

    def bits_at(self, now: float) -> float:
        """Secret bits distilled from the start until `now`."""
        total = 0.0
        for segment, following in zip(self.segments, (*self.segments[1:], None), strict=True):
            if now <= segment.start:
                break
            end = now if following is None else min(now, following.start)
            total += segment.rate_bps * (end - segment.start)
        return total

    def available(self, now: float, chunk_bits: int) -> int:
        """How many indices (0 .. n-1) exist at `now` for chunks of `chunk_bits`."""
        if chunk_bits <= 0:
            raise ValueError(f"chunk size must be > 0 bits, got {chunk_bits}")
        return int(self.bits_at(now) // chunk_bits)

    def time_of(self, index: int, chunk_bits: int, now: float) -> float | None:
        """When `index` becomes available if the rate stays as it is at `now`; None: never."""
        if index < self.available(now, chunk_bits):
            return now
        rate = self.current_rate_bps
        if rate <= 0:
            return None
        missing = (index + 1) * chunk_bits - self.bits_at(now)
        return now + missing / rate


def _checked_rate(rate_bps: float) -> float:
    if not rate_bps >= 0:  # also rejects NaN
        raise ValueError(f"a key rate must be >= 0 bit/s, got {rate_bps}")
    return float(rate_bps)
