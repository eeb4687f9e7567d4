"""Timeline tracing: what happened to a key request, when, in which process.

Each process appends JSON lines to the file named by `QKDSDN_TRACE_FILE` (one file per
process, so no two writers share a file); without it, tracing costs one attribute check.
Events carry wall-clock milliseconds so that events of several processes line up.
Never put key material in an event: key IDs and names only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

TRACE_ENV = "QKDSDN_TRACE_FILE"


@dataclass(frozen=True)
class TimelineEvent:
    t_ms: float  # wall clock, milliseconds since the epoch
    source: str  # process that wrote it, e.g. "km:qnode1"
    event: str  # e.g. "enc_keys.received"
    fields: dict[str, Any]


class Tracer:
    """Appends events to one JSON-lines file; thread-safe, flushes every line."""

    def __init__(self, source: str, path: str | None) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    @staticmethod
    def from_env(source: str) -> Tracer:
        return Tracer(source, os.environ.get(TRACE_ENV))

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def emit(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps(
            {"t_ms": time.time() * 1000.0, "source": self.source, "event": event, **fields},
            default=str,
        )
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
