"""A key manager records each access policy reload, good or bad, in its own audit log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from common.audit import merged
from km.main import KeyManager
from tests.harness.agents import make_test_plan
from tests.harness.configs import km_config_of


def test_policy_reloads_are_audited_with_their_outcome(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a"], [], [("app1", "a"), ("app2", "a")])
    policy = tmp_path / "policy.yaml"
    policy.write_text("saes:\n  app1: {peers: [app2]}\n  app2: {peers: [app1]}\n")
    manager = KeyManager(replace(km_config_of(plan, "a"), policy=policy))
    policy.write_text("saes:\n  app1: {peers: '*'}\n  app2: {peers: '*'}\n")
    assert manager.access.reload() is True
    policy.write_text("saes: [not, a, mapping]\n")
    assert manager.access.reload("file change") is False
    entries = [e for e in merged(tmp_path) if e.process == "km:a"]
    assert [(e.who, e.action, e.outcome) for e in entries] == [
        ("local:SIGHUP", "policy.reload", "ok"),
        ("local:file change", "policy.reload", "failed"),
    ]
    assert entries[0].target == str(policy) and entries[0].detail == "2 SAEs"
    assert "saes" in entries[1].detail
    assert manager.access.policy.rules["app1"].peers is None  # the good one stays in force
