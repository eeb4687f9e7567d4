"""The namespace lab's address plan: names, addresses and subnet, without touching the host."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.netns import (
    CONTROLLER,
    IFNAMSIZ,
    NetnsError,
    NetnsPlan,
    free_subnet,
    lab_tag,
    plan_namespaces,
    prefix_for,
)

NODES = ("qnode1", "qnode2", "qnode3")
net = ipaddress.IPv4Network


def test_the_host_gets_the_first_address_the_controller_the_second_and_nodes_the_rest() -> None:
    plan = plan_namespaces(NODES, "qabc12")
    assert plan.subnet == "10.77.0.0/24"
    assert plan.host_address == "10.77.0.1"
    assert plan.controller.address == "10.77.0.2"
    assert [plan.address_of(n) for n in NODES] == ["10.77.0.3", "10.77.0.4", "10.77.0.5"]
    assert [slot.role for slot in plan.nodes] == list(NODES)


def test_every_name_carries_the_lab_tag_and_interface_names_fit_the_kernel_limit() -> None:
    plan = plan_namespaces([f"node{i}" for i in range(300)], "qabc12")
    assert plan.bridge.startswith("qabc12")
    for slot in plan.slots:
        assert slot.namespace.startswith("qabc12-")
        assert slot.veth.startswith("qabc12")
        assert len(slot.veth) <= IFNAMSIZ
    assert len(plan.bridge) <= IFNAMSIZ
    assert len({slot.veth for slot in plan.slots}) == len(plan.slots)


def test_the_controller_namespace_cannot_collide_with_a_node_named_controller() -> None:
    plan = plan_namespaces(["controller", "sdn"], "qabc12")
    names = [slot.namespace for slot in plan.slots]
    assert len(set(names)) == len(names)
    assert plan.controller.role == CONTROLLER


def test_two_state_directories_get_different_tags_and_one_keeps_its_tag(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert lab_tag(a) != lab_tag(b)
    assert lab_tag(a) == lab_tag(tmp_path / "x" / ".." / "a")
    assert len(lab_tag(a)) == 6 and lab_tag(a).isalnum()


def test_the_subnet_avoids_networks_already_in_use() -> None:
    in_use = [net("10.77.0.0/24"), net("10.77.1.128/25"), net("192.0.2.0/24")]
    plan = plan_namespaces(NODES, "qabc12", in_use)
    assert plan.subnet == "10.77.2.0/24"
    assert plan.host_address == "10.77.2.1"


def test_a_large_lab_gets_a_larger_block() -> None:
    nodes = [f"n{i}" for i in range(600)]
    plan = plan_namespaces(nodes, "qabc12")
    assert plan.prefix_length == 22
    addresses = [plan.host_address, *(slot.address for slot in plan.slots)]
    assert len(set(addresses)) == 602
    assert all(ipaddress.ip_address(a) in net(plan.subnet) for a in addresses)


def test_prefix_for_counts_the_network_and_broadcast_addresses() -> None:
    assert prefix_for(254) == 24
    assert prefix_for(255) == 23
    assert prefix_for(2) == 24


def test_no_free_block_is_a_clear_error() -> None:
    with pytest.raises(NetnsError, match=r"no free /24 left in 10\.77\.0\.0/16"):
        free_subnet(5, [net("10.77.0.0/16")])
    with pytest.raises(NetnsError, match="do not fit"):
        free_subnet(70000, [])


def test_duplicate_nodes_and_bad_tags_are_refused() -> None:
    with pytest.raises(NetnsError, match="unique"):
        plan_namespaces(["a", "a"], "qabc12")
    with pytest.raises(NetnsError, match="tag"):
        plan_namespaces(["a"], "q-x/y")
    with pytest.raises(NetnsError, match="tag"):
        plan_namespaces(["a"], "qabcdefgh")


def test_the_plan_survives_its_json_record() -> None:
    plan = plan_namespaces(NODES, "qabc12")
    assert NetnsPlan.from_dict(plan.to_dict()) == plan


def test_a_record_of_another_version_or_shape_is_refused() -> None:
    data = plan_namespaces(NODES, "qabc12").to_dict()
    with pytest.raises(NetnsError, match="version 99"):
        NetnsPlan.from_dict({**data, "version": 99})
    with pytest.raises(NetnsError, match="missing 'bridge'"):
        NetnsPlan.from_dict({k: v for k, v in data.items() if k != "bridge"})


def test_an_unknown_role_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="qnode9"):
        plan_namespaces(NODES, "qabc12").slot("qnode9")


@given(
    count=st.integers(min_value=1, max_value=400),
    taken=st.lists(st.integers(min_value=0, max_value=40), max_size=10),
)
def test_addresses_are_unique_inside_a_free_subnet(count: int, taken: list[int]) -> None:
    in_use = [net(f"10.77.{third}.0/24") for third in taken]
    plan = plan_namespaces([f"n{i}" for i in range(count)], "qabc12", in_use)
    subnet = net(plan.subnet)
    assert not any(subnet.overlaps(network) for network in in_use)
    addresses = [ipaddress.ip_address(plan.host_address)] + [
        ipaddress.ip_address(slot.address) for slot in plan.slots
    ]
    assert len(set(addresses)) == count + 2
    assert all(a in subnet and a not in (subnet.network_address, subnet.broadcast_address)
               for a in addresses)  # fmt: skip
