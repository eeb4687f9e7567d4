"""The one place end-to-end keys are made: CSPRNG material under UUIDv7 (RFC 9562) key_IDs."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from km.key_store import KeyBatch, StoredKey, format_key_id

DEFAULT_KEY_TTL_S = 3600.0


@dataclass(frozen=True)
class KeyMint:
    """Mints keys (not stored) for a master and its slaves; every key path of a KM (local
    slaves, relay toward another node, multicast, ETSI 004 streams) draws from here.
    key_ttl_s=None: keys that never expire."""

    key_ttl_s: float | None = DEFAULT_KEY_TTL_S
    clock: Callable[[], float] = time.time

    def batch(self, master: str, slaves: Sequence[str], number: int, size_bits: int) -> KeyBatch:
        """`number` fresh keys with consecutive key_IDs as one KeyBatch: no per-key objects."""
        if number < 0 or size_bits <= 0 or size_bits % 8:
            raise ValueError("number must be >= 0 and size_bits a positive multiple of 8")
        expires = None if self.key_ttl_s is None else self.clock() + self.key_ttl_s
        size = size_bits // 8 * number
        noise = secrets.token_bytes(size + 10)  # one system call: the material and the key_ID
        return KeyBatch(
            new_first_key_id(noise=noise[size:]),
            number,
            noise[:size],
            size_bits,
            master,
            tuple(slaves),
            expires,
        )

    def keys(
        self, master: str, slaves: Sequence[str], number: int, size_bits: int
    ) -> list[StoredKey]:
        """`batch` as a list of StoredKey."""
        return list(self.batch(master, slaves, number, size_bits))


def new_first_key_id(now_ns: int | None = None, *, noise: bytes | None = None) -> int:
    """A UUIDv7 (RFC 9562) as an int: 48-bit milliseconds, version, 12 random bits, variant,
    then 62 bits of which the top one is 0 and 61 random. A request's keys take the key_IDs
    that follow (RFC 9562 6.2, method 2: a random value incremented), which never reach the
    variant bits. `noise`: 10 bytes from the CSPRNG (drawn here if not given).
    Time order keeps the store's index appending at its end (random UUIDv4 halved batch
    throughput); a key_ID reveals when its key was made, nothing about it."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    bits = int.from_bytes(secrets.token_bytes(10) if noise is None else noise, "big")
    return (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (bits >> 61 & 0xFFF) << 64
        | 0b10 << 62
        | bits & ((1 << 61) - 1)
    )


def new_key_ids(number: int, now_ns: int | None = None) -> list[str]:
    """`number` consecutive UUIDv7 key_IDs (see `new_first_key_id`), ascending."""
    first = new_first_key_id(now_ns)
    return [format_key_id(first + i) for i in range(number)]
