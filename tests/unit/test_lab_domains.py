"""A twin of several domains: one CA per domain, per-domain configs with the `interdomain`
(border KMs) and `domain` (controllers) sections, one controller process per domain."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from km.access import AccessPolicy
from lab.configs import (
    domain_policy_data,
    domain_policy_file,
    foreign_applications,
    policy_file,
    process_configs,
    write_process_configs,
)
from lab.endpoints import Endpoints, EndpointsError, endpoints_from_plan
from lab.faults import FaultError, kill_process
from lab.launcher import (
    LabError,
    ProcessRecord,
    agents_processes,
    km_processes,
    make_plan,
    process_commands,
    readiness_ports,
    record,
)
from lab.monitoring import check_scrape_config, scrape_config
from lab.plan import LabPlan, domain_admin_password_file, domain_ssh_dir
from lab.processes import ManagedProcess, is_ours, waves
from lab.topology import load_topology, topology_path


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> LabPlan:
    path = topology_path("three-domains")
    return make_plan(load_topology(path), path, tmp_path_factory.mktemp("domains"))


@pytest.fixture(scope="module")
def configs(plan: LabPlan) -> dict[str, dict[str, Any]]:
    return process_configs(plan)


def _issuer_is(cert_file: str | Path, ca_file: str | Path) -> bool:
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _file(plan: LabPlan, relative: str) -> Path:
    return (Path(plan.state_dir) / "config" / relative).resolve()


def test_each_domain_has_its_own_ca_signing_every_part_of_it(plan: LabPlan) -> None:
    assert [d.name for d in plan.domains] == ["A", "B", "C"]
    cas = {d.name: d.ca_cert for d in plan.domains}
    assert len(set(cas.values())) == 3
    for domain in plan.domains:
        others = [ca for name, ca in cas.items() if name != domain.name]
        leaves = [plan.node_certs[n][0] for n in domain.nodes]
        leaves += [plan.agent_certs[n][0] for n in domain.nodes]
        leaves += [a.cert for a in plan.apps if plan.node(a.node).domain == domain.name]
        leaves += [domain.controller.cert, domain.operator_cert[0]]
        for leaf in leaves:
            assert _issuer_is(leaf, domain.ca_cert), leaf
            assert not any(_issuer_is(leaf, other) for other in others), leaf


def test_every_process_reads_its_own_domains_ca(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    for domain in plan.domains:
        for node in domain.nodes:
            for process in (f"agent-{node}", f"km-{node}"):
                assert _file(plan, configs[process]["tls"]["ca"]) == Path(domain.ca_cert)
        controller = configs[domain.process]
        assert _file(plan, controller["tls"]["ca"]) == Path(domain.ca_cert)
        assert [n["name"] for n in controller["nodes"]] == list(domain.nodes)


def test_each_domains_agents_accept_only_its_own_controllers_ssh_key_and_password(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    state = Path(plan.state_dir)
    keys = set()
    for domain in plan.domains:
        own = domain_ssh_dir(state, domain.name)
        for node in domain.nodes:
            netconf = configs[f"agent-{node}"]["netconf"]
            for field in ("authorized_keys_file", "host_key", "password_file"):
                assert _file(plan, netconf[field]).parent == own, (node, field)
        controller = configs[domain.process]["netconf"]
        for field in ("client_key", "known_host_key", "password_file"):
            assert _file(plan, controller[field]).parent == own, (domain.name, field)
        keys.add((own / "client_key.pub").read_text())
        keys.add((own / "host_key.pub").read_text())
        keys.add((own / "netconf_password").read_text())
        assert oct((own / "client_key").stat().st_mode & 0o777) == "0o600"
    assert len(keys) == 9  # no key nor password shared between two domains
    assert not (state / "ssh" / "client_key").exists()  # no twin-wide key either


def test_each_domain_has_its_own_admin_account_on_its_agents(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    hashes = set()
    for domain in plan.domains:
        password = domain_admin_password_file(plan.state_dir, domain.name)
        view = plan.view(domain.name)
        assert view.credentials.admin_password_file == str(password)
        for node in domain.nodes:
            users = configs[f"agent-{node}"]["netconf"]["users"]
            assert [u["password_hash"] for u in users] == [view.credentials.admin_password_hash]
        hashes.add(view.credentials.admin_password_hash)
    assert len(hashes) == 3


def test_each_domains_key_managers_read_only_its_own_access_policy(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    write_process_configs(plan)
    assert not policy_file(plan).exists()  # no file shared by every domain
    for domain in plan.domains:
        own = domain_policy_file(plan, domain.name)
        for node in domain.nodes:
            assert _file(plan, configs[f"km-{node}"]["policy"]) == own
        policy = AccessPolicy.load(own)  # km/access.py reads it
        served = {a.sae_id for a in plan.apps if plan.node(a.node).domain == domain.name}
        assert served | set(foreign_applications(plan, domain.name)) == set(policy.rules)
        assert policy.mode_for("app-a", "app-c").value == "qkd-only"


def test_a_domain_no_border_leads_to_is_not_in_the_access_policy(tmp_path: Path) -> None:
    source = topology_path("three-domains").read_text()
    alone = source.replace("  - {between: [b_c, c_b]}\n", "")  # C cut off: no border to it
    path = tmp_path / "cut.yaml"
    path.write_text(
        alone.replace(
            'B: {description: "metro B (transit)", trusts: [A, C]}',
            'B: {description: "metro B", trusts: [A]}',
        ).replace('C: {description: "metro C", trusts: [B]}', 'C: {description: "metro C"}')
    )
    plan = make_plan(load_topology(path), path, tmp_path / "state", with_pki=False)
    a = domain_policy_data(plan, "A")
    assert a is not None and "app-c" not in a["saes"] and "app-b1" in a["saes"]
    c = domain_policy_data(plan, "C")
    assert c is not None and set(c["saes"]) == {"app-c", "app-c1"}


def test_a_foreign_sae_maps_to_the_domains_border_toward_it(
    configs: dict[str, dict[str, Any]],
) -> None:
    assert configs["km-a1"]["applications"]["app-c"] == "a_b"
    assert configs["km-a1"]["applications"]["app-a"] == "a1"
    assert configs["km-a_b"]["applications"]["app-c"] == "a_b"  # the border maps to itself
    assert configs["km-b_a"]["applications"]["app-a"] == "b_a"
    assert configs["km-b_a"]["applications"]["app-c"] == "b_c"
    assert configs["km-c2"]["applications"]["app-a"] == "c_b"
    assert configs["km-c2"]["applications"]["app-c"] == "c2"


def test_a_km_knows_only_its_own_domains_nodes(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    for domain in plan.domains:
        for node in domain.nodes:
            km = configs[f"km-{node}"]
            assert set(km["nodes"]) == set(domain.nodes)
            assert {peer["node"] for peer in km["peers"]} <= set(domain.nodes)
            assert set(km["key_managers"]) <= set(domain.nodes)


def test_only_border_kms_have_an_interdomain_section_naming_the_colocated_peer(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    borders = {"a_b", "b_a", "b_c", "c_b"}
    for node in plan.nodes:
        assert ("interdomain" in configs[f"km-{node.name}"]) == (node.name in borders)
    a_b = configs["km-a_b"]["interdomain"]
    b_a = plan.node("b_a")
    assert a_b["domain"] == "A"
    assert a_b["listen"] == f"127.0.0.1:{plan.node('a_b').km_etsi020_port}"
    assert [_file(plan, ca) for ca in a_b["trusted_cas"]] == [Path(plan.domain("B").ca_cert)]
    (peer,) = a_b["peers"]
    assert peer["domain"] == "B" and peer["kme_id"] == "b_a"
    assert peer["url"] == f"https://127.0.0.1:{b_a.km_etsi020_port}/kmapi/v1" == b_a.km_etsi020_url
    assert "app-c" in peer["saes"] and "app-a" not in peer["saes"]
    # b_a trusts A and C (its domain's `trusts`); it hands app-a's keys back to a_b
    b_side = configs["km-b_a"]["interdomain"]
    assert {_file(plan, ca) for ca in b_side["trusted_cas"]} == {
        Path(plan.domain("A").ca_cert),
        Path(plan.domain("C").ca_cert),
    }
    assert b_side["peers"][0]["kme_id"] == "a_b" and b_side["peers"][0]["saes"] == [
        "app-a",
        "app-a2",
    ]


def test_controllers_know_their_borders_and_peers_with_crossed_token_files(
    plan: LabPlan, configs: dict[str, dict[str, Any]]
) -> None:
    section = {d.name: configs[d.process]["domain"] for d in plan.domains}
    assert section["B"]["borders"] == {"b_a": "A", "b_c": "C"}
    assert section["A"]["borders"] == {"a_b": "B"}
    assert section["C"]["saes"] == {"app-c": "c2", "app-c1": "c1"}
    assert [p["name"] for p in section["B"]["peers"]] == ["A", "C"]
    assert [p["name"] for p in section["A"]["peers"]] == ["B", "C"]  # the origin reserves in C too
    a_to_b = section["A"]["peers"][0]
    b_from_a = section["B"]["peers"][0]
    assert a_to_b["url"] == plan.domain("B").controller.url
    assert _file(plan, a_to_b["token_file"]) == _file(plan, b_from_a["accept_token_file"])
    assert _file(plan, b_from_a["token_file"]) == _file(plan, a_to_b["accept_token_file"])
    token = _file(plan, a_to_b["token_file"])
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) >= 32
    ports = {d.controller.api_port for d in plan.domains}
    audits = {configs[d.process]["audit_log"] for d in plan.domains}
    assert len(ports) == 3 and len(audits) == 3


def test_one_controller_process_per_domain_starts_after_the_key_managers(plan: LabPlan) -> None:
    names = [name for name, _ in process_commands(plan)]
    assert names[-3:] == ["controller-A", "controller-B", "controller-C"]
    assert "controller" not in names
    assert sum(name.startswith("agents") for name in names) == 3  # one agents process a domain
    assert readiness_ports(plan, "controller-B") == [
        ("127.0.0.1", plan.domain("B").controller.api_port)
    ]
    assert ("127.0.0.1", plan.node("b_a").km_etsi020_port) in readiness_ports(plan, "km-b_a")
    processes = [ManagedProcess(n, 1, (), "") for n in names]
    assert [p.name for p in waves(processes)[0]] == ["controller-A", "controller-B", "controller-C"]


def test_the_plan_of_several_domains_survives_its_json(plan: LabPlan) -> None:
    again = LabPlan.from_dict(json.loads(plan.to_json()))
    assert again == plan
    assert again.domain_route("A", "C") == ("A", "B", "C")
    assert foreign_applications(again, "B") == {
        "app-a": "b_a",
        "app-a2": "b_a",
        "app-c": "b_c",
        "app-c1": "b_c",
    }


def test_a_twin_of_several_domains_refuses_one_operator_ca(tmp_path: Path) -> None:
    path = topology_path("three-domains")
    with pytest.raises(LabError, match="one CA per domain"):
        make_plan(load_topology(path), path, tmp_path, ca=(tmp_path / "c", tmp_path / "k"))


def test_fault_kill_sigkills_a_recorded_process_by_name(tmp_path: Path) -> None:
    argv = (sys.executable, "-c", "import time; time.sleep(60)")
    child = subprocess.Popen(argv)
    try:
        process = ManagedProcess("km-b_a", child.pid, argv, "")
        record(tmp_path, [ProcessRecord(process)])
        deadline = time.monotonic() + 10.0
        while not is_ours(process) and time.monotonic() < deadline:  # exec'd by now
            time.sleep(0.01)
        assert "killed with SIGKILL" in kill_process(tmp_path, "km-b_a")
        assert child.wait(timeout=10) == -9
        with pytest.raises(FaultError, match="not running"):
            kill_process(tmp_path, "km-b_a")
        with pytest.raises(FaultError, match=r"no process 'km-x' in .*; known: km-b_a"):
            kill_process(tmp_path, "km-x")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_controller_is_ready_once_its_view_reaches_every_other_domains_sae(
    plan: LabPlan,
) -> None:
    from lab.launcher import views_pending

    partial = {"domain": "A", "reach": {"app-b1": ["B"], "app-b2": ["B"]}}
    assert views_pending(plan, "A", partial) == ["app-c", "app-c1"]
    full = {"reach": {sae: ["B"] for sae in ("app-b1", "app-b2", "app-c", "app-c1")}}
    assert views_pending(plan, "A", full) == []
    assert views_pending(plan, "B", {"reach": {}}) == ["app-a", "app-c", "app-a2", "app-c1"]


def test_endpoints_of_several_domains_name_each_domains_controller_tokens_ca_and_nodes(
    plan: LabPlan, tmp_path: Path
) -> None:
    endpoints = endpoints_from_plan(plan)
    data = endpoints.to_dict()
    assert set(data["domains"]) == {"A", "B", "C"}
    b = data["domains"]["B"]
    own = plan.domain("B")
    assert b["ca"] == own.ca_cert and b["controller"]["url"] == own.controller.url
    assert set(b["controller"]["tokens"]) == {"viewer", "operator", "admin"}
    assert all(Path(path).exists() for path in b["controller"]["tokens"].values())
    assert b["nodes"] == ["b_a", "b1", "b_c"] and b["borders"] == {"b_a": "A", "b_c": "C"}
    assert b["admin_password_file"].endswith("netconf-admin-password-B")
    b1 = data["nodes"]["b1"]
    assert b1["domain"] == "B" and "etsi020_url" not in b1["km"]
    assert b1["netconf"]["client_key"] == str(domain_ssh_dir(plan.state_dir, "B") / "client_key")
    b_a = data["nodes"]["b_a"]["km"]
    assert b_a["etsi020_url"] == plan.node("b_a").km_etsi020_url
    assert b_a["etsi020_url"].startswith("https://127.0.0.1:")
    assert data["apps"]["app-c"]["ca"] == plan.domain("C").ca_cert
    path = tmp_path / "endpoints.json"
    endpoints.save(path)
    assert Endpoints.load(path) == endpoints


def test_endpoints_of_several_domains_name_a_bad_domain_field(plan: LabPlan) -> None:
    data = endpoints_from_plan(plan).to_dict()
    del data["domains"]["C"]["controller"]["url"]
    with pytest.raises(EndpointsError, match=r"domains\.C\.controller\.url: missing"):
        Endpoints.from_dict(data)


def test_one_prometheus_scrapes_every_domains_processes_labelled_with_the_domain(
    tmp_path: Path,
) -> None:
    path = topology_path("three-domains")
    plan = make_plan(load_topology(path), path, tmp_path, with_pki=False, monitoring=True)
    config = scrape_config(plan, agents_processes(plan), km_processes(plan))
    labels = {
        group["labels"]["process"]: group["labels"].get("domain")
        for job in config["scrape_configs"]
        for group in job["static_configs"]
    }
    assert labels["controller-A"] == "A" and labels["controller-C"] == "C"
    assert labels["km-b_a"] == "B" and labels["km-c2"] == "C"
    assert labels["agents-1"] == "A" and labels["agents-3"] == "C"
    assert len(labels) == 3 + 9 + 3  # agents, key managers, controllers
    file = tmp_path / "prometheus.yml"
    file.write_text(yaml.safe_dump(config))
    check_scrape_config(file)
