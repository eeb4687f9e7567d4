"""RESTCONF with XML bodies (application/yang-data+xml) on a real agent, beside NETCONF;
raw HTTPS requests that log in with a client certificate."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from lxml import etree

from agents.access.cert_names import CertNames, CertRule
from agents.restconf.errors import RESTCONF_NS
from common.config import TlsFiles
from lab.pki import LabPki, create_lab_pki
from tests.harness.netconf import (
    LINK_ID,
    NS,
    TYPES_NS,
    USERNAME,
    AgentThread,
    connect,
    running_agent,
)

NODE = "/restconf/data/etsi-qkd-sdn-node:qkd_node"
XML = "application/yang-data+xml"
OTHER = "55555555-5555-4555-8555-555555555555"
E = {"q": NS, "r": RESTCONF_NS}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return create_lab_pki(tmp_path_factory.mktemp("pki"), ["n1"], [])


@contextmanager
def _agent(tmp_path: Path, pki: LabPki) -> Iterator[tuple[AgentThread, httpx.Client]]:
    tls = TlsFiles(pki.agents["n1"].cert, pki.agents["n1"].key, pki.ca.cert)
    operator = ssl.create_default_context(cafile=str(pki.ca.cert))
    operator.load_cert_chain(str(pki.operator.cert), str(pki.operator.key))
    certs = CertNames([CertRule(USERNAME, san="urn:qkdsdn:operator:lab")])
    with (
        running_agent(tmp_path, restconf_tls=tls, restconf_certs=certs) as agent,
        httpx.Client(
            base_url=agent.restconf_url,
            verify=operator,  # the client certificate is the credential: no Authorization
            headers={"content-type": XML, "accept": XML},
            timeout=10,
        ) as client,
    ):
        yield agent, client


def _link(link_id: str, bandwidth: int, namespace: str = NS) -> bytes:
    return (
        f'<qkd_link xmlns="{namespace}" xmlns:t="{TYPES_NS}"><qkdl_id>{link_id}</qkdl_id>'
        f"<qkdl_type>t:VIRT</qkdl_type><virt_bandwidth>{bandwidth}</virt_bandwidth></qkd_link>"
    ).encode()


def _error(response: httpx.Response) -> tuple[str, str]:
    """(error-tag, error-message) of an XML error document."""
    assert response.headers["content-type"] == XML, response.text
    document = etree.fromstring(response.content)
    assert document.tag == f"{{{RESTCONF_NS}}}errors"
    (error,) = document.findall("r:error", E)
    return error.findtext("r:error-tag", namespaces=E) or "", error.findtext(
        "r:error-message", namespaces=E
    ) or ""


def _bandwidth(agent: AgentThread, link_id: str) -> str | None:
    with connect(agent) as session:
        running = session.get_config("running").data_ele
    found = running.xpath(
        f"//q:qkd_link[q:qkdl_id='{link_id}']/q:virt_bandwidth/text()", namespaces=E
    )
    return str(found[0]) if found else None


def test_xml_bodies_put_patch_and_post_the_same_edits_as_json_and_netconf_sees_them(
    tmp_path: Path, pki: LabPki
) -> None:
    entry = f"{NODE}/qkd_links/qkd_link={OTHER}"
    with _agent(tmp_path, pki) as (agent, client):
        assert client.put(entry, content=_link(OTHER, 10)).status_code == 201
        assert _bandwidth(agent, OTHER) == "10"
        merge = f'<qkd_link xmlns="{NS}"><qkdl_id>{OTHER}</qkdl_id><virt_bandwidth>20'
        patched = client.patch(entry, content=(merge + "</virt_bandwidth></qkd_link>").encode())
        assert patched.status_code == 204, patched.text
        assert _bandwidth(agent, OTHER) == "20"
        got = etree.fromstring(client.get(entry + "/qkdl_type").content)  # merge kept the type
        assert got.tag == f"{{{NS}}}qkdl_type" and (got.text or "").endswith(":VIRT")
        created = client.post(f"{NODE}/qkd_links", content=_link(LINK_ID, 1000))
        assert created.status_code == 201, created.text
        assert created.headers["location"].endswith(f"qkd_links/qkd_link={LINK_ID}")
        assert _bandwidth(agent, LINK_ID) == "1000"
        location = f'<qkdn_location_id xmlns="{NS}">hall</qkdn_location_id>'.encode()
        assert client.put(f"{NODE}/qkdn_location_id", content=location).status_code == 204
        # And the other way round: a NETCONF change, read back over RESTCONF as XML.
        with connect(agent) as session:
            session.edit_config(
                target="running",
                config=(
                    '<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                    f'<qkd_node xmlns="{NS}"><qkdn_location_id>vault</qkdn_location_id>'
                    "</qkd_node></config>"
                ),
            )
        read = client.get(f"{NODE}/qkdn_location_id")
        assert read.headers["content-type"] == XML
        assert etree.fromstring(read.content).text == "vault"
        whole = etree.fromstring(client.get(NODE).content)
        assert whole.xpath("q:qkd_links/q:qkd_link/q:qkdl_id/text()", namespaces=E) == [
            OTHER,
            LINK_ID,
        ]


@pytest.mark.parametrize(
    ("body", "status", "tag", "named"),
    [
        (
            b"<qkd_link xmlns='urn:etsi:qkd:yang:etsi-qkd-node'><qkdl_id>",
            400,
            "malformed-message",
            "not well-formed XML",
        ),
        (b"not xml at all", 400, "malformed-message", "not well-formed XML"),
        (
            _link(OTHER, 10, "urn:example:elsewhere"),
            400,
            "unknown-element",
            "urn:example:elsewhere",
        ),
        (
            f'<qkd_link xmlns="{NS}"><qkdl_id>{OTHER}</qkdl_id><colour>red</colour></qkd_link>'.encode(),
            400,
            "unknown-element",
            "colour",
        ),
        (
            f'<qkd_link xmlns="{NS}"><qkdl_id>{OTHER}</qkdl_id>'
            "<virt_bandwidth>lots</virt_bandwidth></qkd_link>".encode(),
            400,
            "invalid-value",
            "lots",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]>'
            + f'<qkd_link xmlns="{NS}"><qkdl_id>&e;</qkdl_id></qkd_link>'.encode(),
            400,
            "malformed-message",
            "DOCTYPE",
        ),
    ],
)
def test_bad_xml_bodies_get_the_rfc_8040_error_in_xml_and_change_nothing(
    tmp_path: Path, pki: LabPki, body: bytes, status: int, tag: str, named: str
) -> None:
    with _agent(tmp_path, pki) as (agent, client):
        assert agent.datastore is not None
        before = agent.datastore.running_json()
        for method in ("PUT", "POST"):
            path = f"{NODE}/qkd_links" + (f"/qkd_link={OTHER}" if method == "PUT" else "")
            response = client.request(method, path, content=body)
            assert response.status_code == status, response.text
            got_tag, message = _error(response)
            assert got_tag == tag and named in message, message
        assert agent.datastore.running_json() == before


def test_without_accept_the_answer_follows_the_body_and_json_still_wins_when_asked(
    tmp_path: Path, pki: LabPki
) -> None:
    with _agent(tmp_path, pki) as (_, client):
        bad = client.put(f"{NODE}/qkdn_location_id", content=b"<oops", headers={"accept": "*/*"})
        assert bad.status_code == 400 and _error(bad)[0] == "malformed-message"
        as_json = client.put(
            f"{NODE}/qkdn_location_id", content=b"<oops", headers={"accept": "application/json"}
        )
        assert as_json.headers["content-type"] == "application/yang-data+json"
        assert as_json.json()["ietf-restconf:errors"]["error"][0]["error-tag"] == (
            "malformed-message"
        )
