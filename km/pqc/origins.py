"""Where each delivered key came from (origin and key mode), by key_ID, for the ETSI 014 answers.

The master's KM records what it hands out; the slaves' KM records the post-quantum and hybrid
keys it derived, so `dec_keys` reports the same origin. Held in memory with each key's expiry;
the keys waiting for the slaves also carry their origin and mode in the key store
(`StoredKey.origin`, `key_mode`), so a restarted KM still reports them (`of_keys`).
`counts` is the hook for metrics: keys delivered per origin.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from km.key_store import KeyBatch, StoredKey
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

    @staticmethod
    def saved(origin: str | None, mode: str | None) -> KeyOrigin | None:
        """What the key store kept with a key; None when it kept nothing it knows."""
        return _saved(origin, mode)


_ORIGINS = {o.value: o for o in Origin}
_MODES = {m.value: m for m in KeyMode}


@functools.cache
def _saved(origin: str | None, mode: str | None) -> KeyOrigin | None:
    found = _ORIGINS.get(origin or "")
    return None if found is None else KeyOrigin(found, _MODES.get(mode or ""))


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

    def of_keys(
        self, keys: Sequence[StoredKey], default: KeyOrigin | None
    ) -> Mapping[str, Mapping[str, str]]:
        """key_extension per key_ID: as recorded here, else as kept in the key store with the
        key (after a restart), else `default`."""
        if isinstance(keys, KeyBatch):  # one stored origin for the run: no per-key objects
            fallback = KeyOrigin.saved(keys.origin, keys.key_mode) or default
            return self.extensions(keys.key_ids(), fallback)
        out: dict[str, Mapping[str, str]] = {}
        for key in keys:
            found = self.of(key.key_id) or KeyOrigin.saved(key.origin, key.key_mode) or default
            if found is not None:
                out[key.key_id] = found.extension()
        return out

    def _purge(self) -> None:
        now = self.clock()
        self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        self._added = 0
