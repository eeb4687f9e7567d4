"""RESTCONF (RFC 8040) on a real agent over HTTPS, beside its NETCONF face."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from agents.access.users import Accounts, User, hash_password
from common.audit import AuditLog, read_log
from common.config import TlsFiles
from lab.pki import create_lab_pki
from tests.harness.netconf import (
    LINK_ID,
    NODE_ID,
    NS,
    PASSWORD,
    TYPES_NS,
    USERNAME,
    AgentThread,
    FakeBackend,
    connect,
    running_agent,
)

NODE = "/restconf/data/etsi-qkd-sdn-node:qkd_node"
JSON = "application/yang-data+json"
XML = "application/yang-data+xml"
OTHER = "55555555-5555-4555-8555-555555555555"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    pki = create_lab_pki(tmp_path_factory.mktemp("pki"), ["n1"], [])
    return TlsFiles(pki.agents["n1"].cert, pki.agents["n1"].key, pki.ca.cert)


@contextmanager
def _agent(
    tmp_path: Path,
    tls: TlsFiles,
    accounts: Accounts | None = None,
    backend: FakeBackend | None = None,
) -> Iterator[tuple[AgentThread, httpx.Client]]:
    audit = AuditLog("agent:test", tmp_path / "audit.jsonl")
    with (
        running_agent(tmp_path, backend, accounts=accounts, audit=audit, restconf_tls=tls) as agent,
        httpx.Client(
            base_url=agent.restconf_url, verify=_trust(tls), auth=(USERNAME, PASSWORD), timeout=10
        ) as client,
    ):
        yield agent, client


def _trust(tls: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca))


def _link(link_id: str, bandwidth: int = 1000) -> dict[str, Any]:
    return {
        "qkdl_id": link_id,
        "qkdl_type": "etsi-qkd-node-types:VIRT",
        "virt_bandwidth": bandwidth,
    }


def _errors(response: httpx.Response) -> list[dict[str, str]]:
    assert response.headers["content-type"].startswith(JSON)
    return list(response.json()["ietf-restconf:errors"]["error"])


def test_discovery_root_operations_and_yang_library(tmp_path: Path, tls: TlsFiles) -> None:
    with _agent(tmp_path, tls) as (_, client):
        meta = client.get("/.well-known/host-meta")
        assert meta.status_code == 200 and "href='/restconf'" in meta.text
        root = client.get("/restconf").json()["ietf-restconf:restconf"]
        assert root["yang-library-version"] == "2016-06-21"
        assert client.get("/restconf/operations").json() == {"ietf-restconf:operations": {}}
        library = client.get("/restconf/data/ietf-yang-library:modules-state").json()
        modules = {
            (m["name"], m["revision"], m["conformance-type"])
            for m in library["ietf-yang-library:modules-state"]["module"]
        }
        assert ("etsi-qkd-sdn-node", "2022-01-30", "implement") in modules
        assert ("etsi-qkd-node-types", "2022-01-30", "implement") in modules
        assert ("ietf-netconf-acm", "2018-02-14", "implement") in modules


def test_get_qkd_node_with_content_depth_and_fields(tmp_path: Path, tls: TlsFiles) -> None:
    with _agent(tmp_path, tls) as (_, client):
        whole = client.get(NODE)
        assert whole.status_code == 200 and whole.headers["content-type"] == JSON
        node = whole.json()["etsi-qkd-sdn-node:qkd_node"]
        assert node["qkdn_id"] == NODE_ID
        assert node["qkdn_status"] == "etsi-qkd-node-types:OPERATING"  # state merged in
        config = client.get(NODE, params={"content": "config"}).json()
        assert "qkdn_status" not in config["etsi-qkd-sdn-node:qkd_node"]
        state = client.get(NODE, params={"content": "nonconfig"}).json()
        assert state["etsi-qkd-sdn-node:qkd_node"] == {
            "qkdn_status": "etsi-qkd-node-types:OPERATING"
        }
        assert client.get(NODE, params={"depth": "1"}).json() == {"etsi-qkd-sdn-node:qkd_node": {}}
        only = client.get(NODE, params={"fields": "qkdn_id;qkdn_location_id"}).json()
        assert only == {
            "etsi-qkd-sdn-node:qkd_node": {"qkdn_id": NODE_ID, "qkdn_location_id": "lab"}
        }
        as_xml = client.get(NODE, headers={"accept": XML})
        assert as_xml.headers["content-type"] == XML
        element = etree.fromstring(as_xml.content)
        assert element.tag == f"{{{NS}}}qkd_node"
        assert element.findtext(f"{{{NS}}}qkdn_id") == NODE_ID


def test_teraflow_reads_the_children_and_posts_links_that_netconf_sees_at_once(
    tmp_path: Path, tls: TlsFiles
) -> None:
    backend = FakeBackend()
    with _agent(tmp_path, tls, backend=backend) as (agent, client):
        for child in ("qkd_interfaces", "qkd_links", "qkd_applications"):
            assert client.get(f"{NODE}/{child}").status_code in (200, 404)
        created = client.post(
            f"{NODE}/qkd_links/",
            json={"qkd_link": [_link(LINK_ID)]},
            headers={"content-type": JSON},
        )
        assert created.status_code == 201, created.text
        assert created.headers["location"].endswith(f"qkd_links/qkd_link={LINK_ID}")
        assert backend.applied  # validate → veto → apply, as for NETCONF
        links = client.get(f"{NODE}/qkd_links").json()["etsi-qkd-sdn-node:qkd_links"]
        assert [link["qkdl_id"] for link in links["qkd_link"]] == [LINK_ID]
        with connect(agent) as session:
            running = session.get_config("running").data_ele
            assert running.xpath("//q:qkdl_id/text()", namespaces={"q": NS}) == [LINK_ID]
            session.edit_config(
                target="running",
                config=(
                    '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                    f'<qkd_node xmlns="{NS}"><qkdn_location_id>hall</qkdn_location_id>'
                    "</qkd_node></config>"
                ),
            )
        located = client.get(f"{NODE}/qkdn_location_id").json()
        assert located == {"etsi-qkd-sdn-node:qkdn_location_id": "hall"}


def test_put_patch_and_delete_a_link(tmp_path: Path, tls: TlsFiles) -> None:
    entry = f"{NODE}/qkd_links/qkd_link={OTHER}"
    with _agent(tmp_path, tls) as (_, client):
        body = {"etsi-qkd-sdn-node:qkd_link": [_link(OTHER, 10)]}
        assert client.put(entry, json=body, headers={"content-type": JSON}).status_code == 201
        assert client.put(entry, json=body, headers={"content-type": JSON}).status_code == 204
        patch = {"etsi-qkd-sdn-node:qkd_link": [{"qkdl_id": OTHER, "virt_bandwidth": 20}]}
        patched = client.patch(entry, json=patch, headers={"content-type": JSON})
        assert patched.status_code == 204, patched.text
        got = client.get(entry).json()["etsi-qkd-sdn-node:qkd_link"][0]
        assert got["virt_bandwidth"] == 20 and got["qkdl_type"] == "etsi-qkd-node-types:VIRT"
        assert client.delete(entry).status_code == 204
        assert client.get(entry).status_code == 404
        assert client.delete(entry).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "tag"),
    [
        ("GET", f"{NODE}/no_such_leaf", None, None, 404, "unknown-element"),
        ("GET", "/restconf/data/nope:qkd_node", None, None, 400, "unknown-element"),
        ("GET", "/restconf/data/qkd_node", None, None, 400, "invalid-value"),
        ("GET", NODE + "?depth=0", None, None, 400, "invalid-value"),
        ("GET", NODE + "?colour=red", None, None, 400, "invalid-value"),
        ("PUT", f"{NODE}/qkdn_location_id", b"{not json", JSON, 400, "malformed-message"),
        ("PUT", f"{NODE}/qkdn_location_id", b'{"x": 1}', "text/plain", 415, "invalid-value"),
        (
            "PUT",
            f"{NODE}/qkd_links/qkd_link={OTHER}",
            json.dumps({"etsi-qkd-sdn-node:qkd_link": [_link(LINK_ID)]}).encode(),
            JSON,
            400,
            "invalid-value",
        ),
        (
            "PUT",
            f"{NODE}/qkdn_id",
            json.dumps({"etsi-qkd-sdn-node:qkdn_id": "not-a-uuid"}).encode(),
            JSON,
            400,
            "invalid-value",
        ),
        ("PUT", "/restconf/data", b"{}", JSON, 405, "operation-not-supported"),
    ],
)
def test_bad_requests_get_the_rfc_8040_error_and_change_nothing(
    tmp_path: Path,
    tls: TlsFiles,
    method: str,
    path: str,
    body: bytes | None,
    content_type: str | None,
    status: int,
    tag: str,
) -> None:
    with _agent(tmp_path, tls) as (agent, client):
        assert agent.datastore is not None
        before = agent.datastore.running_json()
        headers = {"content-type": content_type} if content_type else {}
        response = client.request(method, path, content=body, headers=headers)
        assert response.status_code == status, response.text
        (error,) = _errors(response)
        assert error["error-tag"] == tag and error["error-message"]
        if status == 405:
            assert "GET" in response.headers["allow"]
        assert agent.datastore.running_json() == before


def test_no_or_wrong_credentials_are_401(tmp_path: Path, tls: TlsFiles) -> None:
    with _agent(tmp_path, tls) as (agent, _):
        for auth in (None, (USERNAME, "wrong")):
            with httpx.Client(verify=_trust(tls), auth=auth) as client:
                response = client.get(agent.restconf_url + NODE)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Basic")


def test_nacm_and_audit_apply_to_restconf_as_to_netconf(tmp_path: Path, tls: TlsFiles) -> None:
    accounts = Accounts(
        [
            User("mon", "monitor", hash_password("pw-mon", n=2**10)),
            User(USERNAME, "admin", hash_password(PASSWORD, n=2**10)),
        ]
    )
    with _agent(tmp_path, tls, accounts) as (agent, admin):
        with httpx.Client(
            base_url=agent.restconf_url, verify=_trust(tls), auth=("mon", "pw-mon")
        ) as mon:
            body = {"etsi-qkd-sdn-node:qkdn_location_id": "x"}
            refused = mon.put(f"{NODE}/qkdn_location_id", json=body)
            assert refused.status_code == 403
            assert _errors(refused)[0]["error-tag"] == "access-denied"
            assert mon.get(NODE).status_code == 200
        ok = admin.put(f"{NODE}/qkdn_location_id", json=body)
        assert ok.status_code == 204, ok.text
    entries = [(e.who, e.role, e.action, e.outcome) for e in read_log(tmp_path / "audit.jsonl")]
    assert entries == [
        ("mon", "monitor", "restconf-put", "refused"),
        (USERNAME, "admin", "restconf-put", "ok"),
    ]


def test_a_netconf_lock_holds_off_restconf_writes(tmp_path: Path, tls: TlsFiles) -> None:
    with _agent(tmp_path, tls) as (agent, client), connect(agent) as session:
        session.lock("running")
        body = {"etsi-qkd-sdn-node:qkdn_location_id": "x"}
        locked = client.put(f"{NODE}/qkdn_location_id", json=body)
        assert locked.status_code == 409 and _errors(locked)[0]["error-tag"] == "in-use"
        session.unlock("running")
        assert client.put(f"{NODE}/qkdn_location_id", json=body).status_code == 204


def test_identityref_values_arrive_in_netconf_with_their_prefix_declared(
    tmp_path: Path, tls: TlsFiles
) -> None:
    with _agent(tmp_path, tls) as (agent, client):
        client.post(f"{NODE}/qkd_links", json={"etsi-qkd-sdn-node:qkd_link": [_link(LINK_ID)]})
        with connect(agent) as session:
            (link_type,) = session.get_config("running").data_ele.iter(f"{{{NS}}}qkdl_type")
            prefix, _, name = (link_type.text or "").partition(":")
            assert name == "VIRT" and link_type.nsmap[prefix] == TYPES_NS
