"""The key managers' application interfaces take the SAE_ID from a certificate of role sae:
a certificate of another role, even one named like an application, identifies nobody."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import httpx
import pytest

from common.config import Address
from common.protos import etsi004_pb2 as pb
from common.protos import etsi004_pb2_grpc as pb_grpc
from common.roles import Identity, Role, TlsMaterial, channel_credentials
from km.access import AccessControl, AccessPolicy
from km.etsi004.app_service import KeyStreamService, start_app_server
from km.etsi014.server import TlsFiles, client_tls_context
from km.key_store import KeyStore
from km.supply import KeySupply
from lab.pki import CertPaths, LabPki, issue_certificate, load_ca
from tests.harness.etsi014 import SAE_NODES, KmHarness, TwoNodeRelay, make_pki


def certificate(pki: LabPki, identity: Identity, folder: Path) -> CertPaths:
    """A certificate for `identity` signed by the lab CA."""
    ca = load_ca(pki.ca.cert, pki.ca.key)
    stem = folder / f"{identity.role.value}-{identity.name}"
    return issue_certificate(
        ca, identity, CertPaths(stem.with_suffix(".pem"), stem.with_suffix(".key")), client=True
    )


def test_etsi014_serves_an_sae_certificate_and_no_other_role_of_the_same_name(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    harness = KmHarness(tmp_path / "km", pki)
    try:
        with harness.client("a") as a:
            assert a.get("/b/status").status_code == 200
        for role in (Role.KM, Role.CONTROLLER, Role.OPERATOR):
            paths = certificate(pki, Identity(role, "a"), tmp_path)
            context = client_tls_context(TlsFiles(paths.cert, paths.key, pki.ca.cert))
            with httpx.Client(base_url=harness.url + "/api/v1/keys", verify=context) as client:
                for response in (client.get("/b/status"), client.get("/b/enc_keys")):
                    assert response.status_code == 401, role
                    assert "urn:qkdsdn:sae:" in response.json()["message"]
    finally:
        harness.close()


def test_etsi004_opens_streams_for_an_sae_certificate_only(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")

    async def body() -> None:
        store = KeyStore(tmp_path / "n1.sqlite")
        supply = KeySupply("n1", SAE_NODES, store, TwoNodeRelay({}))
        service = KeyStreamService(supply, AccessControl(AccessPolicy.allow_all(SAE_NODES)))
        km = pki.kms["n1"]
        server, port = await start_app_server(
            service, km.cert, km.key, pki.ca.cert, Address("127.0.0.1", 0)
        )
        request = pb.OpenConnectRequest(source="a", destination="b", qos=pb.QoS(key_chunk_size=32))
        try:
            for identity, code in (
                (Identity(Role.KM, "a"), grpc.StatusCode.UNAUTHENTICATED),
                (Identity(Role.CONTROLLER, "a"), grpc.StatusCode.UNAUTHENTICATED),
                (Identity(Role.SAE, "a"), None),
            ):
                paths = certificate(pki, identity, tmp_path)
                tls = TlsMaterial.from_files(paths.cert, paths.key, pki.ca.cert)
                async with grpc.aio.secure_channel(
                    f"127.0.0.1:{port}", channel_credentials(tls)
                ) as channel:
                    stub = pb_grpc.KeyDeliveryStub(channel)
                    if code is None:
                        assert (await stub.OpenConnect(request)).status in (0, 1)
                        continue
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await stub.OpenConnect(request)
                    assert info.value.code() is code
                    assert "urn:qkdsdn:sae:" in (info.value.details() or "")
        finally:
            await server.stop(grace=None)
            store.close()

    asyncio.run(asyncio.wait_for(body(), 60))
