"""RESTCONF users from TLS client certificates (RFC 8040 §2.5, RFC 7589 cert-to-name)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from agents.access.cert_names import CertNames, CertRule, fingerprint_of, parse_fingerprint
from agents.access.users import Accounts, User, hash_password
from common.audit import AuditLog, read_log
from common.config import TlsFiles
from lab.pki import CertPaths, LabPki, create_lab_pki
from tests.harness.netconf import running_agent

NODE = "/restconf/data/etsi-qkd-sdn-node:qkd_node"
LOCATION = f"{NODE}/qkdn_location_id"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return create_lab_pki(tmp_path_factory.mktemp("pki"), ["n1"], ["app1"])


def _client(pki: LabPki, cert: CertPaths | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    return context


def _der(cert: CertPaths) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert.read_text())


def test_a_monitor_certificate_reads_but_may_not_write_and_an_admin_certificate_writes(
    tmp_path: Path, pki: LabPki
) -> None:
    accounts = Accounts(
        [
            User("mon", "monitor", hash_password("pw-mon", n=2**10)),
            User("root", "admin", hash_password("pw-root", n=2**10)),
        ]
    )
    certs = CertNames(
        [
            # the SAE certificate by its fingerprint, the operator's by its URI SAN
            CertRule("mon", fingerprint=parse_fingerprint(fingerprint_of(_der(pki.saes["app1"])))),
            CertRule("root", san="urn:qkdsdn:operator:lab"),
        ]
    )
    tls = TlsFiles(pki.agents["n1"].cert, pki.agents["n1"].key, pki.ca.cert)
    audit = AuditLog("agent:test", tmp_path / "audit.jsonl")
    body = {"etsi-qkd-sdn-node:qkdn_location_id": "hall"}
    with running_agent(
        tmp_path, accounts=accounts, audit=audit, restconf_tls=tls, restconf_certs=certs
    ) as agent:
        url = agent.restconf_url
        with httpx.Client(base_url=url, verify=_client(pki, pki.saes["app1"])) as mon:
            assert mon.get(NODE).status_code == 200
            refused = mon.put(LOCATION, json=body)
            assert refused.status_code == 403, refused.text
            error = refused.json()["ietf-restconf:errors"]["error"][0]
            assert error["error-tag"] == "access-denied" and "'mon'" in error["error-message"]
        assert agent.datastore is not None
        assert (
            agent.datastore.running_json()["etsi-qkd-sdn-node:qkd_node"]["qkdn_location_id"]
            == "lab"
        )
        with httpx.Client(base_url=url, verify=_client(pki, pki.operator)) as root:
            ok = root.put(LOCATION, json=body)
            assert ok.status_code == 204, ok.text
            # The same connection again: the certificate's user is remembered per connection.
            assert root.get(LOCATION).json() == {"etsi-qkd-sdn-node:qkdn_location_id": "hall"}
        # An unmapped certificate, or none, without an Authorization header: 401.
        for cert in (pki.controller, None):
            with httpx.Client(base_url=url, verify=_client(pki, cert)) as nobody:
                answer = nobody.get(NODE)
                assert answer.status_code == 401
                assert answer.headers["www-authenticate"].startswith("Basic")
        # An Authorization header is checked when sent: it names the user, a wrong one nobody.
        with httpx.Client(base_url=url, verify=_client(pki, pki.controller)) as basic:
            assert basic.get(NODE, auth=("mon", "pw-mon")).status_code == 200
        with httpx.Client(base_url=url, verify=_client(pki, pki.operator)) as wrong:
            assert wrong.get(NODE, auth=("root", "not-it")).status_code == 401
    entries = [(e.who, e.role, e.action, e.outcome) for e in read_log(tmp_path / "audit.jsonl")]
    assert entries == [
        ("mon", "monitor", "restconf-put", "refused"),
        ("root", "admin", "restconf-put", "ok"),
    ]
