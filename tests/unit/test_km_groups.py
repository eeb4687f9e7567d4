"""How `lab up` hosts the key managers: one process each on small twins, shared on large ones."""

from __future__ import annotations

import itertools
from pathlib import Path

from lab.launcher import (
    KMS_PER_PROCESS,
    km_processes,
    process_commands,
    readiness_ports,
)
from tests.harness.agents import make_test_plan


def test_a_small_twin_gives_each_key_manager_a_process_of_its_own(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")])
    assert km_processes(plan) == [("km-a", ("a",)), ("km-b", ("b",)), ("km-c", ("c",))]
    node = plan.node("b")
    assert sorted(readiness_ports(plan, "km-b")) == sorted(
        (node.host, p)
        for p in (
            node.km_etsi014_port,
            node.km_etsi004_port,
            node.km_relay_port,
            node.km_skip_port,
        )
    )


def test_a_large_twin_shares_processes_and_each_hosts_its_nodes_configs(tmp_path: Path) -> None:
    names = [f"n{i}" for i in range(KMS_PER_PROCESS * 2 + 3)]
    plan = make_test_plan(tmp_path, names, list(itertools.pairwise(names)))
    groups = km_processes(plan)
    assert [name for name, _ in groups] == ["kms-1", "kms-2", "kms-3"]
    assert [n for _, group in groups for n in group] == names  # every node once, in order
    assert [len(group) for _, group in groups] == [KMS_PER_PROCESS, KMS_PER_PROCESS, 3]
    commands = dict(process_commands(plan))
    assert not any(name.startswith("km-") for name in commands)
    configs = [arg for arg in commands["kms-3"] if arg.endswith(".yaml")]
    assert [Path(c).name for c in configs] == [f"km-{n}.yaml" for n in names[-3:]]
    ports = readiness_ports(plan, "kms-3")
    assert len(ports) == 3 * 4  # ETSI 014, ETSI 004, relay, SKIP of each
    assert (plan.node(names[-1]).host, plan.node(names[-1]).km_relay_port) in ports
