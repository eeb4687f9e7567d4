"""endpoints.json: built from a lab plan, written, read back identically; bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.endpoints import (
    ENDPOINTS_VERSION,
    Endpoints,
    EndpointsError,
    endpoints_from_plan,
)
from lab.plan import (
    AppPlan,
    ControllerPlan,
    Credentials,
    LabPlan,
    LinkPlan,
    NodePlan,
    Settings,
    link_uuid,
    node_uuid,
)


def node(name: str, base: int) -> NodePlan:
    return NodePlan(
        name, node_uuid(name), f"{name} site", base, base + 1, base + 2, base + 3, base + 4
    )


def make_plan(state: Path) -> LabPlan:
    pki, ssh = state / "pki", state / "ssh"
    return LabPlan(
        name="triangle",
        state_dir=str(state),
        topology_file="/x/triangle.yaml",
        settings=Settings(),
        nodes=(node("qnode1", 40000), node("qnode2", 40010)),
        links=(
            LinkPlan(
                link_uuid("qnode1", "qnode2"),
                "qnode1",
                "qnode2",
                1,
                1,
                20.0,
                0.0,
                "field",
                None,
                None,
                str(state / "secrets" / "l.seed"),
            ),
        ),
        apps=(
            AppPlan("app1", "qnode1", str(pki / "sae-app1.pem"), str(pki / "sae-app1.key")),
            AppPlan("app2", "qnode2", str(pki / "sae-app2.pem"), str(pki / "sae-app2.key")),
        ),
        credentials=Credentials(
            "qkdsdn",
            str(ssh / "netconf_password"),
            str(ssh / "client_key"),
            str(ssh / "host_key"),
            str(pki / "ca.pem"),
            str(pki / "ca.key"),
        ),
        controller=ControllerPlan(41000, str(pki / "controller.pem"), str(pki / "controller.key")),
        node_certs={"qnode1": (str(pki / "km-qnode1.pem"), str(pki / "km-qnode1.key"))},
    )


def test_endpoints_from_plan(tmp_path: Path) -> None:
    endpoints = endpoints_from_plan(make_plan(tmp_path))
    q1 = endpoints.node("qnode1")
    assert q1.qkdn_id == node_uuid("qnode1") and q1.location == "qnode1 site"
    assert q1.netconf.address == "127.0.0.1:40000"
    assert q1.netconf.username == "qkdsdn"
    assert q1.netconf.host_key_pub == str(tmp_path / "ssh" / "host_key.pub")
    assert q1.agent_grpc == "127.0.0.1:40001"
    assert q1.km.etsi014_url == "https://127.0.0.1:40002"
    assert q1.km.etsi004_address == "127.0.0.1:40003"
    assert q1.km.relay_address == "127.0.0.1:40004"
    assert q1.km.cert == str(tmp_path / "pki" / "km-qnode1.pem")
    # Not in node_certs: the documented state-dir layout.
    assert endpoints.node("qnode2").km.key == str(tmp_path / "pki" / "km-qnode2.key")
    app2 = endpoints.app("app2")
    assert (app2.node, app2.km_etsi014_url) == ("qnode2", "https://127.0.0.1:40012")
    assert app2.ca == endpoints.ca == str(tmp_path / "pki" / "ca.pem")
    assert endpoints.controller.url == "http://127.0.0.1:41000"
    assert endpoints.topology_file == "/x/triangle.yaml"
    with pytest.raises(KeyError):
        endpoints.node("qnode9")


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    endpoints = endpoints_from_plan(make_plan(tmp_path))
    path = tmp_path / "endpoints.json"
    endpoints.save(path)
    assert Endpoints.load(path) == endpoints
    data = json.loads(path.read_text())
    assert data["version"] == ENDPOINTS_VERSION
    assert data["nodes"]["qnode1"]["km"]["etsi014_url"] == "https://127.0.0.1:40002"
    assert data["apps"]["app1"]["node"] == "qnode1"


def test_known_hosts_line(tmp_path: Path) -> None:
    endpoints = endpoints_from_plan(make_plan(tmp_path))
    netconf = endpoints.node("qnode2").netconf
    pub = Path(netconf.host_key_pub)
    pub.parent.mkdir(parents=True)
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample comment\n")
    assert netconf.known_hosts_line() == (
        "[127.0.0.1]:40010 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    )
    with pytest.raises(EndpointsError, match="not an OpenSSH public key"):
        netconf.known_hosts_line("garbage")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("nodes"), "nodes: must be an object"),
        (lambda d: d["nodes"]["qnode1"]["km"].pop("cert"), "nodes.qnode1.km.cert: missing"),
        (
            lambda d: d["nodes"]["qnode1"]["netconf"].update(port="830"),
            "nodes.qnode1.netconf.port: must be int, not str",
        ),
        (lambda d: d.update(version=99), "version: 99 is not the supported 1"),
        (lambda d: d["apps"].update(app3=[]), "apps.app3: must be an object"),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, edit: object, message: str) -> None:
    data = endpoints_from_plan(make_plan(tmp_path)).to_dict()
    edit(data)  # type: ignore[operator]
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(data))
    with pytest.raises(EndpointsError) as caught:
        Endpoints.load(path)
    assert str(caught.value) == f"{path}: {message}"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(EndpointsError, match="cannot read"):
        Endpoints.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(EndpointsError, match="not JSON"):
        Endpoints.load(broken)


def test_from_a_real_plan(tmp_path: Path) -> None:
    """The launcher's plan for the packaged triangle gives usable endpoints."""
    from lab.launcher import make_plan as launcher_plan
    from lab.topology import DEFAULT_TOPOLOGY, load_topology

    plan = launcher_plan(load_topology(DEFAULT_TOPOLOGY), DEFAULT_TOPOLOGY, tmp_path / "state")
    endpoints = endpoints_from_plan(plan)
    assert [n.name for n in endpoints.nodes] == ["qnode1", "qnode2", "qnode3"]
    for app in endpoints.apps:
        assert Path(app.cert).exists() and Path(app.key).exists() and Path(app.ca).exists()
    for n in endpoints.nodes:
        assert Path(n.km.cert).exists() and Path(n.netconf.client_key).exists()
        assert n.netconf.known_hosts_line().startswith(f"[127.0.0.1]:{n.netconf.port} ssh-ed25519 ")
    path = tmp_path / "endpoints.json"
    endpoints.save(path)
    assert Endpoints.load(path) == endpoints
    # Paths to secrets, never the secrets themselves.
    password = Path(plan.credentials.password_file).read_text().strip()
    client_key = Path(plan.credentials.client_key).read_text()
    assert password not in path.read_text()
    assert client_key.splitlines()[1] not in path.read_text()
    # Paths to secrets, never the secrets themselves.
    password = Path(plan.credentials.password_file).read_text().strip()
    client_key = Path(plan.credentials.client_key).read_text()
    assert password not in path.read_text()
    assert client_key.splitlines()[1] not in path.read_text()
