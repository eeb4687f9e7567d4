"""The lab's timeline: the events every process traced (common.tracing), read back in order."""

from __future__ import annotations

import json
from pathlib import Path

from common.tracing import TRACE_ENV, TimelineEvent, Tracer

__all__ = ["TRACE_ENV", "TimelineEvent", "Tracer", "read_events"]


def read_events(folder: Path, *, controllers_by_file: bool = False) -> list[TimelineEvent]:
    """Every event of every `*.jsonl` file in `folder`, in time order; bad lines are skipped.

    `controllers_by_file`: a twin of several domains runs several controllers that all trace
    as "controller"; their events are then named by their file ("controller-A")."""
    events: list[TimelineEvent] = []
    for path in sorted(folder.glob("*.jsonl")):
        by_file = controllers_by_file and path.stem.startswith("controller-")
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
                t_ms = float(raw.pop("t_ms"))
                source = str(raw.pop("source"))
                name = str(raw.pop("event"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            events.append(TimelineEvent(t_ms, path.stem if by_file else source, name, raw))
    events.sort(key=lambda e: e.t_ms)
    return events
