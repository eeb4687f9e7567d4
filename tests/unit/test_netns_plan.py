"""The namespace lab's address plan and its use (hosts, configs, endpoints), without touching the host."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.configs import process_configs
from lab.endpoints import Endpoints, endpoints_from_plan
from lab.hosts import Hosts, from_netns, local
from lab.launcher import make_plan, process_commands, process_host
from lab.netns import (
    CONTROLLER,
    IFNAMSIZ,
    NetnsError,
    NetnsPlan,
    domain_controllers,
    free_subnet,
    lab_tag,
    plan_namespaces,
    prefix_for,
)
from lab.plan import LabPlan
from lab.topology import load_topology, topology_path

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


@settings(deadline=None)  # a busy machine must not fail it; it is pure and quick
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


# ---------------------------------------------------------------- hosts: the plan put to use


def _triangle_plan(tmp_path: Path, hosts: Hosts) -> LabPlan:
    path = topology_path("triangle")
    return make_plan(load_topology(path), path, tmp_path, with_pki=False, hosts=hosts)


def test_a_namespace_host_runs_programs_through_ip_netns_exec_and_local_ones_as_they_are() -> None:
    hosts = from_netns(plan_namespaces(NODES, "qabc12"))
    qnode2 = hosts.node("qnode2")
    assert qnode2.address == "10.77.0.4"
    assert qnode2.command(["python", "-m", "x"]) == (
        "ip", "netns", "exec", "qabc12-qnode2", "python", "-m", "x",
    )  # fmt: skip
    assert hosts.addresses() == {
        "qnode1": "10.77.0.3", "qnode2": "10.77.0.4", "qnode3": "10.77.0.5",
        "controller": "10.77.0.2",
    }  # fmt: skip
    assert hosts.applications == "10.77.0.1"
    assert local().node("qnode2").command(["python"]) == ("python",)
    assert local().node("qnode2").address == "127.0.0.1"


def test_every_process_of_a_namespace_twin_runs_on_its_nodes_host(tmp_path: Path) -> None:
    hosts = from_netns(plan_namespaces(NODES, "qabc12"))
    plan = _triangle_plan(tmp_path, hosts)
    assert [node.host for node in plan.nodes] == ["10.77.0.3", "10.77.0.4", "10.77.0.5"]
    assert plan.controller.url.startswith("http://10.77.0.2:")
    assert plan.hosting_groups() == (("qnode1",), ("qnode2",), ("qnode3",))
    placed = {name: process_host(plan, hosts, name).namespace for name, _ in process_commands(plan)}
    assert placed == {
        "agents-1": "qabc12-qnode1", "agents-2": "qabc12-qnode2", "agents-3": "qabc12-qnode3",
        "km-qnode1": "qabc12-qnode1", "km-qnode2": "qabc12-qnode2", "km-qnode3": "qabc12-qnode3",
        "controller": "qabc12-sdn-controller",
    }  # fmt: skip


def test_the_configs_of_a_namespace_twin_name_real_addresses(tmp_path: Path) -> None:
    plan = _triangle_plan(tmp_path, from_netns(plan_namespaces(NODES, "qabc12")))
    configs = process_configs(plan, plan.addresses())
    km1 = configs["km-qnode1"]
    q1, q2 = plan.node("qnode1"), plan.node("qnode2")
    assert km1["listen"]["relay"] == f"10.77.0.3:{q1.km_relay_port}"
    assert km1["agent"] == f"10.77.0.3:{q1.agent_grpc_port}"
    assert {"node": "qnode2", "relay": f"10.77.0.4:{q2.km_relay_port}"}.items() <= next(
        peer for peer in km1["peers"] if peer["node"] == "qnode2"
    ).items()
    netconf = {n["name"]: n["netconf"] for n in configs["controller"]["nodes"]}
    assert netconf["qnode2"] == f"10.77.0.4:{q2.netconf_port}"


def test_a_local_twin_keeps_everything_on_loopback(tmp_path: Path) -> None:
    plan = _triangle_plan(tmp_path, local())
    assert {node.host for node in plan.nodes} == {plan.controller.host} == {"127.0.0.1"}
    assert len(plan.hosting_groups()) == 1
    assert process_host(plan, local(), "agents").wrapper == ()


def test_endpoints_of_a_namespace_twin_give_real_addresses_and_the_namespaces(
    tmp_path: Path,
) -> None:
    hosts = from_netns(plan_namespaces(NODES, "qabc12"))
    plan = _triangle_plan(tmp_path, hosts)
    endpoints = endpoints_from_plan(plan, hosts)
    qnode3 = endpoints.node("qnode3")
    assert qnode3.netconf.host == "10.77.0.5"
    assert qnode3.km.etsi014_url == f"https://10.77.0.5:{plan.node('qnode3').km_etsi014_port}"
    assert endpoints.app("app2").km_etsi014_url == qnode3.km.etsi014_url
    assert endpoints.network is not None
    assert endpoints.network.namespaces["controller"] == "qabc12-sdn-controller"
    assert endpoints.network.applications == "10.77.0.1"
    assert Endpoints.from_dict(json.loads(endpoints.to_json())) == endpoints
    assert "network" not in endpoints_from_plan(plan).to_dict()


# ---------------------------------------------------------------- several domains

DOMAIN_NODES = ("a1", "a2", "a_b", "b_a", "b1", "b_c", "c_b", "c1", "c2")


def _domains_plan(tmp_path: Path) -> tuple[LabPlan, Hosts]:
    hosts = from_netns(
        plan_namespaces(DOMAIN_NODES, "qabc12", controllers=domain_controllers("ABC"))
    )
    path = topology_path("three-domains")
    plan = make_plan(load_topology(path), path, tmp_path, with_pki=False, hosts=hosts)
    return plan, hosts


def test_each_domains_controller_gets_a_namespace_of_its_own_before_the_nodes() -> None:
    plan = plan_namespaces(DOMAIN_NODES, "qabc12", controllers=domain_controllers("ABC"))
    assert [(s.role, s.address) for s in plan.controllers] == [
        ("controller-A", "10.77.0.2"), ("controller-B", "10.77.0.3"),
        ("controller-C", "10.77.0.4"),
    ]  # fmt: skip
    assert plan.controller.role == "controller-A"  # the first domain's stands for "the" one
    assert plan.slot("controller-B").namespace == "qabc12-controller-B"
    assert [slot.role for slot in plan.nodes] == list(DOMAIN_NODES)
    assert plan.address_of("a1") == "10.77.0.5"
    assert NetnsPlan.from_dict(plan.to_dict()) == plan
    assert domain_controllers(()) == (CONTROLLER,)


def test_a_controller_role_that_is_no_controller_or_a_node_that_looks_like_one_is_refused() -> None:
    with pytest.raises(NetnsError, match="'qnode1': a controller's role"):
        plan_namespaces(NODES, "qabc12", controllers=("qnode1",))
    with pytest.raises(NetnsError, match="'controller-x': a controller's role"):
        plan_namespaces(["controller-x"], "qabc12")
    with pytest.raises(NetnsError, match="each named once"):
        plan_namespaces(NODES, "qabc12", controllers=("controller-A", "controller-A"))


def test_every_process_of_a_namespace_twin_of_three_domains_runs_in_its_own_namespace(
    tmp_path: Path,
) -> None:
    plan, hosts = _domains_plan(tmp_path)
    assert [d.controller.host for d in plan.domains] == ["10.77.0.2", "10.77.0.3", "10.77.0.4"]
    placed = {name: process_host(plan, hosts, name).namespace for name, _ in process_commands(plan)}
    assert placed["controller-A"] == "qabc12-controller-A"
    assert placed["controller-C"] == "qabc12-controller-C"
    assert placed["km-b_a"] == "qabc12-b_a" and placed["km-a_b"] == "qabc12-a_b"
    agents = [name for name in placed if name.startswith("agents-")]
    assert len(agents) == len(DOMAIN_NODES)  # one agents process per node, on its host
    assert {placed[name] for name in agents} == {f"qabc12-{n}" for n in DOMAIN_NODES}


def test_the_configs_of_a_three_domain_namespace_twin_name_each_domains_real_addresses(
    tmp_path: Path,
) -> None:
    plan, hosts = _domains_plan(tmp_path)
    configs = process_configs(plan, plan.addresses())
    a, b = plan.domain("A").controller, plan.domain("B").controller
    controller_a = configs["controller-A"]
    assert controller_a["listen"]["api"] == f"10.77.0.2:{a.api_port}"
    # A's controller reaches A's nodes only, each at its own namespace's address
    assert {n["name"]: n["netconf"].split(":")[0] for n in controller_a["nodes"]} == {
        name: hosts.node(name).address for name in ("a1", "a2", "a_b")
    }
    peers = {p["name"]: p["url"] for p in controller_a["domain"]["peers"]}
    assert peers["B"] == f"http://10.77.0.3:{b.api_port}"
    assert peers["C"].startswith("http://10.77.0.4:")
    # the 020 hand-off at site AB goes from a_b's namespace to b_a's, two addresses
    a_b, b_a = plan.node("a_b"), plan.node("b_a")
    section = configs["km-a_b"]["interdomain"]
    assert section["listen"] == f"{hosts.node('a_b').address}:{a_b.km_etsi020_port}"
    [peer] = section["peers"]
    assert peer["url"] == f"https://{hosts.node('b_a').address}:{b_a.km_etsi020_port}/kmapi/v1"
    assert hosts.node("a_b").address != hosts.node("b_a").address


def test_endpoints_of_a_three_domain_namespace_twin_name_every_controllers_namespace(
    tmp_path: Path,
) -> None:
    plan, hosts = _domains_plan(tmp_path)
    network = endpoints_from_plan(plan, hosts).network
    assert network is not None
    assert {name: network.namespaces[name] for name in plan.controller_processes()} == {
        "controller-A": "qabc12-controller-A",
        "controller-B": "qabc12-controller-B",
        "controller-C": "qabc12-controller-C",
    }


def test_the_domains_scenario_in_namespaces_is_refused_naming_what_runs_domains_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.cli import main

    status = main(
        ["lab", "run", "--scenario", "domains", "--hosts", "netns", "--out", str(tmp_path / "o")]
    )
    assert status == 2
    assert "lab up three-domains --hosts netns" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()  # nothing was started
