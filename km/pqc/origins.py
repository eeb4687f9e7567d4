"""Where each delivered key came from (origin and key mode), by key_ID, for the ETSI 014 answers.

The master's KM records what it hands out; the slaves' KM records the post-quantum and hybrid
keys it derived, so `dec_keys` reports the same origin. Held in memory with each key's expiry
(a restarted KM reports keys it did not record as `unknown`). `counts` is the hook for metrics:
keys delivered per origin.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from km.pqc.mode import KeyMode, Origin

DEFAULT_KEEP_S = 3600.0
PURGE_EVERY = 4096


@dataclass(frozen=True)
class KeyOrigin:
    origin: Origin
    mode: KeyMode | None  # None when the key was not drawn under a key mode (local pairs)

    def extension(self) -> Mapping[str, str]:
        """The ETSI 014 key_extension object (one shared object per origin and mode)."""
        return _extension(self.origin, self.mode)


@functools.cache
def _extension(origin: Origin, mode: KeyMode | None) -> Mapping[str, str]:
    ext = {"origin": origin.value}
    if mode is not None:
        ext["key_mode"] = mode.value
    return MappingProxyType(ext)


@dataclass
class OriginBook:
    clock: Callable[[], float] = time.time
    counts: Counter[str] = field(default_factory=Counter)
    _entries: dict[str, tuple[KeyOrigin, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _added: int = 0

    def record(
        self,
        key_ids: Iterable[str],
        origin: KeyOrigin,
        expires_at: float | None,
        *,
        delivered: bool = True,
    ) -> None:
        until = expires_at if expires_at is not None else self.clock() + DEFAULT_KEEP_S
        ids = list(key_ids)
        with self._lock:
            for key_id in ids:
                self._entries[key_id] = (origin, until)
            self._added += len(ids)
            if self._added >= PURGE_EVERY:
                self._purge()
        if delivered:
            self.counted(origin.origin, len(ids))

    def counted(self, origin: Origin, number: int) -> None:
        self.counts[origin.value] += number

    def of(self, key_id: str) -> KeyOrigin | None:
        entry = self._entries.get(key_id)
        return None if entry is None else entry[0]

    def extensions(
        self, key_ids: Iterable[str], default: KeyOrigin | None
    ) -> Mapping[str, Mapping[str, str]]:
        out: dict[str, Mapping[str, str]] = {}
        for key_id in key_ids:
            found = self.of(key_id) or default
            if found is not None:
                out[key_id] = found.extension()
        return out

    def _purge(self) -> None:
        now = self.clock()
        self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        self._added = 0
