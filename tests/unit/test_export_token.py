"""`lab export`: a deployment holds ONE controller API token (admin), which the controller's
file names and every engine ships to the controller, and nothing that looks like another."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from controller import config as controller_config
from controller.main import api_tokens_of
from lab.export.containerlab import STATE, containerlab_addressing, write_containerlab
from lab.export.kubernetes import kubernetes_addressing, kubernetes_documents
from lab.export.network import CONTAINER_ROOT, PORTS, TOKEN_FILE, plan_export
from lab.topology import topology_path


def _tokens_in(state: Path) -> list[str]:
    return sorted(path.name for path in (state / "secrets").glob("controller-token*"))


@pytest.mark.parametrize("engine", ["kubernetes", "containerlab"])
def test_a_deployment_keeps_one_admin_token_that_the_controller_accepts(
    tmp_path: Path, engine: str
) -> None:
    state = tmp_path / STATE
    addressing = kubernetes_addressing("qkd") if engine == "kubernetes" else containerlab_addressing
    network = plan_export(topology_path("triangle"), state, addressing)
    assert _tokens_in(state) == [TOKEN_FILE.name]
    token = (state / TOKEN_FILE).read_text().strip()
    controller = network.process("controller")
    loaded = controller_config.load(state / controller.config_path, env={})
    assert loaded.api_token_file == (state / TOKEN_FILE).resolve() and not loaded.api_tokens
    caller = api_tokens_of(loaded).caller(token.encode())
    assert caller is not None and caller.role.label == "admin"
    # Only the controller reads it, once.
    readers = [p.name for p in network.processes for f in p.files if f.path == TOKEN_FILE]
    assert readers == ["controller"]
    if engine == "kubernetes":
        documents = kubernetes_documents(network, "qkd", "img:1")
        shipped = [
            (doc["metadata"]["name"], base64.b64decode(value).decode())
            for doc in documents["10-secrets.yaml"]
            for name, value in doc["data"].items()
            if name.startswith("controller-token")
        ]
        assert shipped == [("controller", token)]
    else:
        clab = yaml.safe_load(write_containerlab(network, tmp_path, "img:1").read_text())
        binds = [
            (name, bind)
            for name, node in clab["topology"]["nodes"].items()
            for bind in node.get("binds", [])
            if "controller-token" in bind
        ]
        assert [bind for _, bind in binds] == [
            f"{STATE}/{TOKEN_FILE}:{CONTAINER_ROOT / TOKEN_FILE}:ro"
        ]
    # A second export into the same state keeps the token (the deployment's credential).
    plan_export(topology_path("triangle"), state, addressing)
    assert (state / TOKEN_FILE).read_text().strip() == token
    assert _tokens_in(state) == [TOKEN_FILE.name]


def test_exported_agents_serve_restconf_on_a_fixed_published_port(tmp_path: Path) -> None:
    network = plan_export(topology_path("triangle"), tmp_path / STATE, kubernetes_addressing("qkd"))
    agent = network.process("agent-qnode1")
    assert agent.config["listen"]["restconf"] == f"0.0.0.0:{PORTS.restconf}"
    assert agent.ports["restconf"] == PORTS.restconf
