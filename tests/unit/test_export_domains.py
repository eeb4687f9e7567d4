"""`qkdsdn lab export` of a network of several domains (three-domains.yaml): a Kubernetes
namespace per domain whose Secrets hold only that domain's keys, border KMs' ETSI 020 behind
Services, peer controllers wired by Service and token; containerlab nodes grouped per domain
with the border sites' links. Validated offline (kubernetes-validate) like the one-domain export."""

from __future__ import annotations

import base64
import shlex
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from agents import config as agent_config
from controller import config as controller_config
from km import config as km_config
from lab.cli import main
from lab.export.containerlab import (
    BORDER_NETWORK,
    STATE,
    containerlab_addressing,
    write_containerlab,
)
from lab.export.kubernetes import (
    DOMAIN_LABEL,
    MANIFEST_FILES,
    kubernetes_addressing,
    write_kubernetes,
)
from lab.export.network import (
    CONTAINER_ROOT,
    PORTS,
    ExportedNetwork,
    ExportError,
    host_label,
    paths_of,
    plan_export,
)
from lab.pki import CertPaths, create_ca
from lab.topology import topology_path

K8S_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "qkd"
IMAGE = "registry.example/qkd-sdn:0.1.0"
LOADERS: dict[str, Callable[..., Any]] = {
    "agent": agent_config.load,
    "km": km_config.load,
    "controller": controller_config.load,
}
DOMAINS = ("A", "B", "C")
NS = {domain: f"{NAMESPACE}-{domain.lower()}" for domain in DOMAINS}


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportedNetwork, list[Any], Path]:
    out = tmp_path_factory.mktemp("k8s-domains")
    network = plan_export(
        topology_path("three-domains"), out / "state", kubernetes_addressing(NAMESPACE)
    )
    write_kubernetes(network, out, NAMESPACE, IMAGE)
    docs = [doc for name in MANIFEST_FILES for doc in yaml.safe_load_all((out / name).read_text())]
    return network, docs, out


def find(docs: list[Any], kind: str, name: str, namespace: str) -> dict[str, Any]:
    [doc] = [
        d
        for d in docs
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and d["metadata"].get("namespace", namespace) == namespace
    ]
    return dict(doc)


def _secret_bytes(secret: dict[str, Any]) -> dict[str, bytes]:
    return {name: base64.b64decode(value) for name, value in secret["data"].items()}


def _files_of(network: ExportedNetwork, domain: str) -> set[Path]:
    """Every file a process of `domain` reads (its config's paths)."""
    return {
        file.source.resolve()
        for process in network.processes
        if process.domain == domain
        for file in process.files
    }


def test_every_document_validates_and_each_object_sits_in_its_domains_namespace(
    k8s: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, _ = k8s
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    assert [d["metadata"]["name"] for d in namespaces] == [NS[d] for d in DOMAINS]
    for doc in docs:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
        domain = doc["metadata"]["labels"][DOMAIN_LABEL]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NS[domain], doc["metadata"]["name"]
    for domain in DOMAINS:
        workloads = {
            d["metadata"]["name"]
            for d in docs
            if d["kind"] in ("StatefulSet", "Deployment")
            and d["metadata"]["namespace"] == NS[domain]
        }
        nodes = {host_label(n.name) for n in network.plan.nodes if n.domain == domain}
        assert workloads == nodes | {"controller"}
        find(docs, "Deployment", "controller", NS[domain])  # its own controller


def test_no_secret_of_a_domain_holds_another_domains_private_key_nor_any_ca_key(
    k8s: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, out = k8s
    pki = out / "state" / "pki"
    ca_keys = {d: (pki / f"ca-{d}.key").read_bytes() for d in DOMAINS}
    for domain in DOMAINS:
        own = _files_of(network, domain)
        # every private key the other domains' processes read and this domain's do not
        foreign = {
            path.read_bytes()
            for other in DOMAINS
            if other != domain
            for path in _files_of(network, other) - own
            if b"PRIVATE KEY" in path.read_bytes()
        }
        foreign |= {key for other, key in ca_keys.items() if other != domain}
        assert any(b"EC PRIVATE KEY" in k or b"BEGIN PRIVATE KEY" in k for k in foreign)
        secrets = [
            d for d in docs if d["kind"] == "Secret" and d["metadata"]["namespace"] == NS[domain]
        ]
        assert secrets
        for secret in secrets:
            for name, content in _secret_bytes(secret).items():
                assert content not in foreign, f"{secret['metadata']['name']}/{name}"
                assert content not in ca_keys.values(), f"{secret['metadata']['name']}/{name}"
    # A's border KM trusts B's CA certificate (its operator allows B), not C's; A's inner KM
    # trusts its own CA alone.
    border = _secret_bytes(find(docs, "Secret", "a-b-km", NS["A"]))
    assert border["ca-B.pem"] == (pki / "ca-B.pem").read_bytes()
    assert "ca-C.pem" not in border and border["ca-A.pem"] == (pki / "ca-A.pem").read_bytes()
    inner = _secret_bytes(find(docs, "Secret", "a1-km", NS["A"]))
    assert {name for name in inner if name.startswith("ca")} == {"ca-A.pem"}


def _config_name(container: dict[str, Any]) -> str:
    """The config file a container's command runs (its name in the ConfigMap)."""
    args = container["args"]
    assert args[:3] == [container["name"], "run", "--config"]
    path = PurePosixPath(args[3])
    assert path.parent == CONTAINER_ROOT / "config"
    return path.name


def test_each_pods_commands_run_the_config_of_their_own_process_and_domain(
    k8s: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, out = k8s
    for doc in (d for d in docs if d["kind"] in ("StatefulSet", "Deployment")):
        ns, domain = doc["metadata"]["namespace"], doc["metadata"]["labels"][DOMAIN_LABEL]
        pod = doc["spec"]["template"]["spec"]
        config_map = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"]
        for container in pod["containers"]:
            name = _config_name(container)
            text = find(docs, "ConfigMap", config_map, ns)["data"][name]
            local = out / "state" / "config" / name
            assert yaml.safe_load(text) == yaml.safe_load(local.read_text())
            loaded = LOADERS[container["name"]](local, env={})
            if container["name"] == "controller":
                assert name == f"controller-{domain}.yaml"
                assert loaded.domain is not None and loaded.domain.name == domain
                assert {n.name for n in loaded.nodes} == {
                    n.name for n in network.plan.nodes if n.domain == domain
                }  # a controller reaches only its own domain's nodes
            else:
                assert host_label(loaded.node) == doc["metadata"]["name"]
                assert network.plan.node(loaded.node).domain == domain
                assert name == f"{container['name']}-{loaded.node}.yaml"


def _service_port(docs: list[Any], host: str, port: int) -> str:
    """The name of the port `port` of the Service `host` (service.namespace.svc) names."""
    service, ns, svc = host.split(".")
    assert svc == "svc"
    ports = {p["port"]: p["name"] for p in find(docs, "Service", service, ns)["spec"]["ports"]}
    return str(ports[port])


def test_border_key_managers_hand_off_over_020_at_services_their_certificates_name(
    k8s: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, out = k8s
    pairs = [("a_b", "b_a"), ("b_a", "a_b"), ("b_c", "c_b"), ("c_b", "b_c")]
    for node, partner in pairs:
        km = km_config.load(out / "state" / "config" / f"km-{node}.yaml", env={})
        assert km.interdomain is not None
        assert str(km.interdomain.listen) == f"0.0.0.0:{PORTS.etsi020}"
        advertise = km.interdomain.advertise
        assert advertise is not None and advertise.port == PORTS.etsi020
        domain = network.plan.node(node).domain
        assert advertise.host == f"{host_label(node)}.{NS[domain]}.svc"
        assert _service_port(docs, advertise.host, advertise.port) == "etsi020"
        [peer] = km.interdomain.peers
        assert peer.kme_id == partner
        url = urlsplit(peer.url)
        peer_domain = network.plan.node(partner).domain
        assert url.hostname == f"{host_label(partner)}.{NS[peer_domain]}.svc"
        assert _service_port(docs, url.hostname, url.port or 0) == "etsi020"
        cert = x509.load_pem_x509_certificate(km.tls.cert.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert advertise.host in names.get_values_for_type(x509.DNSName)  # peers dial it there
    inner = {p["name"] for p in find(docs, "Service", "a1", NS["A"])["spec"]["ports"]}
    assert "etsi020" not in inner


def test_peer_controllers_reach_each_others_service_with_tokens_from_their_own_secrets(
    k8s: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    _, docs, out = k8s
    secrets = {d: _secret_bytes(find(docs, "Secret", "controller", NS[d])) for d in DOMAINS}
    for domain in DOMAINS:
        loaded = controller_config.load(
            out / "state" / "config" / f"controller-{domain}.yaml", env={}
        )
        assert loaded.domain is not None
        assert {p.name for p in loaded.domain.peers} == set(DOMAINS) - {domain}
        for peer in loaded.domain.peers:
            url = urlsplit(peer.url)
            assert url.hostname == f"controller.{NS[peer.name]}.svc"
            assert _service_port(docs, url.hostname, url.port or 0) == "api"
            sent = secrets[domain][peer.token_file.name]
            assert sent == peer.token_file.read_bytes()
            # what A sends B is what B's Secret says to accept from A
            assert secrets[peer.name][f"peer-token-{domain}-to-{peer.name}"] == sent
            assert peer.accept_token_file.name in secrets[domain]
        mounted = {path.name for _, path in paths_of(loaded)}
        assert f"controller-{domain}-token-admin" in mounted
        assert mounted <= set(secrets[domain]) | {"audit.jsonl"}


def test_an_operator_ca_is_refused_for_a_network_of_several_domains(tmp_path: Path) -> None:
    create_ca(CertPaths(tmp_path / "op.pem", tmp_path / "op.key"), "Operator CA")
    with pytest.raises(ExportError, match="one CA per domain"):
        plan_export(
            topology_path("three-domains"),
            tmp_path / "state",
            kubernetes_addressing(NAMESPACE),
            ca=(tmp_path / "op.pem", tmp_path / "op.key"),
        )
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------- containerlab

NODE_KEYS = {
    "kind",
    "image",
    "user",
    "cmd",
    "env",
    "binds",
    "labels",
    "network-mode",
    "ports",
    "exec",
    "group",
}


@pytest.fixture(scope="module")
def clab(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportedNetwork, dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("clab-domains")
    network = plan_export(topology_path("three-domains"), out / STATE, containerlab_addressing)
    path = write_containerlab(network, out, IMAGE)
    return network, yaml.safe_load(path.read_text()), out


def _bound(node: dict[str, Any], out: Path) -> dict[PurePosixPath, Path]:
    return {PurePosixPath(bind.split(":")[1]): out / bind.split(":")[0] for bind in node["binds"]}


def test_containerlab_nodes_are_grouped_per_domain_and_run_their_bound_config(
    clab: tuple[ExportedNetwork, dict[str, Any], Path],
) -> None:
    network, doc, out = clab
    nodes = doc["topology"]["nodes"]
    expected = {host_label(n.name) for n in network.plan.nodes}
    assert set(nodes) == (
        expected | {f"{h}-km" for h in expected} | {f"controller-{d.lower()}" for d in DOMAINS}
    )
    for name, node in nodes.items():
        assert set(node) <= NODE_KEYS, name
        role, run, flag, config = shlex.split(node["cmd"])
        assert (run, flag) == ("run", "--config")
        binds = _bound(node, out)
        assert all(source.exists() for source in binds.values())
        loaded = LOADERS[role](binds[PurePosixPath(config)], env={})
        for _, path in paths_of(loaded):  # every file it reads is bound
            target = CONTAINER_ROOT / path.relative_to((out / STATE).resolve()).as_posix()
            assert binds[target].resolve() == path
        if role == "controller":
            assert loaded.domain is not None
            domain = loaded.domain.name
            assert name == f"controller-{domain.lower()}"
            assert {n.name for n in loaded.nodes} == {
                n.name for n in network.plan.nodes if n.domain == domain
            }
            assert all(str(n.netconf).split(":")[0] in nodes for n in loaded.nodes)
        else:
            domain = network.plan.node(loaded.node).domain
            assert name == host_label(loaded.node) + ("-km" if role == "km" else "")
        assert node["group"] == f"domain-{domain}"
        assert node["labels"]["qkd-sdn.domain"] == domain
    ports = [nodes[f"controller-{d.lower()}"]["ports"] for d in DOMAINS]
    assert ports == [["8500:8500"], ["8501:8500"], ["8502:8500"]]  # one host port each


def test_border_sites_are_links_of_their_own_which_the_020_hand_offs_cross(
    clab: tuple[ExportedNetwork, dict[str, Any], Path],
) -> None:
    network, doc, out = clab
    nodes = doc["topology"]["nodes"]
    links = [tuple(link["endpoints"]) for link in doc["topology"]["links"]]
    assert ("a-b:x1", "b-a:x1") in links and ("b-c:x1", "c-b:x1") in links
    domain_of = {host_label(n.name): n.domain for n in network.plan.nodes}
    for ends in links:  # only the site links join two domains
        a, b = (end.split(":") for end in ends)
        crosses = domain_of[a[0]] != domain_of[b[0]]
        assert crosses == a[1].startswith("x") == b[1].startswith("x"), ends
    site: dict[str, str] = {}  # node -> its address on its site link
    for name in ("a-b", "b-a", "b-c", "c-b"):
        [command] = [c for c in nodes[name]["exec"] if c.endswith(" dev x1")]
        address = command.split()[3]
        assert address.endswith("/31")
        site[name] = address.split("/")[0]
    for node, partner in (("a_b", "b_a"), ("b_c", "c_b")):
        for here, there in ((node, partner), (partner, node)):
            km = km_config.load(out / STATE / "config" / f"km-{here}.yaml", env={})
            assert km.interdomain is not None and km.interdomain.advertise is not None
            own, peer = site[host_label(here)], site[host_label(there)]
            assert str(km.interdomain.advertise) == f"{own}:{PORTS.etsi020}"
            assert km.interdomain.peers[0].url == f"https://{peer}:{PORTS.etsi020}/kmapi/v1"
            cert = x509.load_pem_x509_certificate(km.tls.cert.read_bytes())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert own in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
            assert all(ip_address(a) in BORDER_NETWORK for a in (own, peer))


def test_the_command_exports_three_domains_for_both_engines(tmp_path: Path) -> None:
    assert (
        main(["lab", "export", "three-domains", "--to", "containerlab", str(tmp_path / "c")]) == 0
    )
    assert (tmp_path / "c" / "three-domains.clab.yml").exists()
    assert main(["lab", "export", "three-domains", "--to", "kubernetes", str(tmp_path / "k")]) == 0
    namespaces = list(yaml.safe_load_all((tmp_path / "k" / MANIFEST_FILES[0]).read_text()))
    assert [d["metadata"]["name"] for d in namespaces] == ["qkdsdn-a", "qkdsdn-b", "qkdsdn-c"]
