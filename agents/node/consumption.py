"""Key bits the node's key manager delivered per (master, slave) SAE pair, as it reports them
over NodeLink: the source of the 015 `qkd_app/app_statistics` (agents/node/state.py).

The KM sends totals of its run; a new run (KM restarted, totals back to 0) carries the old
run's totals forward, so what this node reports never goes backwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

MAX_PAIRS = 4096  # pairs remembered per node; a report with more is refused whole
MAX_NAME = 256  # characters of a SAE id


@dataclass(frozen=True)
class PairReport:
    master: str
    slave: str
    keys: int
    bits: int


class ConsumptionLedger:
    """Delivered bits per (master, slave), across the key manager's runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run = ""
        self._current: dict[tuple[str, str], int] = {}  # this run's totals
        self._carried: dict[tuple[str, str], int] = {}  # earlier runs' totals

    def report(self, run: str, pairs: Iterable[PairReport]) -> str:
        """Takes a report ("" if taken, else why not: nothing changes then)."""
        entries = list(pairs)
        if not run:
            return "km_run is required"
        totals: dict[tuple[str, str], int] = {}
        for entry in entries:
            if not entry.master or not entry.slave:
                return "every pair needs a server_app_id and a client_app_id"
            if len(entry.master) > MAX_NAME or len(entry.slave) > MAX_NAME:
                return f"SAE ids are at most {MAX_NAME} characters"
            if entry.bits < 0 or entry.keys < 0:
                return "delivered keys and bits cannot be negative"
            totals[(entry.master, entry.slave)] = entry.bits
        with self._lock:
            if len(set(totals) | set(self._carried)) > MAX_PAIRS:
                return f"more than {MAX_PAIRS} SAE pairs"
            if run != self._run:
                for pair, bits in self._current.items():
                    self._carried[pair] = self._carried.get(pair, 0) + bits
                self._run, self._current = run, {}
            for pair, bits in totals.items():
                if bits < self._current.get(pair, 0):
                    return f"the total of {pair[0]}>{pair[1]} went back in the same run"
            self._current.update(totals)
        return ""

    def bits(self, master: str, slaves: Iterable[str]) -> int:
        """Bits delivered to `master` with any of `slaves`, over every run."""
        with self._lock:
            return sum(
                self._carried.get((master, s), 0) + self._current.get((master, s), 0)
                for s in set(slaves)
            )
