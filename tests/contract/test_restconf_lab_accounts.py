"""A lab-planned agent (agent.yaml as `lab up` writes it, agents.main): its RESTCONF face
takes the lab's operator certificate as the admin account, and no other certificate."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx

from tests.harness.agents import make_test_plan, running_agents

LOCATION = "/restconf/data/etsi-qkd-sdn-node:qkd_node/qkdn_location_id"


def test_the_lab_operator_certificate_is_the_admin_and_a_key_manager_certificate_nobody(
    tmp_path: Path,
) -> None:
    plan = make_test_plan(tmp_path, ["a", "b"], [("a", "b")])
    ca = plan.credentials.ca_cert

    def client(cert: tuple[str, str]) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(*cert)
        return context

    async def scenario() -> None:
        async with running_agents(plan, ["a"], persist=False) as agents:
            server = agents["a"].restconf
            assert server is not None
            body = {"etsi-qkd-sdn-node:qkdn_location_id": "vault"}
            async with httpx.AsyncClient(
                base_url=server.url, verify=client(plan.operator_cert), timeout=30
            ) as operator:
                written = await operator.put(LOCATION, json=body)
                assert written.status_code == 204, written.text
                nacm = await operator.get("/restconf/data/ietf-netconf-acm:nacm")
                assert nacm.status_code == 200  # /nacm is the admin's alone
            async with httpx.AsyncClient(
                base_url=server.url, verify=client(plan.node_certs["a"]), timeout=30
            ) as km:
                assert (await km.get(LOCATION)).status_code == 401  # signed by the CA, unmapped
            node = agents["a"].datastore.running_json()["etsi-qkd-sdn-node:qkd_node"]
            assert node["qkdn_location_id"] == "vault"

    asyncio.run(scenario())
