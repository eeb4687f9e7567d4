"""lab/configs.py: the lab plan becomes per-process files that the parts' loaders accept."""

from __future__ import annotations

from pathlib import Path

from agents import config as agent_config
from common.config import Address
from controller import config as controller_config
from km import config as km_config
from lab.configs import process_configs, write_process_configs
from lab.pki import create_lab_pki
from tests.harness.agents import make_test_plan


def test_every_process_file_of_a_plan_loads_and_agrees_with_the_others(tmp_path: Path) -> None:
    plan = make_test_plan(tmp_path, ["a", "b", "c"], [("a", "b"), ("b", "c")], [("app1", "a")])
    create_lab_pki(tmp_path, ["a", "b", "c"], ["app1"])
    files = write_process_configs(plan)
    assert sorted(files) == ["agent-a", "agent-b", "agent-c", "controller", "km-a", "km-b", "km-c"]
    assert all(path.parent == tmp_path.resolve() / "config" for path in files.values())
    agents = {n.name: agent_config.load(files[f"agent-{n.name}"], env={}) for n in plan.nodes}
    kms = {n.name: km_config.load(files[f"km-{n.name}"], env={}) for n in plan.nodes}
    controller = controller_config.load(files["controller"], env={})
    for node in plan.nodes:
        agent, km = agents[node.name], kms[node.name]
        assert agent.qkdn_id == km.qkdn_id == node.qkdn_id
        assert km.agent == agent.listen.grpc
        assert agent.key_manager.relay == str(km.listen.relay)
        assert agent.running_file == Path(plan.state_dir) / "agents" / node.name / "running.xml"
        assert {p.node for p in km.peers} == {link.peer.node for link in agent.links}
        for peer in km.peers:
            assert peer.relay == kms[peer.node].listen.relay
            assert peer.qkdl_id in {link.qkdl_id for link in agent.links}
    assert [n.netconf for n in controller.nodes] == [a.listen.netconf for a in agents.values()]
    [b_to_a] = [link for link in agents["b"].links if link.peer.node == "a"]
    [a_to_b] = agents["a"].links
    assert (a_to_b.role, b_to_a.role) == ("transmitter", "receiver")
    assert a_to_b.seed_file == b_to_a.seed_file
    assert a_to_b.peer.qkdi_id == b_to_a.local_qkdi_id


def test_hosts_give_each_node_its_own_address_and_listen_overrides_the_bind(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    hosts = {"a": "10.0.0.1", "b": "fd00::2", "controller": "10.0.0.9"}
    configs = process_configs(plan, hosts)
    b = plan.node("b")
    assert configs["km-a"]["peers"][0]["relay"] == f"[fd00::2]:{b.km_relay_port}"
    assert configs["km-b"]["listen"]["relay"] == f"[fd00::2]:{b.km_relay_port}"
    assert configs["controller"]["nodes"][1]["netconf"] == f"[fd00::2]:{b.netconf_port}"
    assert configs["controller"]["listen"]["api"].startswith("10.0.0.9:")
    assert configs["agent-b"]["key_manager"]["etsi014_url"].startswith("https://[fd00::2]:")
    wildcard = process_configs(plan, hosts, listen="0.0.0.0")
    assert wildcard["km-b"]["listen"]["relay"] == f"0.0.0.0:{b.km_relay_port}"
    assert wildcard["km-a"]["peers"][0]["relay"] == f"[fd00::2]:{b.km_relay_port}"
    assert str(Address("fd00::2", 1)) == "[fd00::2]:1"
