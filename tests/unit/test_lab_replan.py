"""A plan given new ports (`lab up` when a planned port was taken): every use of a port moves
with it, nothing else changes; the start is retried on a port taken only."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from lab.configs import process_configs
from lab.launcher import LabError, make_plan, replan_ports, start_with_free_ports
from lab.plan import LabPlan, NodePlan
from lab.topology import load_topology, topology_path


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> LabPlan:
    path = topology_path("three-domains")
    state = tmp_path_factory.mktemp("replan")
    return make_plan(load_topology(path), path, state, with_pki=False, monitoring=True)


def test_a_replanned_plan_moves_every_port_and_keeps_everything_else(plan: LabPlan) -> None:
    again = replan_ports(plan)
    old, new = plan.ports(), again.ports()
    assert len(new) == len(old) and not set(new) & set(old)
    moved = dict(zip(old, new, strict=True))
    assert again.with_ports({v: k for k, v in moved.items()}) == plan  # a pure renumbering
    assert again.node("b_a").km_etsi020_port == moved[plan.node("b_a").km_etsi020_port]
    assert again.node("b1").km_etsi020_port == 0  # not a border: still none
    assert again.controller == again.domain("A").controller  # still the first domain's
    assert again.prometheus_port == moved[plan.prometheus_port]
    # the agents of one process still share one /metrics port
    assert again.metrics_ports["agent-a1"] == again.metrics_ports["agent-a2"]
    assert (again.nodes[0].qkdn_id, again.credentials, again.links) == (
        plan.nodes[0].qkdn_id,
        plan.credentials,
        plan.links,
    )


def test_every_port_field_of_a_node_is_moved(plan: LabPlan) -> None:
    again = replan_ports(plan)
    for old, new in zip(plan.nodes, again.nodes, strict=True):
        for field in fields(NodePlan):
            if field.name.endswith("_port") and getattr(old, field.name):
                assert getattr(new, field.name) != getattr(old, field.name), field.name
                assert getattr(old, field.name) in plan.ports()


def test_the_replanned_configs_name_only_the_new_ports(plan: LabPlan) -> None:
    again = replan_ports(plan)
    text = str(process_configs(again))
    assert not [port for port in plan.ports() if f":{port}" in text]
    assert all(f":{port}" in text for port in again.ports() if port != again.prometheus_port)


def test_the_start_is_tried_again_with_new_ports_only_when_a_port_was_taken(
    plan: LabPlan,
) -> None:
    tried: list[LabPlan] = []

    def start(planned: LabPlan) -> str:
        tried.append(planned)
        if len(tried) < 3:
            raise LabError("km-a1 exited with code 1; log:\nOSError: Address already in use")
        return "up"

    said: list[str] = []
    started, result = start_with_free_ports(plan, start, attempts=3, say=said.append)
    assert result == "up" and started is tried[-1] and len(said) == 2
    assert len({p.ports() for p in tried}) == 3  # each attempt on other ports

    def broken(planned: LabPlan) -> str:
        raise LabError("km-a1 exited with code 1: bad config")

    with pytest.raises(LabError, match="bad config"):  # not a port: no second attempt
        start_with_free_ports(plan, broken, attempts=3, say=said.append)
    assert len(said) == 2
    tried.clear()
    with pytest.raises(LabError, match="Address already in use"):  # attempts run out
        start_with_free_ports(plan, start, attempts=2)
    assert len(tried) == 2


def test_a_port_taken_is_recognised_in_the_words_of_each_server() -> None:
    assert LabError("km-a1 exited; log:\nOSError: [Errno 98] Address already in use").port_taken
    assert LabError(
        "cannot start agents: [Errno 98] error while attempting to bind on address "
        "('127.0.0.1', 61689): address already in use"
    ).port_taken
    assert LabError(
        "km-a1 exited; log:\nOSError: cannot listen on 127.0.0.1:20001 for the relay of a1"
    ).port_taken
    assert not LabError("controller-A exited with code 1; log:\nbad config").port_taken


def test_a_replanned_plan_survives_its_json(plan: LabPlan, tmp_path: Path) -> None:
    again = replan_ports(plan)
    again.save(tmp_path / "plan.json")
    assert LabPlan.load(tmp_path / "plan.json") == again
