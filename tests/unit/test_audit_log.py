"""The audit log appends whole entries, reads them back in order, and refuses what is not one."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from common.audit import AuditEntry, AuditError, AuditLog, find_logs, merged, read_log


def test_recorded_entries_read_back_in_order(tmp_path: Path) -> None:
    log = AuditLog("agent:qnode1", tmp_path / "agent-qnode1" / "audit.jsonl")
    log.record("admin", "admin", "edit-config", "running", "ok")
    log.record("viewer", "monitor", "edit-config", "running", "refused", "access-denied")
    entries = list(read_log(tmp_path / "agent-qnode1" / "audit.jsonl"))
    assert [(e.who, e.outcome, e.detail) for e in entries] == [
        ("admin", "ok", ""),
        ("viewer", "refused", "access-denied"),
    ]
    assert all(e.process == "agent:qnode1" and e.when.endswith("Z") for e in entries)


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog("controller", path)

    def write(who: str) -> None:
        for n in range(200):
            log.record(who, "operator", "intent.install", f"intent-{n}", "ok")

    threads = [threading.Thread(target=write, args=(f"user{t}",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(list(read_log(path))) == 800


def test_a_torn_last_line_is_skipped_but_a_bad_middle_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    AuditLog("km:qnode1", path).record("operator", "operator", "policy.reload", "policy.yaml", "ok")
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"when": "2026')
    assert len(list(read_log(path))) == 1
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n" + json.dumps({"who": "x"}) + "\n")
    with pytest.raises(AuditError, match=r"audit.jsonl:2: not an audit entry"):
        list(read_log(path))


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome"):
        AuditEntry("t", "controller", "who", "role", "act", "target", "maybe")


def test_logs_of_a_state_directory_merge_in_time_order(tmp_path: Path) -> None:
    first = AuditLog("controller", tmp_path / "controller" / "audit.jsonl")
    second = AuditLog("agent:qnode1", tmp_path / "agents" / "audit.jsonl")
    first.record("op", "operator", "intent.install", "i1", "ok")
    second.record("admin", "admin", "commit", "running", "ok")
    first.record("op", "operator", "intent.withdraw", "i1", "ok")
    assert len(find_logs(tmp_path)) == 2
    entries = merged(tmp_path)
    assert sorted(e.action for e in entries) == ["commit", "intent.install", "intent.withdraw"]
    assert [e.when for e in entries] == sorted(e.when for e in entries)
    assert [e.action for e in entries if e.process == "controller"] == [
        "intent.install",
        "intent.withdraw",
    ]
