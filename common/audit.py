"""Append-only audit log: who changed what, when, and how it ended, one JSON line per change."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

OUTCOMES = ("ok", "refused", "failed")
LOG_NAME = "audit.jsonl"


class AuditError(ValueError):
    """A log line that is not an audit entry (names the file and line)."""


@dataclass(frozen=True)
class AuditEntry:
    when: str  # UTC, ISO 8601 with microseconds
    process: str  # e.g. "agent:qnode1", "controller", "km:qnode2"
    who: str  # the authenticated caller: user name or certificate identity
    role: str  # the caller's role as the interface checked it
    action: str  # e.g. "edit-config", "commit", "intent.install", "policy.reload"
    target: str  # what was changed: datastore, intent id, file
    outcome: str  # one of OUTCOMES
    detail: str = ""  # why refused or failed; never key material

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(
                f"audit outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}"
            )
        for name in ("process", "who", "action"):
            if not getattr(self, name):
                raise ValueError(f"audit entry needs a non-empty {name}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AuditLog:
    """One process's log: each `record` appends and flushes one line under a lock (O_APPEND)."""

    def __init__(self, process: str, path: str | Path | None) -> None:
        self.process = process
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self, who: str, role: str, action: str, target: str, outcome: str, detail: str = ""
    ) -> AuditEntry:
        entry = AuditEntry(_now(), self.process, who, role, action, target, outcome, detail)
        if self.path is None:
            return entry
        line = json.dumps(_fields(entry), sort_keys=True) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)
        return entry


def _fields(entry: AuditEntry) -> dict[str, str]:
    """The entry as a dict (what `asdict` gives, without its recursive copy)."""
    return {field: getattr(entry, field) for field in _FIELDS}


_FIELDS = tuple(field.name for field in fields(AuditEntry))


def read_log(path: str | Path) -> Iterator[AuditEntry]:
    """Entries in file order; a torn last line (crash mid-write) is skipped, any other bad line refused."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    complete, last = lines[:-1], lines[-1]
    for number, text in enumerate(complete, start=1):
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
            yield AuditEntry(**fields)
        except (ValueError, TypeError) as exc:
            raise AuditError(f"{path}:{number}: not an audit entry ({exc})") from None
    del last  # a line without its newline was never completely written


def find_logs(state_dir: str | Path) -> list[Path]:
    """Every process's audit log under a state directory (any depth), sorted by path."""
    return sorted(Path(state_dir).rglob(LOG_NAME)) + sorted(Path(state_dir).rglob("audit-*.jsonl"))


def merged(state_dir: str | Path) -> list[AuditEntry]:
    """All entries of all logs under `state_dir`, in time order (stable for equal times)."""
    entries = [entry for path in find_logs(state_dir) for entry in read_log(path)]
    return sorted(entries, key=lambda entry: entry.when)
