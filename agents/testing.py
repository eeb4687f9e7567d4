"""Lab plans for tests: real seeds, SSH keys, a password file and free ports in a temp dir.

`make_test_plan(tmp_path, ["a", "b"], [("a", "b")], [("sae-1", "a")])`. The PKI fields
name files under `tmp_path/pki` that this helper does not create (`lab.pki` does).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.launcher import free_ports
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

PORTS_PER_NODE = 5


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    length_km: float = 50.0
    preset: str = "commercial"
    skr_bps: float | None = None
    qber: float | None = None
    extra_loss_db: float = 0.0


def _secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _ssh_key(path: Path) -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    _secret(path, key.export_private_key())
    Path(f"{path}.pub").write_bytes(key.export_public_key())


def make_test_plan(
    tmp_path: Path,
    nodes: Sequence[str],
    links: Sequence[tuple[str, str] | LinkSpec],
    apps: Sequence[tuple[str, str]] = (),
    settings: Settings | None = None,
) -> LabPlan:
    """A complete plan in `tmp_path` (the state dir); `apps` are (sae_id, node) pairs."""
    state = tmp_path.resolve()
    ports = iter(free_ports(PORTS_PER_NODE * len(nodes) + 1))
    node_plans = tuple(
        NodePlan(
            name=name,
            qkdn_id=node_uuid(name),
            location=f"lab bench {index}",
            netconf_port=next(ports),
            agent_grpc_port=next(ports),
            km_etsi014_port=next(ports),
            km_etsi004_port=next(ports),
            km_relay_port=next(ports),
        )
        for index, name in enumerate(nodes, start=1)
    )
    next_qkdi = dict.fromkeys(nodes, 1)
    link_plans = []
    for spec in links:
        link = spec if isinstance(spec, LinkSpec) else LinkSpec(*spec)
        if link.a not in next_qkdi or link.b not in next_qkdi:
            raise ValueError(f"link {link.a}-{link.b} names a node that is not in {list(nodes)}")
        qkdl_id = link_uuid(link.a, link.b)
        seed = state / "secrets" / f"link-{qkdl_id}.seed"
        _secret(seed, secrets.token_bytes(32))
        link_plans.append(
            LinkPlan(
                qkdl_id=qkdl_id,
                a=link.a,
                b=link.b,
                a_qkdi_id=next_qkdi[link.a],
                b_qkdi_id=next_qkdi[link.b],
                length_km=link.length_km,
                extra_loss_db=link.extra_loss_db,
                preset=link.preset,
                skr_bps=link.skr_bps,
                qber=link.qber,
                seed_file=str(seed),
            )
        )
        next_qkdi[link.a] += 1
        next_qkdi[link.b] += 1
    ssh = state / "ssh"
    _ssh_key(ssh / "host_key")
    _ssh_key(ssh / "client_key")
    _secret(ssh / "netconf_password", secrets.token_urlsafe(18).encode())
    pki = state / "pki"
    plan = LabPlan(
        name="test",
        state_dir=str(state),
        topology_file=str(state / "topology.yaml"),
        settings=settings or Settings(),
        nodes=node_plans,
        links=tuple(link_plans),
        apps=tuple(
            AppPlan(sae_id, node, str(pki / f"sae-{sae_id}.pem"), str(pki / f"sae-{sae_id}.key"))
            for sae_id, node in apps
        ),
        credentials=Credentials(
            netconf_username="qkdsdn",
            password_file=str(ssh / "netconf_password"),
            client_key=str(ssh / "client_key"),
            host_key=str(ssh / "host_key"),
            ca_cert=str(pki / "ca.pem"),
            ca_key=str(pki / "ca.key"),
        ),
        controller=ControllerPlan(
            api_port=next(ports),
            cert=str(pki / "controller.pem"),
            key=str(pki / "controller.key"),
        ),
        node_certs={n: (str(pki / f"km-{n}.pem"), str(pki / f"km-{n}.key")) for n in nodes},
    )
    plan.save(state / "plan.json")
    return plan
