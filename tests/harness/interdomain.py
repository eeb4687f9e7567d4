"""Border key managers of two domains for the ETSI 020 tests: a CA per domain, km.yaml data, clients.

`DomainPki` makes one operator CA per domain and key-manager certificates signed by it;
`border_data` writes the km.yaml mapping of a border KM (parsed by km/config.py, as `km run`
would); `peer_client` is an httpx client presenting one KM's certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common.roles import Identity, Role
from km import config as km_config
from km.config import KmConfig
from lab.launcher import free_ports
from lab.pki import CertificateAuthority, CertPaths, create_ca, issue_certificate


@dataclass
class DomainPki:
    """One CA per domain under `root`, and the certificates issued so far."""

    root: Path
    cas: dict[str, CertificateAuthority] = field(default_factory=dict)

    def ca_file(self, domain: str) -> Path:
        if domain not in self.cas:
            folder = self.root / f"ca-{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            self.cas[domain] = create_ca(
                CertPaths(folder / "ca.pem", folder / "ca.key"), f"operator CA {domain}"
            )
        return self.root / f"ca-{domain}" / "ca.pem"

    def issue(self, domain: str, role: Role, name: str) -> CertPaths:
        """A certificate for `role:name` signed by `domain`'s CA (server and client use)."""
        self.ca_file(domain)
        folder = self.root / f"ca-{domain}"
        paths = CertPaths(folder / f"{role.value}-{name}.pem", folder / f"{role.value}-{name}.key")
        return issue_certificate(
            self.cas[domain], Identity(role, name), paths, server=True, reuse=True
        )


@dataclass(frozen=True)
class Border:
    """One border KM's settings for `border_data`."""

    node: str
    domain: str
    port: int
    applications: Mapping[str, str]
    peers: Sequence[Mapping[str, Any]]  # {domain, kme_id, url, saes}
    trusts: Sequence[str]  # peer domains whose CA this KM allows


def border_data(tmp: Path, pki: DomainPki, border: Border, **extra: Any) -> dict[str, Any]:
    """The km.yaml mapping of a border KM (listeners other than 020 on free ports)."""
    cert = pki.issue(border.domain, Role.KM, border.node)
    etsi014, etsi004, relay = free_ports(3)
    data: dict[str, Any] = {
        "node": border.node,
        "listen": {
            "etsi014": f"127.0.0.1:{etsi014}",
            "etsi004": f"127.0.0.1:{etsi004}",
            "relay": f"127.0.0.1:{relay}",
        },
        "agent": "127.0.0.1:1",
        "tls": {
            "cert": str(cert.cert),
            "key": str(cert.key),
            "ca": str(pki.ca_file(border.domain)),
        },
        "data_dir": str(tmp / f"data-{border.node}"),
        "applications": dict(border.applications),
        "interdomain": {
            "domain": border.domain,
            "listen": f"127.0.0.1:{border.port}",
            # the CA of each peer domain by name: a peer is bound to its own domain's CA
            "trusted_cas": {d: str(pki.ca_file(d)) for d in border.trusts},
            "peers": [dict(p) for p in border.peers],
            "ack_timeout_s": 3.0,
        },
    }
    data.update(extra)
    return data


def border_config(tmp: Path, pki: DomainPki, border: Border, **extra: Any) -> KmConfig:
    return km_config.parse(border_data(tmp, pki, border, **extra), tmp / f"km-{border.node}.yaml")


def peer_client(
    pki: DomainPki, domain: str, name: str, trusts: Sequence[str], role: Role = Role.KM
) -> httpx.Client:
    """An httpx client presenting `role:name` signed by `domain`'s CA, trusting `trusts`' CAs."""
    cert = pki.issue(domain, role, name)
    context = ssl.create_default_context(cafile=str(pki.ca_file(domain)))
    for other in trusts:
        context.load_verify_locations(cafile=str(pki.ca_file(other)))
    context.load_cert_chain(str(cert.cert), str(cert.key))
    return httpx.Client(verify=context, timeout=5.0)


def two_borders(tmp: Path, pki: DomainPki) -> tuple[KmConfig, KmConfig]:
    """a_b (domain A) and b_a (domain B) at one border site: app-a is A's, app-b is B's and
    served by b_a itself."""
    a, b = two_border_data(tmp, pki)
    return (
        km_config.parse(a, tmp / "km-a_b.yaml"),
        km_config.parse(b, tmp / "km-b_a.yaml"),
    )


def two_border_data(tmp: Path, pki: DomainPki) -> tuple[dict[str, Any], dict[str, Any]]:
    """The km.yaml mappings of `two_borders`."""
    port_a, port_b = free_ports(2)
    a = Border(
        node="a_b",
        domain="A",
        port=port_a,
        applications={"app-a": "a_b", "app-b": "a_b"},
        peers=[
            {
                "domain": "B",
                "kme_id": "b_a",
                "url": f"https://127.0.0.1:{port_b}/kmapi/v1",
                "saes": ["app-b"],
            }
        ],
        trusts=["B"],
    )
    b = Border(
        node="b_a",
        domain="B",
        port=port_b,
        applications={"app-b": "b_a", "app-a": "b_a"},
        peers=[
            {
                "domain": "A",
                "kme_id": "a_b",
                "url": f"https://127.0.0.1:{port_a}/kmapi/v1",
                "saes": ["app-a"],
            }
        ],
        trusts=["A"],
    )
    return border_data(tmp, pki, a), border_data(tmp, pki, b)
