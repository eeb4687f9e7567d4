"""`qkdsdn audit`: the logs of a state directory merged, filtered, as lines or JSON."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from common.audit import AuditLog
from lab.audit_cli import since_time
from lab.cli import main as qkdsdn


def make_logs(state: Path) -> None:
    controller = AuditLog("controller", state / "controller" / "audit.jsonl")
    km = AuditLog("km:qnode1", state / "km" / "qnode1" / "audit.jsonl")
    km2 = AuditLog("km:qnode2", state / "km" / "qnode2" / "audit.jsonl")
    controller.record("token:operator", "operator", "intent.install", "i1 app1>app2", "ok")
    km.record("local:SIGHUP", "host", "policy.reload", "/p.yaml", "failed", "bad\tYAML\nline")
    controller.record(
        "token:viewer", "viewer", "intent.withdraw", "i1", "refused", "needs operator"
    )
    km2.record("local:SIGHUP", "host", "policy.reload", "/p.yaml", "ok", "2 SAEs")


def test_piped_output_is_one_unwrapped_line_per_entry_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_logs(tmp_path)
    assert qkdsdn(["audit", "--state-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[3] for line in lines] == [
        "intent.install",
        "policy.reload",
        "intent.withdraw",
        "policy.reload",
    ]
    assert all(len(line.split("\t")) == 7 for line in lines)  # tabs and newlines flattened
    assert lines[1].split("\t")[1:3] == ["km:qnode1", "local:SIGHUP (host)"]


def test_filters_by_process_kind_or_name_and_by_who(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_logs(tmp_path)
    assert qkdsdn(["audit", "--state-dir", str(tmp_path), "--process", "km"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert qkdsdn(["audit", "--state-dir", str(tmp_path), "--process", "km:qnode2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert qkdsdn(["audit", "--state-dir", str(tmp_path), "--who", "token:viewer", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["action"], entry["outcome"], entry["detail"]) == (
        "intent.withdraw",
        "refused",
        "needs operator",
    )


def test_since_takes_a_duration_or_a_time_and_drops_older_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_logs(tmp_path)
    assert qkdsdn(["audit", "--state-dir", str(tmp_path), "--since", "1h", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert qkdsdn(["audit", "--state-dir", str(tmp_path), "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == ""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert since_time("10m", now) == "2026-01-02T02:54:05.000000Z"
    assert since_time("2026-01-02T04:04:05+01:00") == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(argparse.ArgumentTypeError):
        since_time("yesterday")


def test_a_missing_state_dir_or_a_corrupt_log_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qkdsdn(["audit", "--state-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    make_logs(tmp_path)
    with (tmp_path / "controller" / "audit.jsonl").open("a") as log:
        log.write("not json\n")
    assert qkdsdn(["audit", "--state-dir", str(tmp_path)]) == 2
    assert "audit.jsonl:3" in capsys.readouterr().err
