"""Cisco SKIP against real KM front ends (uvicorn, mutual TLS, lab PKI, SQLite stores), and
its keys fetched over ETSI 014 and the other way round."""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Iterator

import httpx
import pytest

from km.key_store import KeyStore
from lab.pki import LabPki
from tests.harness.etsi014 import KmHarness, make_pki
from tests.harness.skip import SkipHarness


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def skip(tmp_path_factory: pytest.TempPathFactory, pki: LabPki) -> Iterator[SkipHarness]:
    km = KmHarness(tmp_path_factory.mktemp("km"), pki)
    harness = SkipHarness(km)
    yield harness
    harness.close()
    km.close()


def new_key(client: httpx.Client, remote: str, **params: int) -> dict[str, str]:
    response = client.get("/key", params={"remoteSystemID": remote, **params})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    assert set(body) == {"keyId", "key"}
    return body


def waiting(store: KeyStore) -> int:
    return len(store)


def test_capabilities_name_the_caller_and_the_systems_it_may_reach(skip: SkipHarness) -> None:
    with skip.client("a") as a:
        response = a.get("/capabilities")
    assert response.status_code == 200
    body = response.json()
    assert body["localSystemID"] == "a"
    assert body["remoteSystemID"] == ["b", "c", "d", "e"]
    assert body["key"] is True and body["entropy"] is True
    assert isinstance(body["algorithm"], str)


def test_a_skip_key_is_fetched_by_id_at_the_peer_once(skip: SkipHarness) -> None:
    with skip.client("a") as a, skip.client("b") as b:
        issued = new_key(a, "b")
        assert len(issued["keyId"]) == 32 and len(issued["key"]) == 64
        fetched = b.get(f"/key/{issued['keyId']}", params={"remoteSystemID": "a"})
        again = b.get(f"/key/{issued['keyId']}", params={"remoteSystemID": "a"})
    assert fetched.status_code == 200
    assert fetched.json() == issued
    assert again.status_code == 404


def test_a_skip_key_across_nodes_is_fetched_at_the_peer_km(skip: SkipHarness) -> None:
    with skip.client("a") as a, skip.client("d") as d:
        issued = new_key(a, "d", size=512)
        fetched = d.get(f"/key/{issued['keyId']}", params={"remoteSystemID": "a"})
    assert fetched.status_code == 200
    assert fetched.json() == issued
    assert len(issued["key"]) == 128


def test_a_skip_key_is_delivered_to_the_peer_over_etsi014(skip: SkipHarness) -> None:
    with skip.client("a") as a, skip.etsi014("d") as d:
        issued = new_key(a, "d")
        key_id = str(uuid.UUID(hex=issued["keyId"]))
        response = d.get("/a/dec_keys", params={"key_ID": key_id})
    assert response.status_code == 200, response.text
    (key,) = response.json()["keys"]
    assert key["key_ID"] == key_id
    assert base64.b64decode(key["key"]).hex() == issued["key"]


def test_an_etsi014_key_is_delivered_to_the_peer_over_skip(skip: SkipHarness) -> None:
    with skip.etsi014("a") as a, skip.client("b") as b:
        response = a.get("/b/enc_keys")
        (key,) = response.json()["keys"]
        key_id = uuid.UUID(key["key_ID"]).hex
        fetched = b.get(f"/key/{key_id}", params={"remoteSystemID": "a"})
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["keyId"] == key_id
    assert bytes.fromhex(fetched.json()["key"]) == base64.b64decode(key["key"])


def test_entropy_has_the_bits_asked_for(skip: SkipHarness) -> None:
    with skip.client("a") as a:
        default = a.get("/entropy").json()
        large = a.get("/entropy", params={"minentropy": 1024}).json()
    assert default["minentropy"] == 256 and len(default["randomStr"]) == 64
    assert large["minentropy"] == 1024 and len(large["randomStr"]) == 256


@pytest.mark.parametrize(
    ("path", "params", "status", "names"),
    [
        ("/key", {}, 400, "remoteSystemID"),
        ("/key", {"remoteSystemID": "nobody"}, 400, "nobody"),
        ("/key", {"remoteSystemID": "a"}, 400, "itself"),
        ("/key", {"remoteSystemID": "b", "size": "12"}, 400, "size"),
        ("/key", {"remoteSystemID": "b", "size": "-8"}, 400, "size"),
        ("/key", {"remoteSystemID": "b", "size": "4096"}, 400, "size"),
        ("/key", {"remoteSystemID": "b", "number": "2"}, 400, "number"),
        ("/key/xyz", {"remoteSystemID": "b"}, 400, "keyId"),
        ("/key/" + "0" * 31, {"remoteSystemID": "b"}, 400, "keyId"),
        ("/key/" + "0" * 32, {"remoteSystemID": "b"}, 404, "unknown"),
        ("/key/" + "0" * 32, {"remoteSystemID": "zz"}, 400, "zz"),
        ("/entropy", {"minentropy": "7"}, 400, "minentropy"),
        ("/entropy", {"minentropy": "abc"}, 400, "minentropy"),
        ("/keys", {}, 404, "/keys"),
    ],
)
def test_bad_requests_get_the_draft_status_and_consume_nothing(
    skip: SkipHarness, path: str, params: dict[str, str], status: int, names: str
) -> None:
    stores = skip.km.stores
    before = {node: waiting(store) for node, store in stores.items()}
    with skip.client("a") as a:
        response = a.get(path, params=params)
    assert response.status_code == status, response.text
    assert names in response.json()["message"]
    assert {node: waiting(store) for node, store in stores.items()} == before


def test_a_key_fetched_with_the_wrong_remote_stays_for_its_owner(skip: SkipHarness) -> None:
    with skip.client("a") as a, skip.client("b") as b, skip.client("c") as c:
        issued = new_key(a, "b")
        wrong_master = b.get(f"/key/{issued['keyId']}", params={"remoteSystemID": "c"})
        not_a_slave = c.get(f"/key/{issued['keyId']}", params={"remoteSystemID": "a"})
        right = b.get(f"/key/{issued['keyId']}", params={"remoteSystemID": "a"})
    assert wrong_master.status_code == 403
    assert not_a_slave.status_code == 403
    assert right.status_code == 200 and right.json() == issued


def test_a_method_other_than_get_is_405_with_allow(skip: SkipHarness) -> None:
    with skip.client("a") as a:
        response = a.post("/key", params={"remoteSystemID": "b"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_a_certificate_of_another_role_is_401(skip: SkipHarness, pki: LabPki) -> None:
    km_cert = pki.kms["n2"]
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(km_cert.cert), str(km_cert.key))
    with httpx.Client(base_url=skip.servers["n1"].url, verify=context) as other:
        response = other.get("/key", params={"remoteSystemID": "b"})
    assert response.status_code == 401


def test_an_sae_of_another_node_is_401_at_this_km(skip: SkipHarness) -> None:
    with skip.client("d", node="n1") as d:
        response = d.get("/capabilities")
    assert response.status_code == 401
    assert "not served" in response.json()["message"]


def test_a_client_without_certificate_fails_the_handshake(skip: SkipHarness, pki: LabPki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    anonymous = httpx.Client(base_url=skip.servers["n1"].url, verify=context)
    with anonymous, pytest.raises(httpx.HTTPError):
        anonymous.get("/capabilities")


def test_tls12_and_tls13_both_serve_skip(skip: SkipHarness, pki: LabPki) -> None:
    paths = pki.saes["a"]
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(paths.cert), str(paths.key))
        context.minimum_version = context.maximum_version = version
        with httpx.Client(base_url=skip.servers["n1"].url, verify=context) as a:
            assert a.get("/capabilities").status_code == 200
