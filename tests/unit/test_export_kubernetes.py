"""`qkdsdn lab export --to kubernetes`: manifests valid against the Kubernetes API schemas
(offline, kubernetes-validate), one pod per node, every file a process reads mounted."""

from __future__ import annotations

import base64
import copy
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from agents import config as agent_config
from controller import config as controller_config
from km import config as km_config
from lab.cli import main
from lab.export.kubernetes import (
    MANIFEST_FILES,
    check_names,
    kubernetes_addressing,
    kubernetes_documents,
    write_kubernetes,
)
from lab.export.network import CONTAINER_ROOT, PORTS, ExportedNetwork, ExportError, plan_export
from lab.pki import CertPaths, create_ca
from lab.topology import topology_path

K8S_VERSIONS = ("1.30.0", "1.37.0")  # an older supported release and the newest schemas shipped
NAMESPACE = "qkd-lab"
IMAGE = "registry.example/qkd-sdn:0.1.0"
LOADERS = {"agent": agent_config.load, "km": km_config.load, "controller": controller_config.load}


def export(out: Path, namespace: str = NAMESPACE, ca: tuple[Path, Path] | None = None) -> Any:
    network = plan_export(
        topology_path("triangle"), out / "state", kubernetes_addressing(namespace), ca=ca
    )
    write_kubernetes(network, out, namespace, IMAGE)
    docs = [doc for name in MANIFEST_FILES for doc in yaml.safe_load_all((out / name).read_text())]
    return network, docs


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportedNetwork, list[Any], Path]:
    out = tmp_path_factory.mktemp("k8s")
    network, docs = export(out)
    return network, docs, out


def find(docs: list[Any], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return dict(doc)


def test_every_exported_document_validates_against_the_kubernetes_api_schemas(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    _, docs, _ = exported
    kinds = sorted({doc["kind"] for doc in docs})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "Secret",
        "Service",
        "StatefulSet",
    ]
    for doc in docs:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == NAMESPACE
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_manifest_broken_on_purpose(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    _, docs, _ = exported
    good = find(docs, "StatefulSet", "qnode1")
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "one"
    misspelt = copy.deepcopy(good)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["tcpSocket"] = {
        "prot": 8300
    }
    no_image_field = copy.deepcopy(find(docs, "Deployment", "controller"))
    no_image_field["spec"]["template"]["spec"]["containers"][0]["imag"] = IMAGE
    for broken in (wrong_type, misspelt, no_image_field):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
    kubernetes_validate.validate(good, K8S_VERSIONS[0], strict=True)


def _config_of(docs: list[Any], container: dict[str, Any], config_map: str) -> dict[str, Any]:
    args = container["args"]
    assert args[:3] == [container["name"], "run", "--config"]
    path = PurePosixPath(args[3])
    assert path.parent == CONTAINER_ROOT / "config"
    data: dict[str, Any] = yaml.safe_load(find(docs, "ConfigMap", config_map)["data"][path.name])
    return data


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_each_node_is_one_pod_of_agent_and_key_manager_ready_on_their_real_ports(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, _ = exported
    for node in network.node_names:
        workload = find(docs, "StatefulSet", node)
        assert workload["spec"]["replicas"] == 1
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        agent, km = pod["containers"]
        assert (agent["name"], km["name"]) == ("agent", "km")
        agent_file = _config_of(docs, agent, f"{node}-config")
        km_file = _config_of(docs, km, f"{node}-config")
        assert agent_file["node"] == km_file["node"] == node
        # The KM reaches its agent on the pod's loopback, where alone the agent's gRPC listens.
        assert km_file["agent"] == agent_file["listen"]["grpc"] == f"127.0.0.1:{PORTS.agent_grpc}"
        listens = {
            "netconf": agent_file["listen"]["netconf"],
            "restconf": agent_file["listen"]["restconf"],
            **{name: km_file["listen"][name] for name in ("etsi014", "etsi004", "relay")},
        }
        assert all(address.startswith("0.0.0.0:") for address in listens.values())
        for container in (agent, km):
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            probe = container["readinessProbe"]["tcpSocket"]["port"]
            assert ports[probe] == _port(listens[probe])
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        service = find(docs, "Service", node)
        assert (
            service["spec"]["selector"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
            name: _port(address) for name, address in listens.items()
        }


def test_processes_reach_each_other_at_service_dns_names_that_exist(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, _ = exported
    controller = find(docs, "Deployment", "controller")
    [container] = controller["spec"]["template"]["spec"]["containers"]
    controller_file = _config_of(docs, container, "controller-config")
    assert controller_file["api_token_file"]
    assert container["readinessProbe"]["tcpSocket"]["port"] == "api"
    targets = [(n["netconf"], "netconf") for n in controller_file["nodes"]]
    for node in network.node_names:
        km_file = yaml.safe_load(
            find(docs, "ConfigMap", f"{node}-config")["data"][f"km-{node}.yaml"]
        )
        targets += [(peer["relay"], "relay") for peer in km_file["peers"]]
    assert len(targets) == 3 + 6
    for address, port_name in targets:
        host, port = address.rsplit(":", 1)
        service, namespace, svc = host.split(".")
        assert (namespace, svc) == (NAMESPACE, "svc")
        ports = {p["name"]: p["port"] for p in find(docs, "Service", service)["spec"]["ports"]}
        assert ports[port_name] == int(port)


def _paths(loaded: Any) -> list[Path]:
    from lab.export.network import paths_of

    return [path for field, path in paths_of(loaded) if field != "data_dir"]


def test_every_file_a_process_reads_is_mounted_from_its_secret_with_the_exported_bytes(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, out = exported
    pods = [find(docs, "StatefulSet", node) for node in network.node_names]
    pods.append(find(docs, "Deployment", "controller"))
    checked = 0
    for workload in pods:
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            config_name = PurePosixPath(container["args"][3]).name
            config_map = volumes["config"]["configMap"]["name"]
            # The config as the container sees it, loaded by its part's own loader.
            state = out / "state"
            local = state / "config" / config_name
            assert yaml.safe_load(local.read_text()) == yaml.safe_load(
                find(docs, "ConfigMap", config_map)["data"][config_name]
            )
            loaded = LOADERS[container["name"]](local, env={})
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            for path in _paths(loaded):
                relative = path.relative_to(state.resolve())
                mount = mounts[str(CONTAINER_ROOT / relative.parent)]
                assert mount["readOnly"] is True
                secret_ref = volumes[mount["name"]]["secret"]
                assert {"key": path.name, "path": path.name} in secret_ref["items"]
                secret = find(docs, "Secret", secret_ref["secretName"])
                assert base64.b64decode(secret["data"][path.name]) == path.read_bytes()
                checked += 1
            data_dir = loaded.data_dir if container["name"] != "controller" else None
            if data_dir is not None:
                relative = data_dir.relative_to(state.resolve())
                assert mounts[str(CONTAINER_ROOT / relative)]["subPath"] == str(relative)
    assert checked >= 3 * (5 + 3) + 5  # agents: ssh files + seeds; KMs: pki; controller


def test_secrets_are_only_in_the_secrets_file_which_only_its_owner_reads(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    _, _, out = exported
    password = (out / "state" / "ssh" / "netconf_password").read_text().strip()
    seed = next((out / "state" / "secrets").glob("link-*.seed")).read_bytes()
    secrets_file, network_file = out / "10-secrets.yaml", out / "20-network.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert base64.b64encode(password.encode()).decode() in secrets_file.read_text()
    for text in (network_file.read_text(), (out / "00-namespace.yaml").read_text()):
        assert password not in text
        assert base64.b64encode(seed).decode() not in text
        assert "PRIVATE KEY" not in text


def test_key_manager_certificates_name_the_service_peers_dial(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    _, docs, _ = exported
    secret = find(docs, "Secret", "qnode2-km")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["km-qnode2.pem"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.pem"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"qnode2.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert f"qnode2.{NAMESPACE}.svc.cluster.local" in names.get_values_for_type(x509.DNSName)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


def test_an_operator_ca_signs_every_certificate_and_its_key_stays_out(tmp_path: Path) -> None:
    operator = create_ca(CertPaths(tmp_path / "op-ca.pem", tmp_path / "op-ca.key"), "Operator CA")
    _, docs = export(tmp_path / "out", ca=(tmp_path / "op-ca.pem", tmp_path / "op-ca.key"))
    operator_key = (tmp_path / "op-ca.key").read_bytes()
    assert isinstance(operator.key, ec.EllipticCurvePrivateKey)
    certs = 0
    for secret in (d for d in docs if d["kind"] == "Secret"):
        for name, value in secret["data"].items():
            content = base64.b64decode(value)
            assert content != operator_key
            if name.endswith(".pem") and name != "ca.pem":
                cert = x509.load_pem_x509_certificate(content)
                cert.verify_directly_issued_by(operator.cert)
                certs += 1
    assert certs == 3 + 3 + 1  # the key managers', the agents' and the controller's
    assert not (tmp_path / "out" / "state" / "pki" / "ca.key").exists()


def test_a_new_namespace_reissues_the_key_manager_certificates_for_its_names(
    tmp_path: Path,
) -> None:
    export(tmp_path, namespace="first")
    _, docs = export(tmp_path, namespace="second")
    secret = find(docs, "Secret", "qnode1-km")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["km-qnode1.pem"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    assert "qnode1.second.svc" in dns
    assert "qnode1.first.svc" not in dns


def test_names_kubernetes_cannot_take_are_refused_with_the_reason() -> None:
    with pytest.raises(ExportError, match="namespace 'Bad_NS'"):
        kubernetes_addressing("Bad_NS")
    with pytest.raises(ExportError, match="one host name 'node-a'"):
        check_names(["node_a", "Node_A"])
    with pytest.raises(ExportError, match="controller"):
        check_names(["controller", "qnode1"])
    with pytest.raises(ExportError, match="at most 63"):
        check_names(["n" * 60])
    with pytest.raises(ExportError, match="not usable"):
        check_names(["node_"])


def test_nodes_named_with_underscores_get_services_their_peers_dial(tmp_path: Path) -> None:
    network = plan_export(
        topology_path("metro-madrid"), tmp_path / "state", kubernetes_addressing(NAMESPACE)
    )
    docs = kubernetes_documents(network, NAMESPACE, IMAGE)["20-network.yaml"]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert "ciudad-univ" in services
    for doc in docs:
        if doc["kind"] in ("Service", "StatefulSet"):
            kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    for node in network.node_names:
        km = network.process(f"km-{node}").config
        for peer in km["peers"]:
            assert peer["relay"].split(".")[0] in services


def test_documents_are_a_pure_function_of_the_exported_network(
    exported: tuple[ExportedNetwork, list[Any], Path],
) -> None:
    network, docs, _ = exported
    again = kubernetes_documents(network, NAMESPACE, IMAGE)
    assert [d for name in MANIFEST_FILES for d in again[name]] == docs


def test_the_command_writes_the_manifests_and_refuses_a_bad_namespace_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k8s"
    assert main(["lab", "export", "triangle", "--to", "kubernetes", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.yaml")) == sorted(MANIFEST_FILES)
    refused = tmp_path / "refused"
    status = main(
        ["lab", "export", "triangle", "--to", "kubernetes", str(refused), "--namespace", "X"]
    )
    assert status == 1
    assert "namespace 'X'" in capsys.readouterr().out
    assert not refused.exists()
    assert (
        main(["lab", "export", "triangle", "--to", "kubernetes", str(out), "--ca-cert", "x"]) == 2
    )
