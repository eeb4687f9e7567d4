"""Kubernetes manifests of an exported network: per node one pod (agent + key manager), the
controller, their Services, ConfigMaps (per-process files) and Secrets (keys, seeds).

Why one pod per node with two containers rather than two pods: the key manager pulls link
keys from its own agent's gRPC (ETSI 004 module side, NodeLink) all the time; in one pod that
traffic stays on the pod's loopback, the agent's gRPC is never exposed on the cluster network,
and the pair is scheduled, restarted and scaled together as the node it models. The pod is a
StatefulSet (replicas 1) so that each node keeps its volume (agent running config, key
positions, key store) across restarts: a node that forgot its key stream positions would no
longer match its peers.

A network of several domains gets one Kubernetes namespace per domain (`<ns>-<domain>`):
its controller Deployment, its nodes' pods, Services and ConfigMaps, and Secrets holding
only its own CA's certificates and its own keys (a border KM also the peer domains' CA
certificates its operator trusts; never another domain's key). A namespace rather than a
label set because it is the unit Kubernetes gives an operator: RBAC on Secrets, quotas and
network policies are per namespace, and each domain's objects keep the plain names
(`controller`, `<node>`). Border KMs' Services carry the ETSI 020 port; the controllers
reach each other at `controller.<ns>-<peer>.svc:8500` with the peer tokens in their Secret.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from lab.configs import CONTROLLER, agent_name, km_name
from lab.export.network import (
    CONTAINER_ROOT,
    DNS_LABEL,
    Addressing,
    ExportedNetwork,
    ExportError,
    Process,
    host_label,
    host_labels,
)
from lab.topology import Topology

LONGEST_SUFFIX = "-config"  # of the names made from a node's: <node>-config, -agent, -km
RUN_AS = 10001  # the image's user (lab/export/Containerfile)
DATA_SIZE = "256Mi"
REQUESTS = {
    "agent": {"cpu": "50m", "memory": "96Mi"},
    "km": {"cpu": "50m", "memory": "128Mi"},
    "controller": {"cpu": "100m", "memory": "128Mi"},
}
MEMORY_LIMIT = "512Mi"
READINESS_PORT = {"agent": "netconf", "km": "etsi014", "controller": "api"}
MANIFEST_FILES = ("00-namespace.yaml", "10-secrets.yaml", "20-network.yaml")
DOMAIN_LABEL = "qkd-sdn/domain"  # on every object of a network of several domains


def k8s_name(node: str) -> str:
    """The Kubernetes name of a node (a DNS-1035 label, with room for the suffixes)."""
    return host_label(node, LONGEST_SUFFIX)


def check_names(nodes: Sequence[str]) -> None:
    """Refuses nodes whose Kubernetes names collide with each other or the controller's."""
    host_labels(nodes, LONGEST_SUFFIX)


def domain_namespace(namespace: str, domain: str) -> str:
    """The Kubernetes namespace of `domain` ("": the network's one namespace)."""
    if not domain:
        return namespace
    name = f"{namespace}-{domain.lower().replace('_', '-')}"
    if not DNS_LABEL.fullmatch(name) or len(name) > 63:
        raise ExportError(
            f"domain {domain!r}: namespace {name!r} is not a DNS label of at most 63 characters"
        )
    return name


def kubernetes_addressing(namespace: str) -> Callable[[Topology], Addressing]:
    """Each node (and the controller) at its Service's DNS name in `namespace`, or in its
    domain's namespace (`domain_namespace`) in a network of several domains."""
    if not DNS_LABEL.fullmatch(namespace) or len(namespace) > 63:
        raise ExportError(f"namespace {namespace!r} is not a DNS label of at most 63 characters")

    def addressing(topology: Topology) -> Addressing:
        nodes = [node.name for node in topology.nodes]
        check_names(nodes)
        where = {node.name: domain_namespace(namespace, node.domain) for node in topology.nodes}
        hosts = {node: f"{k8s_name(node)}.{where[node]}.svc" for node in nodes}
        hosts[CONTROLLER] = f"{CONTROLLER}.{namespace}.svc"
        for domain in topology.domains:
            hosts[f"controller-{domain.name}"] = (
                f"{CONTROLLER}.{domain_namespace(namespace, domain.name)}.svc"
            )
        sans = {
            node: [
                k8s_name(node) + suffix
                for suffix in (
                    "",
                    f".{where[node]}",
                    f".{where[node]}.svc",
                    f".{where[node]}.svc.cluster.local",
                )
            ]
            for node in nodes
        }
        return Addressing(hosts, sans)

    return addressing


# ---------------------------------------------------------------- documents


def kubernetes_documents(
    network: ExportedNetwork, namespace: str, image: str
) -> dict[str, list[dict[str, Any]]]:
    """Manifest file name -> its documents (pure: reads the exported files, writes nothing).
    Several domains: each in its own namespace (`domain_namespace`), see the module's doc."""
    check_names(network.node_names)
    namespaces: list[dict[str, Any]] = []
    secrets: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    for controller in network.controllers:
        domain = controller.domain
        where = domain_namespace(namespace, domain)
        namespaces.append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta_of_namespace(where, domain)}
        )
        for node in network.domain_nodes(domain):
            name = k8s_name(node)
            agent, km = network.process(agent_name(node)), network.process(km_name(node))
            labels = _labels(network, "node", name, domain)
            objects.append(_config_map(f"{name}-config", where, labels, (agent, km)))
            secrets.append(_secret(f"{name}-agent", where, labels, agent))
            secrets.append(_secret(f"{name}-km", where, labels, km))
            objects.append(_service(name, where, labels, {**agent.ports, **km.ports}))
            objects.append(_stateful_set(name, where, labels, image, (agent, km)))
        labels = _labels(network, "controller", "controller", domain)
        objects.append(_config_map("controller-config", where, labels, (controller,)))
        secrets.append(_secret("controller", where, labels, controller))
        objects.append(_service("controller", where, labels, controller.ports))
        objects.append(_deployment("controller", where, labels, image, controller))
    return dict(zip(MANIFEST_FILES, (namespaces, secrets, objects), strict=True))


def _meta_of_namespace(name: str, domain: str) -> dict[str, Any]:
    if not domain:
        return {"name": name}
    return {"name": name, "labels": {"app.kubernetes.io/part-of": "qkd-sdn", DOMAIN_LABEL: domain}}


def write_kubernetes(
    network: ExportedNetwork, out_dir: Path, namespace: str, image: str
) -> list[Path]:
    """Writes the manifests (Secrets in their own file, mode 0600); returns the files."""
    written = []
    for file_name, documents in kubernetes_documents(network, namespace, image).items():
        path = out_dir / file_name
        mode = 0o600 if "secrets" in file_name else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)  # also when the file was there before
        with os.fdopen(fd, "w") as handle:
            handle.write(yaml.safe_dump_all(documents, sort_keys=False))
        written.append(path)
    return written


def _labels(
    network: ExportedNetwork, component: str, name: str, domain: str = ""
) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "qkd-sdn",
        "app.kubernetes.io/instance": network.name.rstrip("._-"),  # a label value ends alnum
        "app.kubernetes.io/component": component,
        "qkd-sdn/name": name,
        **({DOMAIN_LABEL: domain} if domain else {}),
    }


def _meta(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(labels)}


def _config_map(
    name: str, namespace: str, labels: dict[str, str], processes: Sequence[Process]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, namespace, labels),
        "data": {
            process.config_path.name: yaml.safe_dump(dict(process.config), sort_keys=False)
            for process in processes
        },
    }


def _secret(name: str, namespace: str, labels: dict[str, str], process: Process) -> dict[str, Any]:
    data: dict[str, str] = {}
    for file in process.files:
        if file.path.name in data:
            raise ExportError(f"{process.name}: two files named {file.path.name!r}")
        data[file.path.name] = base64.b64encode(file.source.read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace, labels),
        "type": "Opaque",
        "data": data,
    }


def _service(
    name: str, namespace: str, labels: dict[str, str], ports: Mapping[str, int]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {"qkd-sdn/name": labels["qkd-sdn/name"]},
            "ports": [
                {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
                for port_name, port in ports.items()
            ],
        },
    }


def _volumes_of(process: Process, secret_name: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """One Secret volume per folder of the state layout the process reads from, and mounts."""
    folders: dict[PurePosixPath, list[str]] = {}
    for file in process.files:
        folders.setdefault(file.path.parent, []).append(file.path.name)
    volumes, mounts = [], []
    for folder, names in sorted(folders.items()):
        volume = f"{process.role}-{str(folder).replace('/', '-')}"
        volumes.append(
            {
                "name": volume,
                "secret": {
                    "secretName": secret_name,
                    "items": [{"key": n, "path": n} for n in names],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": volume, "mountPath": str(CONTAINER_ROOT / folder), "readOnly": True})
    return volumes, mounts


def _container(
    process: Process, image: str, mounts: list[dict[str, Any]], data_volume: str | None
) -> dict[str, Any]:
    mounts = [
        {"name": "config", "mountPath": str(CONTAINER_ROOT / "config"), "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        *mounts,
    ]
    if data_volume is not None and process.data_dir is not None:
        mounts.append(
            {
                "name": data_volume,
                "mountPath": str(CONTAINER_ROOT / process.data_dir),
                "subPath": str(process.data_dir),
            }
        )
    return {
        "name": process.role,
        "image": image,
        "args": list(process.command),
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "ports": [
            {"name": name, "containerPort": port, "protocol": "TCP"}
            for name, port in process.ports.items()
        ],
        "readinessProbe": {
            "tcpSocket": {"port": READINESS_PORT[process.role]},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
            "failureThreshold": 6,
        },
        "resources": {"requests": dict(REQUESTS[process.role]), "limits": {"memory": MEMORY_LIMIT}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def _pod_spec(
    containers: list[dict[str, Any]], volumes: list[dict[str, Any]], config_map: str
) -> dict[str, Any]:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
        },
        "automountServiceAccountToken": False,
        "containers": containers,
        "volumes": [
            {"name": "config", "configMap": {"name": config_map}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
        ],
    }


def _stateful_set(
    name: str, namespace: str, labels: dict[str, str], image: str, processes: Sequence[Process]
) -> dict[str, Any]:
    containers, volumes = [], []
    for process in processes:
        own_volumes, mounts = _volumes_of(process, f"{name}-{process.role}")
        volumes.extend(own_volumes)
        containers.append(_container(process, image, mounts, "data"))
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": {"qkd-sdn/name": name}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": _pod_spec(containers, volumes, f"{name}-config"),
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": DATA_SIZE}},
                    },
                }
            ],
        },
    }


def _deployment(
    name: str, namespace: str, labels: dict[str, str], image: str, process: Process
) -> dict[str, Any]:
    volumes, mounts = _volumes_of(process, name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"qkd-sdn/name": name}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": _pod_spec(
                    [_container(process, image, mounts, None)], volumes, "controller-config"
                ),
            },
        },
    }
